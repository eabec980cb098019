//! What a typed or piped line means: a JSON frame, the `type key=value` shorthand, or a slash command;
//! and when a multi-line JSON entry is complete.

use serde_json::{Map, Value};

/// The slash commands, with their `/help` text; also the completion candidates.
pub const SLASH_COMMANDS: &[(&str, &str)] = &[
    ("/ping", "send a protocol ping and show the round trip when the pong arrives"),
    ("/close", "[CODE] [REASON]  close the connection (default 1000) and end the session"),
    ("/reconnect", "close and connect again (with a fresh token when rtctl minted it)"),
    ("/json", "on|off  pretty-print incoming JSON, or show frames as they came"),
    ("/raw", "TEXT  send TEXT as it is, even when it is not JSON"),
    ("/history", "show the input history of this target"),
    ("/help", "show this help"),
    ("/quit", "close normally and end the session (also Ctrl-D)"),
];

/// One entry of the user's, decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this text frame.
    Send(String),
    /// Send a protocol ping and time its pong.
    Ping,
    /// Close with this code and reason, then end.
    Close {
        code: u16,
        reason: String,
    },
    Reconnect,
    /// Pretty-print on or off.
    Pretty(bool),
    History,
    Help,
    Quit,
    /// An empty line.
    Nothing,
}

/// Decides what `entry` means; the error says what is wrong with it, and nothing is sent.
pub fn parse(entry: &str) -> Result<Action, String> {
    let trimmed = entry.trim();
    if trimmed.is_empty() {
        return Ok(Action::Nothing);
    }
    // Where stdin had bytes that are not UTF-8 (see `read_stdin`): sent, they would be altered.
    if trimmed.contains(char::REPLACEMENT_CHARACTER) {
        return Err("not UTF-8 text; not sent".into());
    }
    if let Some(command) = trimmed.strip_prefix('/') {
        return slash(command);
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: Value =
            serde_json::from_str(trimmed).map_err(|e| format!("not valid JSON ({e}); /raw sends it anyway"))?;
        return Ok(Action::Send(value.to_string()));
    }
    shorthand(trimmed).map(|value| Action::Send(value.to_string()))
}

fn slash(command: &str) -> Result<Action, String> {
    let (name, rest) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
    let rest = rest.trim();
    match name {
        "ping" => Ok(Action::Ping),
        "close" => {
            let (code, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let code = match code {
                "" => 1000,
                code => code.parse().map_err(|_| format!("`{code}` is not a close code; try /close 1000 bye"))?,
            };
            if !(code == 1000 || (3000..5000).contains(&code)) {
                return Err(format!("a client may close with 1000 or 3000-4999, not {code}"));
            }
            Ok(Action::Close { code, reason: reason.trim().to_owned() })
        }
        "reconnect" => Ok(Action::Reconnect),
        "json" => match rest {
            "on" => Ok(Action::Pretty(true)),
            "off" => Ok(Action::Pretty(false)),
            _ => Err("usage: /json on|off".to_owned()),
        },
        "raw" if !rest.is_empty() => Ok(Action::Send(rest.to_owned())),
        "raw" => Err("usage: /raw TEXT".to_owned()),
        "history" => Ok(Action::History),
        "help" | "?" => Ok(Action::Help),
        "quit" | "exit" | "q" => Ok(Action::Quit),
        other => Err(format!("unknown command /{other}; /help lists them")),
    }
}

/// `mark_read notification_id=5` → `{"type":"mark_read","notification_id":5}`. A value is JSON when it
/// parses as JSON (`5`, `true`, `[1,2]`, `"5"`), else a string.
pub fn shorthand(line: &str) -> Result<Value, String> {
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default();
    if !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("`{kind}` is not a message type; type JSON, `TYPE key=value ...` or /help"));
    }
    let mut object = Map::new();
    object.insert("type".to_owned(), Value::from(kind));
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("`{word}` is not key=value; quote JSON values, e.g. title=\"Hi\""))?;
        if key.is_empty() {
            return Err(format!("`{word}` has no key"));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        object.insert(key.to_owned(), value);
    }
    Ok(Value::Object(object))
}

/// Whether a JSON entry has as many closing as opening braces and brackets (outside strings), so that
/// Enter sends it; anything that does not start like JSON is complete at once.
pub fn is_complete(entry: &str) -> bool {
    let trimmed = entry.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return true;
    }
    let (mut depth, mut in_string, mut escaped) = (0i64, false, false);
    for c in trimmed.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => in_string = true,
            (false, _, '{' | '[') => depth += 1,
            (false, _, '}' | ']') => depth -= 1,
            _ => {}
        }
    }
    depth <= 0 && !in_string
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values parse as JSON when they can, else stay strings.
    #[test]
    fn shorthand_builds_the_frame() {
        let value = shorthand(r#"mark_read notification_id=5 all=true title="5" name=bob ids=[1,2]"#).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type":"mark_read","notification_id":5,"all":true,"title":"5","name":"bob","ids":[1,2]})
        );
        assert!(shorthand("hello world").is_err());
    }

    /// Braces inside strings do not count; a bare word is complete at once.
    #[test]
    fn json_entries_complete_when_braces_balance() {
        assert!(!is_complete("{\"type\": \"ping\","));
        assert!(is_complete("{\"type\": \"ping\",\n \"x\": \"}{\"}"));
        assert!(!is_complete("{\"a\": [1,\n"));
        assert!(is_complete("ping"));
    }

    /// Slash commands parse their arguments and refuse bad ones.
    #[test]
    fn slash_commands() {
        assert_eq!(parse("/close 4000 bye now").unwrap(), Action::Close { code: 4000, reason: "bye now".into() });
        assert_eq!(parse("/close").unwrap(), Action::Close { code: 1000, reason: String::new() });
        assert!(parse("/close 1006").is_err());
        assert_eq!(parse("/json off").unwrap(), Action::Pretty(false));
        assert_eq!(parse("{\"type\":\"ping\"}").unwrap(), Action::Send("{\"type\":\"ping\"}".into()));
        assert!(parse("{\"type\":").is_err());
        assert!(parse("/frobnicate").is_err());
    }
}
