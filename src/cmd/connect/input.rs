//! What a typed or piped line means: a JSON frame, the `type key=value` shorthand, a slash command, or
//! (in a chat room) text to say; and when a multi-line JSON entry is complete.

use serde_json::{Map, Value, json};

use crate::protocol::{Endpoint, PING};

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

/// Decides what `entry` means on `endpoint` (`None`: a URL whose endpoint is unknown); the error says
/// what is wrong with it, and nothing is sent. In a chat room, a line that is neither JSON, a slash
/// command nor `TYPE key=value` with one of the room's types is text to say: a `chat_message`.
pub fn parse(entry: &str, endpoint: Option<Endpoint>) -> Result<Action, String> {
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
    let types = endpoint.map_or_else(|| vec![PING], Endpoint::request_types);
    let first = trimmed.split_whitespace().next().unwrap_or_default();
    let known = types.contains(&first);
    let chat = endpoint == Some(Endpoint::Chat);
    match (shorthand(trimmed), chat) {
        (Ok(value), false) => Ok(Action::Send(value.to_string())),
        (Ok(value), true) if known => Ok(Action::Send(value.to_string())),
        (_, true) => Ok(Action::Send(json!({"type": "chat_message", "message": trimmed}).to_string())),
        // Words that are not a message: say what is, in one line.
        (Err(_), false) if endpoint.is_some() && !known => Err(format!(
            "`{trimmed}` is not a message: type JSON or TYPE key=value ({}), or /help; plain text is for chat rooms (rtctl connect chat ROOM)",
            types.join(", ")
        )),
        (Err(why), false) => Err(why),
    }
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
            // `/close 4000 "spam account"` means the words, not the quotes.
            let reason = reason.trim();
            let reason = match value(reason) {
                Ok(Value::String(unquoted)) if reason.starts_with(['"', '\'']) => unquoted,
                _ => reason.to_owned(),
            };
            Ok(Action::Close { code, reason })
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
/// parses as JSON (`5`, `true`, `[1,2]`, `"5"`), else a string; a quoted one (`reason="spam account"`,
/// `reason='spam account'`, with `\"` or `\'` inside) is a string and may hold spaces.
pub fn shorthand(line: &str) -> Result<Value, String> {
    let words = words(line)?;
    let (kind, pairs) = words.split_first().map_or(("", &[][..]), |(kind, pairs)| (*kind, pairs));
    if !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("`{kind}` is not a message type; type JSON, `TYPE key=value ...` or /help"));
    }
    let mut object = Map::new();
    object.insert("type".to_owned(), Value::from(kind));
    for word in pairs {
        let (key, raw) = word.split_once('=').ok_or_else(|| {
            format!("`{word}` is not key=value; quote a value with spaces, e.g. reason=\"spam account\"")
        })?;
        if key.is_empty() {
            return Err(format!("`{word}` has no key"));
        }
        object.insert(key.to_owned(), value(raw)?);
    }
    Ok(Value::Object(object))
}

/// Splits a shorthand line at the whitespace outside quotes and brackets, so that
/// `reason="spam account"` and `ids=[1, 2]` are one word each. A quote opens a quoted part at the start
/// of a word or a value (a `'` inside a word, as in `it's`, is a letter); `"` also inside brackets.
fn words(line: &str) -> Result<Vec<&str>, String> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let (mut quote, mut escaped, mut depth, mut previous) = (None::<char>, false, 0i32, ' ');
    for (at, c) in line.char_indices() {
        if let Some(open) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                c if c == open => quote = None,
                _ => {}
            }
            previous = c;
            continue;
        }
        let value_start = previous.is_whitespace() || previous == '=';
        match c {
            c if c.is_whitespace() && depth <= 0 => {
                if let Some(from) = start.take() {
                    words.push(&line[from..at]);
                }
            }
            '"' if value_start || depth > 0 => quote = Some(c),
            '\'' if value_start && depth <= 0 => quote = Some(c),
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
        if !(c.is_whitespace() && depth <= 0) {
            start.get_or_insert(at);
        }
        previous = c;
    }
    if let Some(open) = quote {
        let word = &line[start.unwrap_or_default()..];
        return Err(format!("`{word}` has no closing {open}; close the quote, e.g. reason={open}spam account{open}"));
    }
    if let Some(from) = start {
        words.push(&line[from..]);
    }
    Ok(words)
}

