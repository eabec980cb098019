//! TLS: `tls_cert` / `tls_key` serve HTTPS and WSS on the hub's one port, SIGHUP reloads the pair
//! without dropping connections, and the client commands trust a private CA with `--ca-cert`. Every
//! test makes its own CA and certificates (rcgen).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rtctl::config::HubConfig;
use rtctl::hub::Hub;
use rtctl::tls::TlsFiles;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::{TIMEOUT, TestHub, Ws, json_response, recv};

/// A private CA, and the certificate files a hub serves, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "rtctl test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn files(&self) -> TlsFiles {
        TlsFiles { cert: self.dir.path().join("cert.pem"), key: self.dir.path().join("key.pem") }
    }

    /// Issues a certificate named `cn` for 127.0.0.1 and localhost, writes it and its key over the
    /// hub's files, and returns it (DER), to compare with what the hub presents.
    fn issue(&self, cn: &str) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let files = self.files();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    /// Client TLS settings that trust this CA only, as `--ca-cert` makes them.
    fn client(&self) -> Arc<rustls::ClientConfig> {
        rtctl::tls::client_config(&self.ca_path()).unwrap()
    }
}

/// An HTTPS client trusting `tls`.
fn https(tls: &Arc<rustls::ClientConfig>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(rustls::ClientConfig::clone(tls))
        .timeout(TIMEOUT)
        .build()
        .unwrap()
}

/// Opens `wss://addr{path_and_query}` trusting `tls`.
async fn wss(addr: SocketAddr, path_and_query: &str, tls: &Arc<rustls::ClientConfig>) -> Result<Ws, String> {
    let request = format!("wss://{addr}{path_and_query}").into_client_request().unwrap();
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(Connector::Rustls(Arc::clone(tls))),
    );
    match tokio::time::timeout(TIMEOUT, connecting).await.expect("the handshake ended in time") {
        Ok((ws, _)) => Ok(ws),
        Err(error) => Err(error.to_string()),
    }
}

/// Opens a wss connection and reads its greeting.
async fn greeted(addr: SocketAddr, path_and_query: &str, tls: &Arc<rustls::ClientConfig>) -> Ws {
    let mut ws = wss(addr, path_and_query, tls).await.expect("the wss connection opens");
    let greeting = recv(&mut ws).await;
    assert_eq!(greeting["type"], "connection_established", "{greeting}");
    ws
}

/// The certificate the hub at `addr` presents to a new handshake (DER).
async fn presented(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    // No resumption: a resumed session shows the certificate of the session it resumes.
    let mut tls = rustls::ClientConfig::clone(tls);
    tls.resumption = rustls::client::Resumption::disabled();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let stream = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp)).await.unwrap().unwrap();
    stream.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

/// A TLS test hub over the PKI's files.
async fn tls_hub(pki: &Pki) -> TestHub {
    let files = pki.files();
    TestHub::start_with(|config| config.tls = Some(files)).await
}

