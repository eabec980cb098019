//! A JWKS fetched from a URL (an identity provider's `.../protocol/openid-connect/certs`) and kept fresh:
//! fetched at start, again every `refresh`, and at once when a token names a `kid` the set lacks (at most
//! once per `min_refetch`), so that the provider can rotate its keys without a restart. A failed fetch
//! keeps the last good keys; its error is logged and shown in `/readyz`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::verify::{VerifyKey, jwks_keys};

/// How often the keys are fetched again when nothing asks sooner. Keycloak keeps a rotated-out key
/// published while tokens signed with it live, so a few minutes' delay loses nothing.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(5 * 60);
/// The shortest time between two fetches caused by unknown `kid`s: tokens with made-up kids must not
/// turn the hub into a load generator against the identity provider.
pub const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS document accepted: a real one is a few KiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where a remote JWKS lives and how often it is fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct JwksUrl {
    /// `http://` or `https://` URL of the JWKS document.
    pub url: String,
    /// Fetched again this often.
    pub refresh: Duration,
    /// At least this long between fetches caused by an unknown `kid` (not a flag; tests shorten it).
    pub min_refetch: Duration,
}

impl JwksUrl {
    /// A URL with the default timers.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), refresh: DEFAULT_JWKS_REFRESH, min_refetch: DEFAULT_JWKS_MIN_REFETCH }
    }
}

impl std::fmt::Debug for JwksUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksUrl")
            .field("url", &crate::config::redact_url(&self.url))
            .field("refresh", &self.refresh)
            .field("min_refetch", &self.min_refetch)
            .finish()
    }
}

/// What `/readyz` shows of a remote JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksStatus {
    /// Signing keys held now.
    pub keys: usize,
    /// When the keys were last fetched successfully.
    pub fetched_at: Option<SystemTime>,
    /// Why the last fetch failed, when it did (the keys held are then the last good ones).
    pub error: Option<String>,
}

/// The keys of a remote JWKS and the state of their fetching.
pub(super) struct RemoteJwks {
    source: JwksUrl,
    client: reqwest::Client,
    /// A std lock: read on every verification, written after a fetch, never held across `.await`.
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    status: Mutex<FetchState>,
    /// Held for the whole of a fetch, so that many tokens with the same new kid cause one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    fetched_at: Option<SystemTime>,
    error: Option<String>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks").field("source", &self.source).finish_non_exhaustive()
    }
}

impl RemoteJwks {
    pub(super) fn new(source: &JwksUrl) -> anyhow::Result<Self> {
        if !(source.url.starts_with("http://") || source.url.starts_with("https://")) {
            bail!("expected an http:// or https:// URL");
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("rtctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            source: source.clone(),
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            status: Mutex::new(FetchState::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The keys held now (empty until the first successful fetch).
    pub(super) fn keys(&self) -> Arc<Vec<VerifyKey>> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn status(&self) -> JwksStatus {
        let state = self.status.lock().unwrap_or_else(|e| e.into_inner());
        JwksStatus { keys: self.keys().len(), fetched_at: state.fetched_at, error: state.error.clone() }
    }

    /// Fetches the set now and keeps it, or keeps the last good one and records why not.
    pub(super) async fn refresh(&self) -> anyhow::Result<usize> {
        let _fetching = self.fetching.lock().await;
        self.fetch_locked().await
    }

    /// Fetches at once for a token whose `kid` the set lacks, unless another fetch already brought it
    /// or the last fetch was less than `min_refetch` ago.
    pub(super) async fn refetch_for(&self, kid: Option<&str>) {
        let _fetching = self.fetching.lock().await;
        let known = self.keys().iter().any(|k| kid.is_some() && k.kid.as_deref() == kid);
        let recent = self.last_attempt().is_some_and(|at| at.elapsed() < self.source.min_refetch);
        if known || recent {
            return;
        }
        let _ = self.fetch_locked().await;
    }

    fn last_attempt(&self) -> Option<Instant> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).last_attempt
    }

    async fn fetch_locked(&self) -> anyhow::Result<usize> {
        let result = self.download().await;
        let mut state = self.status.lock().unwrap_or_else(|e| e.into_inner());
        state.last_attempt = Some(Instant::now());
        match result {
            Ok(keys) => {
                let count = keys.len();
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                if state.error.take().is_some() {
                    info!(keys = count, "JWKS fetched again");
                }
                state.fetched_at = Some(SystemTime::now());
                Ok(count)
            }
            Err(error) => {
                let message = format!("{error:#}");
                warn!(url = %crate::config::redact_url(&self.source.url), error = %message,
                      "cannot fetch the JWKS; keeping the last good keys");
                state.error = Some(message);
                Err(error)
            }
        }
    }

    async fn download(&self) -> anyhow::Result<Vec<VerifyKey>> {
        // `without_url`: the URL may carry a credential in its query, and this text reaches /readyz.
        let mut response = self.client.get(&self.source.url).send().await.map_err(|e| e.without_url())?;
        let status = response.status();
        if !status.is_success() {
            bail!("the JWKS URL answered HTTP {}", status.as_u16());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                bail!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
            }
        }
        let text = String::from_utf8(body).context("the JWKS is not UTF-8")?;
        jwks_keys(&text)
    }

    /// Fetches every `refresh` until `shutdown`; while no key was ever fetched, every `min_refetch`.
    pub(super) async fn keep_fresh(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let wait = if self.keys().is_empty() { self.source.min_refetch } else { self.source.refresh };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
            let _ = self.refresh().await;
        }
    }
}
