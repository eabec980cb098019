//! Claim mapping: where in a verified token's claims the user id, the staff flag, the organizations, the
//! name and the email are, so that tokens of an identity provider (Keycloak's `realm_access.roles`,
//! `groups`, `preferred_username`; simplejwt's `user_id`) map without a translating proxy. The defaults
//! are PROTOCOL §1's own claims: `sub`, `is_staff`, `orgs`, `name`, `email`.

use anyhow::bail;
use serde_json::{Map, Value};

use super::{AuthError, Identity, invalid};

/// Where each part of an identity comes from. A path is a claim name, or a dotted path into nested
/// objects (`realm_access.roles`); a claim whose own name holds dots (`https://example.com/roles`) is
/// found too, since the whole path is tried as a name first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMap {
    /// Paths tried in order; the first present one is the user id (required).
    pub user_id: Vec<String>,
    pub staff: StaffRule,
    /// Paths tried in order; the first present one holds the organizations.
    pub orgs: Vec<String>,
    pub name: String,
    pub email: String,
}

/// How a token says its user is staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaffRule {
    /// A boolean claim (`is_staff`); absent means not staff.
    Flag(String),
    /// Staff when the claim equals this string or is an array holding it (`realm_access.roles=admin`).
    Holds(String, String),
}

impl Default for ClaimMap {
    fn default() -> Self {
        Self {
            user_id: vec!["sub".to_owned()],
            staff: StaffRule::Flag("is_staff".to_owned()),
            orgs: vec!["orgs".to_owned()],
            name: "name".to_owned(),
            email: "email".to_owned(),
        }
    }
}

impl std::fmt::Display for StaffRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StaffRule::Flag(path) => f.write_str(path),
            StaffRule::Holds(path, value) => write!(f, "{path}={value}"),
        }
    }
}

impl StaffRule {
    /// `PATH` (a boolean claim) or `PATH=VALUE` (the claim is VALUE or an array holding it).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        match text.split_once('=') {
            Some((path, value)) => Ok(Self::Holds(path_setting(path)?, nonempty(value, "value")?)),
            None => Ok(Self::Flag(path_setting(text)?)),
        }
    }
}

/// A comma-separated list of paths, tried in order.
pub fn parse_paths(text: &str) -> anyhow::Result<Vec<String>> {
    text.split(',').map(path_setting).collect()
}

/// One claim path: non-empty, no empty segment.
pub fn path_setting(text: &str) -> anyhow::Result<String> {
    let path = nonempty(text, "claim path")?;
    if path.split('.').any(str::is_empty) {
        bail!("`{path}` is not a claim path like sub or realm_access.roles");
    }
    Ok(path)
}

fn nonempty(text: &str, what: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if text.is_empty() || text.contains(char::is_whitespace) {
        bail!("expected a {what} without spaces, got `{text}`");
    }
    Ok(text.to_owned())
}

impl ClaimMap {
    /// The identity verified claims carry, with PROTOCOL §1's defaults and id rules.
    pub fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let (path, value) = self
            .user_id
            .iter()
            .find_map(|path| lookup(claims, path).map(|v| (path, v)))
            .ok_or_else(|| invalid(format!("missing claim {}", self.user_id.join(" or "))))?;
        // The protocol's user id rule, so that a token cannot name a user no request could name.
        let user_id = crate::protocol::user_id(value).map_err(|e| invalid(format!("claim {path}: {e}")))?;
        let is_staff = match &self.staff {
            StaffRule::Flag(path) => match lookup(claims, path) {
                None => false,
                Some(v) => v.as_bool().ok_or_else(|| invalid(format!("claim {path} must be a boolean")))?,
            },
            StaffRule::Holds(path, wanted) => match lookup(claims, path) {
                None => false,
                Some(Value::String(s)) => s == wanted,
                Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(wanted)),
                Some(_) => return Err(invalid(format!("claim {path} must be a string or an array"))),
            },
        };
        let orgs = match self.orgs.iter().find_map(|path| lookup(claims, path).map(|v| (path, v))) {
            None => Vec::new(),
            Some((path, value)) => org_ids(value).ok_or_else(|| {
                invalid(format!("claim {path} must be an array of strings or integers, or an object"))
            })?,
        };
        let text = |path: &str| -> Result<Option<String>, AuthError> {
            match lookup(claims, path) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(|s| Some(s.to_owned()))
                    .ok_or_else(|| invalid(format!("claim {path} must be a string"))),
            }
        };
        Ok(Identity { user_id, is_staff, orgs, name: text(&self.name)?, email: text(&self.email)? })
    }
}