/// Over TLS the hub serves what it serves in plain text: wss clients get the notifications and org
/// events that POSTs over https create, a ws token from `GET /api/user/ws-token/` opens a wss
/// connection, and CORS answers an allowed origin.
#[tokio::test]
async fn wss_clients_get_pushes_that_posts_over_https_create() {
    let pki = Pki::new();
    pki.issue("hub");
    let files = pki.files();
    let hub = TestHub::start_with(|config| {
        config.tls = Some(files);
        config.allowed_origins = rtctl::config::AllowedOrigins::parse("https://app.example.com").unwrap();
    })
    .await;
    let tls = pki.client();
    let client = https(&tls);
    let base = format!("https://{}", hub.addr);

    let mut alice = greeted(hub.addr, &format!("/ws/notifications/?token={}", hub.jwt("alice")), &tls).await;
    let mut member =
        greeted(hub.addr, &format!("/ws/events/acme/?token={}", hub.member_jwt("bob", &["acme"])), &tls).await;

    let body = json!({"user_id": "alice", "title": "Hi", "message": "over TLS", "type": "info"});
    let response = client.post(format!("{base}/api/v1/notifications")).header("x-api-key", hub.api_key()).json(&body);
    let (status, created) = json_response(response.send().await.unwrap()).await;
    assert_eq!(status, 201, "{created}");
    let push = recv(&mut alice).await;
    assert_eq!(
        (push["type"].as_str(), push["notification"]["message"].as_str()),
        (Some("notification"), Some("over TLS"))
    );

    let event = json!({"event_type": "order.created", "data": {"id": 1}});
    let response =
        client.post(format!("{base}/api/v1/orgs/acme/events")).header("x-api-key", hub.api_key()).json(&event);
    let (status, reply) = json_response(response.send().await.unwrap()).await;
    assert_eq!(status, 202, "{reply}");
    let pushed = recv(&mut member).await;
    assert_eq!(pushed["event_type"], "order.created", "{pushed}");

    let request = client
        .get(format!("{base}/api/user/ws-token/"))
        .bearer_auth(hub.jwt("carol"))
        .header("origin", "https://app.example.com");
    let response = request.send().await.unwrap();
    let allowed = response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(allowed.as_deref(), Some("https://app.example.com"));
    let (status, token) = json_response(response).await;
    assert_eq!(status, 200, "{token}");
    let token = token["ws_token"].as_str().expect("a ws token");
    let mut carol = greeted(hub.addr, &format!("/ws/notifications/?token={token}"), &tls).await;
    notify(&client, &hub, "carol", "Ticket").await;
    assert_eq!(recv(&mut carol).await["notification"]["title"], "Ticket");
}

/// POSTs a notification for `user` over https.
async fn notify(client: &reqwest::Client, hub: &TestHub, user: &str, title: &str) {
    let body = json!({"user_id": user, "title": title, "message": "body", "type": "info"});
    let url = format!("https://{}/api/v1/notifications", hub.addr);
    let (status, created) =
        json_response(client.post(url).header("x-api-key", hub.api_key()).json(&body).send().await.unwrap()).await;
    assert_eq!(status, 201, "{created}");
}

/// Plain HTTP on the TLS port gets a 400 whose body says to use https, not a TLS alert shown as
/// garbage; a client that does not trust the CA fails its handshake; the hub serves on after both.
#[tokio::test]
async fn plain_http_and_untrusted_clients_fail_cleanly_and_the_hub_serves_on() {
    let pki = Pki::new();
    pki.issue("hub");
    let hub = tls_hub(&pki).await;

    let (status, body) = json_response(crate::util::http().get(hub.http_url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {"code": "bad_request", "message": "this port serves HTTPS: use https:// (wss:// for WebSockets)"}})
    );

    let stranger = Pki::new().client();
    let error = https(&stranger).get(format!("https://{}/healthz", hub.addr)).send().await.unwrap_err();
    let chain = format!("{:?}", anyhow::Error::from(error));
    assert!(chain.contains("invalid peer certificate"), "{chain}");
    let error = wss(hub.addr, "/ws/notifications/", &stranger).await.unwrap_err();
    assert!(error.contains("invalid peer certificate"), "{error}");

    let response = https(&pki.client()).get(format!("https://{}/healthz", hub.addr)).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// A hub started in-process with its `Hub` at hand, to call what SIGHUP calls.
async fn start_hub(config: HubConfig) -> (SitHub, SocketAddr) {
    let hub = Hub::start(config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(rtctl::hub::run_started(listener, Arc::clone(&hub), async move {
        let _ = stopped.await;
    }));
    (SitHub { hub, stop: Some(stop), run: Some(run) }, addr)
}

/// A hub of [`start_hub`]; stopped when dropped.
struct SitHub {
    hub: Arc<Hub>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for SitHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        drop(self.run.take());
    }
}

