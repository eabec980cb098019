//! How long a connection may live (PROTOCOL §7): until its token expires, unless the client first hands
//! over a fresh JWT for the same user with `refresh`.
//!
//! The deadline is one timer in the connection's own task, armed once and moved by a refresh: nothing
//! scans the connections, and a push never looks at it.

use std::time::Duration;

use tokio::time::Instant;

use super::Hub;
use super::error::HubError;
use super::session::Reply;
use crate::auth::{AuthError, Identity};
use crate::protocol::{self, ServerMessage};

/// The close reason (with 4001) of a connection whose token expired.
pub const EXPIRED: &str = "token expired";

/// A connection's token lifetime: the `exp` of its JWT, or of the JWT its ws token was minted from.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    /// When the connection must close; `None`: never (a ws token stored by a hub that did not record
    /// its JWT's `exp`). Computed when the `exp` is set, so that reading it costs nothing.
    deadline: Option<Instant>,
}

impl Lifetime {
    pub fn new(exp: Option<u64>) -> Self {
        Self { deadline: exp.map(deadline_of) }
    }

    /// Whether the connection has a deadline at all.
    pub fn bounded(&self) -> bool {
        self.deadline.is_some()
    }

    /// When the connection must close; `None` when unbounded.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Takes a fresh JWT for `identity`'s user: the connection then lives until its `exp`. `rights`
    /// checks the new token's claims against the endpoint (and takes them). A token that is not valid,
    /// is another user's, or no longer allows the endpoint is refused (`forbidden`) and changes nothing.
    pub async fn refresh(
        &mut self,
        hub: &Hub,
        identity: &Identity,
        token: &str,
        rights: impl FnOnce(&Identity) -> Result<(), HubError>,
    ) -> Result<Reply, HubError> {
        if !crate::auth::looks_like_jwt(token) {
            return Err(HubError::bad_request(
                "refresh takes a JWT; a ws token opens a connection but cannot extend one",
            ));
        }
        // As at the upgrade: a token signed with a newly rotated key verifies on its first use.
        hub.verifier.prepare_for(token).await;
        let verified = hub.verify_jwt(token).map_err(|error| match error {
            AuthError::KeysUnavailable => HubError::unavailable(error.to_string()),
            error => HubError::unauthorized(format!("refresh refused: {error}")),
        })?;
        if verified.identity.user_id != identity.user_id {
            return Err(HubError::forbidden("refresh refused: the token is another user's"));
        }
        rights(&verified.identity)?;
        let exp = verified.exp.ok_or_else(HubError::internal)?;
        self.deadline = Some(deadline_of(exp));
        hub.metrics.token_refresh();
        let millis = i64::try_from(exp.saturating_mul(1000)).unwrap_or(i64::MAX);
        let expires_at = protocol::format_timestamp(millis);
        Ok(Reply::new(&ServerMessage::Refreshed { expires_at: &expires_at }))
    }
}

/// The end of the second `exp`: the instant from which a token with this `exp` is refused at connect
/// (no leeway on `exp`), on the monotonic clock.
fn deadline_of(exp: u64) -> Instant {
    let end_ms = i64::try_from(exp.saturating_add(1).saturating_mul(1000)).unwrap_or(i64::MAX);
    let left = u64::try_from(end_ms.saturating_sub(protocol::now_millis())).unwrap_or(0);
    Instant::now() + Duration::from_millis(left)
}

/// The `forbidden` answer to a refresh whose token no longer lets the user in where the connection is.
pub fn no_longer_allowed(why: &str) -> HubError {
    HubError::forbidden(format!("refresh refused: the token no longer allows this connection: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadline is the end of the `exp` second, measured from now; none without an `exp`.
    #[test]
    fn the_deadline_is_the_end_of_the_exp_second() {
        assert_eq!(Lifetime::new(None).deadline(), None);
        let now_secs = (protocol::now_millis() / 1000) as u64;
        let before = Instant::now();
        let deadline = Lifetime::new(Some(now_secs + 2)).deadline().expect("bounded");
        let left = deadline - before;
        assert!(
            left > Duration::from_secs(2) && left <= Duration::from_secs(3) + Duration::from_millis(50),
            "{left:?}"
        );
        let past = Lifetime::new(Some(now_secs - 10)).deadline().expect("bounded");
        assert!(past <= Instant::now());
    }
}