/// One shorthand value: a quoted string, else JSON when it parses, else the text as a string.
fn value(raw: &str) -> Result<Value, String> {
    if raw.starts_with('"') {
        // A JSON string: `\"`, `\\`, `\n` and `\u..` escapes as JSON has them.
        return serde_json::from_str::<String>(raw)
            .map(Value::from)
            .map_err(|_| format!("`{raw}` is not one quoted string; escape a quote inside as \\\""));
    }
    if let Some(quoted) = raw.strip_prefix('\'') {
        let mut text = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => text.extend(chars.next()),
                '\'' if chars.as_str().is_empty() => return Ok(Value::from(text)),
                '\'' => break,
                c => text.push(c),
            }
        }
        return Err(format!("`{raw}` is not one quoted string; escape a quote inside as \\'"));
    }
    Ok(serde_json::from_str(raw).unwrap_or_else(|_| Value::from(raw)))
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

    /// A quoted value holds spaces and escaped quotes, in double or single quotes; an unclosed quote
    /// says so; brackets keep a JSON value with spaces whole; a `'` inside a word is a letter.
    #[test]
    fn shorthand_values_may_be_quoted() {
        let frame = |line: &str| shorthand(line).unwrap();
        assert_eq!(
            frame(r#"reject_user user_id=4 reason="spam account""#),
            serde_json::json!({"type":"reject_user","user_id":4,"reason":"spam account"})
        );
        assert_eq!(frame("x reason='spam account'")["reason"], "spam account");
        assert_eq!(frame(r#"x reason="say \"hi\" now""#)["reason"], r#"say "hi" now"#);
        assert_eq!(frame(r"x reason='it\'s   spaced'")["reason"], "it's   spaced");
        assert_eq!(frame("x note=it's")["note"], "it's");
        assert_eq!(
            frame(r#"x ids=[1, 2] data={"a": "b c"}"#),
            serde_json::json!({"type":"x","ids":[1,2],"data":{"a":"b c"}})
        );
        assert_eq!(frame(r#"x n="5""#)["n"], "5");
        let unclosed = shorthand(r#"x reason="spam account"#).unwrap_err();
        assert!(unclosed.contains("has no closing \""), "{unclosed}");
        assert!(shorthand(r#"x reason="a"b"#).is_err());
    }

    /// In a chat room, text is said; elsewhere it gets one line naming what a message is.
    #[test]
    fn plain_text_is_chat_in_a_room_and_a_hint_elsewhere() {
        let chat = Some(Endpoint::Chat);
        let said = |line: &str| match parse(line, chat).unwrap() {
            Action::Send(text) => serde_json::from_str::<Value>(&text).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(said("hello there"), serde_json::json!({"type":"chat_message","message":"hello there"}));
        assert_eq!(said("it's a \"test\""), serde_json::json!({"type":"chat_message","message":"it's a \"test\""}));
        assert_eq!(said("typing"), serde_json::json!({"type":"typing"}));
        assert_eq!(said("get_history limit=5")["limit"], 5);
        assert_eq!(said("ping me later")["message"], "ping me later");
        assert_eq!(parse("/quit", chat).unwrap(), Action::Quit);
        let hint = parse("hello there", Some(Endpoint::Notifications)).unwrap_err();
        assert!(
            hint.starts_with(
                "`hello there` is not a message: type JSON or TYPE key=value (subscribe, get_notifications"
            ),
            "{hint}"
        );
        assert!(parse("hello there", None).unwrap_err().contains("is not key=value"));
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
        let parse = |entry| parse(entry, Some(Endpoint::Notifications));
        assert_eq!(parse("/close 4000 bye now").unwrap(), Action::Close { code: 4000, reason: "bye now".into() });
        assert_eq!(
            parse("/close 4000 'spam account'").unwrap(),
            Action::Close { code: 4000, reason: "spam account".into() }
        );
        assert_eq!(parse("/close").unwrap(), Action::Close { code: 1000, reason: String::new() });
        assert!(parse("/close 1006").is_err());
        assert_eq!(parse("/json off").unwrap(), Action::Pretty(false));
        assert_eq!(parse("{\"type\":\"ping\"}").unwrap(), Action::Send("{\"type\":\"ping\"}".into()));
        assert!(parse("{\"type\":").is_err());
        assert!(parse("/frobnicate").is_err());
    }
}