/// A reload presents the new certificate to new handshakes while an open wss connection stays up
/// and keeps getting pushes; a reload of a broken pair keeps the certificate in use.
#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections_and_keeps_open_ones() {
    let pki = Pki::new();
    let first = pki.issue("first");
    let dir = tempfile::tempdir().unwrap();
    let mut config = HubConfig::ephemeral(dir.path());
    config.tls = Some(pki.files());
    let api_key = config.api_key.expose().to_owned();
    let secret = config.jwt_secret().unwrap().to_owned();
    let (hub, addr) = start_hub(config).await;
    let tls = pki.client();
    assert_eq!(presented(addr, &tls).await, first);
    let jwt = jwt(&secret, "alice");
    let mut open = greeted(addr, &format!("/ws/notifications/?token={jwt}"), &tls).await;

    let second = pki.issue("second");
    assert_ne!(second, first);
    assert!(hub.hub.reload_tls(), "the new pair loads");
    assert_eq!(presented(addr, &tls).await, second, "new handshakes get the new certificate");

    let client = https(&tls);
    let body = json!({"user_id": "alice", "title": "after reload", "message": "m", "type": "info"});
    let response = client.post(format!("https://{addr}/api/v1/notifications")).header("x-api-key", &api_key);
    assert_eq!(response.json(&body).send().await.unwrap().status(), 201);
    assert_eq!(recv(&mut open).await["notification"]["title"], "after reload", "the open connection stays");

    // A key that is not the certificate's (certbot midway through writing, say): the reload is refused.
    pki.issue("third");
    std::fs::write(pki.files().key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    assert!(!hub.hub.reload_tls(), "a mismatched pair is refused");
    assert_eq!(presented(addr, &tls).await, second, "the certificate in use stays");
}

/// A one-hour HS256 JWT for `user`.
fn jwt(secret: &str, user: &str) -> String {
    let identity = crate::util::user_identity(user);
    let claims = rtctl::auth::claims_for(&identity, std::time::Duration::from_secs(3600));
    rtctl::auth::mint(&claims, &rtctl::auth::SigningKey::Hs256(secret.to_owned())).unwrap()
}

/// The settings name what is wrong with the TLS files: one of the pair missing, an unreadable file, a
/// key that is not the certificate's.
#[test]
fn bad_tls_settings_are_refused_by_name() {
    let pki = Pki::new();
    pki.issue("hub");
    let files = pki.files();
    let resolve = |cert: Option<&Path>, key: Option<&Path>| {
        let flags = rtctl::config::FileConfig {
            tls_cert: cert.map(Path::to_owned),
            tls_key: key.map(Path::to_owned),
            ..rtctl::config::FileConfig::generate()
        };
        flags.resolve(&rtctl::config::FileConfig::default()).map(|config| config.tls).map_err(|e| format!("{e:#}"))
    };
    assert_eq!(resolve(Some(&files.cert), Some(&files.key)), Ok(Some(files.clone())));
    assert_eq!(
        resolve(Some(&files.cert), None),
        Err("invalid tls_cert: tls_key is not set; TLS needs both (--tls-key, RTCTL_TLS_KEY)".to_owned())
    );
    let missing = pki.dir.path().join("missing.pem");
    let error = resolve(Some(&missing), Some(&files.key)).unwrap_err();
    assert!(error.starts_with(&format!("invalid tls_cert: cannot read {}: ", missing.display())), "{error}");
    let error = resolve(Some(&files.key), Some(&files.key)).unwrap_err();
    assert_eq!(
        error,
        format!("invalid tls_cert: {} holds no PEM certificate (BEGIN CERTIFICATE)", files.key.display())
    );
    let other = pki.dir.path().join("other-key.pem");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    assert_eq!(
        resolve(Some(&files.cert), Some(&other)).unwrap_err(),
        format!(
            "invalid tls_key: {} is not the private key of the certificate in {}",
            other.display(),
            files.cert.display()
        )
    );
}

/// `rtctl` with no `RTCTL_*` setting from the test's environment, in `dir`.
fn rtctl(dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(dir).env("NO_COLOR", "1").env_remove("RUST_LOG").kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    command
}