/// The claim at `path`: the whole path as one name first, then as a dotted path; `null` is absent.
fn lookup<'c>(claims: &'c Map<String, Value>, path: &str) -> Option<&'c Value> {
    let found = claims.get(path).or_else(|| {
        let mut segments = path.split('.');
        let first = claims.get(segments.next()?)?;
        segments.try_fold(first, |value, segment| value.as_object()?.get(segment))
    });
    found.filter(|v| !v.is_null())
}

/// Organization ids from an array of ids, or from an object's keys (Keycloak's `organization` claim
/// with attributes). Ids are taken as they are: Keycloak's `groups` holds `/acme` unless its mapper's
/// "Full group path" is off.
fn org_ids(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Array(items) => items.iter().map(id_string).collect(),
        Value::Object(map) => Some(map.keys().cloned().collect()),
        _ => None,
    }
}

/// An org id: a non-empty string, or a JSON integer turned into its decimal string.
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().expect("an object").clone()
    }

    /// A Keycloak access token: the user is `preferred_username`, staff by realm role, orgs from `groups`.
    #[test]
    fn keycloak_claims_map_by_path() {
        let map = ClaimMap {
            user_id: parse_paths("preferred_username,sub").unwrap(),
            staff: StaffRule::parse("realm_access.roles=admin").unwrap(),
            orgs: parse_paths("organization,groups").unwrap(),
            ..ClaimMap::default()
        };
        let token = claims(json!({
            "sub": "f1b3c0de-0000", "preferred_username": "alice", "email": "alice@example.com",
            "realm_access": {"roles": ["offline_access", "admin"]}, "groups": ["acme", "globex"],
        }));
        let id = map.identity(&token).unwrap();
        assert_eq!((id.user_id.as_str(), id.is_staff), ("alice", true));
        assert_eq!(id.orgs, ["acme", "globex"]);
        assert_eq!(id.email.as_deref(), Some("alice@example.com"));

        let token = claims(json!({"sub": "u2", "realm_access": {"roles": ["user"]},
                                  "organization": {"acme": {"id": "1"}}}));
        let id = map.identity(&token).unwrap();
        assert_eq!((id.user_id.as_str(), id.is_staff, id.orgs), ("u2", false, vec!["acme".to_owned()]));
    }

    /// The defaults are PROTOCOL §1's claims, with the messages they always had.
    #[test]
    fn defaults_are_the_protocol_claims() {
        let map = ClaimMap::default();
        let id = map.identity(&claims(json!({"sub": 7, "is_staff": true, "orgs": [1, "a"], "name": "N"}))).unwrap();
        assert_eq!((id.user_id.as_str(), id.is_staff, id.orgs.len(), id.name.as_deref()), ("7", true, 2, Some("N")));
        assert_eq!(map.identity(&claims(json!({"user_id": 7}))), Err(invalid("missing claim sub")));
        assert_eq!(
            map.identity(&claims(json!({"sub": "1", "is_staff": "yes"}))),
            Err(invalid("claim is_staff must be a boolean"))
        );
    }

    /// Paths and rules are checked when they are read.
    #[test]
    fn bad_settings_are_refused() {
        assert!(parse_paths("sub,,name").is_err());
        assert!(path_setting("realm_access..roles").is_err());
        assert!(StaffRule::parse("roles=").is_err());
        assert_eq!(StaffRule::parse("is_admin").unwrap(), StaffRule::Flag("is_admin".into()));
        assert_eq!(StaffRule::parse("realm_access.roles=admin").unwrap().to_string(), "realm_access.roles=admin");
    }
}