/// The `rtctl serve` binary with TLS: a real SIGHUP reloads the certificate while an open wss
/// connection stays open; `rtctl notify` and `rtctl connect` reach it with `--ca-cert` (finding its
/// `https://` address in the listen file), and `rtctl config check` accepts its settings.
#[tokio::test]
async fn serve_reloads_on_sighup_and_the_clients_speak_tls_with_ca_cert() {
    let pki = Pki::new();
    let first = pki.issue("first");
    let files = pki.files();
    let dir = tempfile::tempdir().unwrap();
    let tls_args = |command: &mut tokio::process::Command| {
        command.arg("--tls-cert").arg(&files.cert).arg("--tls-key").arg(&files.key);
    };

    let mut serve = rtctl(dir.path());
    serve.args(["serve", "--bind", "127.0.0.1:0"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    tls_args(&mut serve);
    let mut child = serve.spawn().unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut next_line = async || tokio::time::timeout(TIMEOUT * 3, log.next_line()).await.unwrap().unwrap().unwrap();
    let addr: SocketAddr = loop {
        let line = next_line().await;
        if line.contains("hub listening") {
            assert!(line.contains("tls=true"), "{line}");
            let at = line.find("address=").unwrap() + "address=".len();
            break line[at..].split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let mut check = rtctl(dir.path());
    check.args(["config", "check"]);
    tls_args(&mut check);
    let out = check.output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains(&format!("cert: {:?}", files.cert)), "{shown}");

    let file: toml::Value = toml::from_str(&std::fs::read_to_string(dir.path().join("rtctl.toml")).unwrap()).unwrap();
    let secret = file["jwt_secret"].as_str().unwrap().to_owned();
    let tls = pki.client();
    assert_eq!(presented(addr, &tls).await, first);
    let mut open = greeted(addr, &format!("/ws/notifications/?token={}", jwt(&secret, "7")), &tls).await;

    let second = pki.issue("second");
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    // SAFETY: sending a signal to our own child has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    while !next_line().await.contains("TLS certificate reloaded") {}
    assert_eq!(presented(addr, &tls).await, second, "new handshakes get the new certificate");

    let mut notify = rtctl(dir.path());
    notify.args(["notify", "--user-id", "7", "--title", "Reloaded", "--message", "m", "--ca-cert"]).arg(pki.ca_path());
    let out = notify.output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let push = recv(&mut open).await;
    assert_eq!(push["notification"]["title"], "Reloaded", "the connection opened before the reload is still up");

    let mut connect = rtctl(dir.path());
    connect.args(["connect", "notifications", "--user-id", "7", "--json", "-x", "ping timestamp=1", "--until", "pong"]);
    connect.arg("--ca-cert").arg(pki.ca_path());
    let out = tokio::time::timeout(TIMEOUT * 3, connect.output()).await.unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let frames: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(frames.first().map(|f| f["type"].clone()), Some(json!("connection_established")));
    assert_eq!(frames.last().map(|f| f["type"].clone()), Some(json!("pong")));

    // Without --ca-cert the system's roots do not know the test CA: the command says so in one line.
    let mut untrusted = rtctl(dir.path());
    untrusted.args(["status"]);
    let out = untrusted.output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        format!("rtctl: cannot reach the hub at https://{addr}/healthz: invalid peer certificate: UnknownIssuer\n")
    );

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(TIMEOUT * 3, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

/// `rtctl bench` speaks https and wss: with `--ca-cert` it fans out through a TLS hub and every
/// subscriber gets every message; without it the hub's certificate is refused and the bench fails.
#[tokio::test]
async fn bench_runs_against_a_tls_hub_with_ca_cert() {
    let pki = Pki::new();
    pki.issue("rtctl test hub");
    let hub = tls_hub(&pki).await;
    let url = format!("https://{}", hub.addr);
    let secret = hub.config.jwt_secret().expect("test hubs use an HS256 secret").to_owned();
    let bench = |ca_cert: Option<PathBuf>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"));
        command
            .args(["bench", "fanout", "--url", &url, "-n", "5", "-r", "50", "--messages", "20"])
            .args(["--warmup", "0s", "--drain", "2s", "-q", "--json", "--api-key", hub.api_key()])
            .arg(format!("--jwt-secret={secret}"))
            .env("NO_COLOR", "1");
        if let Some(ca_cert) = ca_cert {
            command.arg("--ca-cert").arg(ca_cert);
        }
        command.output()
    };
    let out = bench(Some(pki.ca_path())).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the summary is printed");
    let deliveries = &summary["deliveries"];
    assert_eq!(
        (&deliveries["expected"], &deliveries["received"], &deliveries["lost"]),
        (&json!(100), &json!(100), &json!(0))
    );
    let refused = bench(None).await.unwrap();
    assert!(!refused.status.success(), "a bench that does not trust the CA must fail");
}
