//! The protocol reference in the repository (`docs/protocol.md`) keeps up with the code: every message
//! type, error code and close code that `rtctl::protocol` defines is named there.

use rtctl::protocol::{self, Endpoint, ErrorCode, HttpErrorCode, close};
use strum::VariantNames;

/// docs/protocol.md as the repository holds it.
fn protocol_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md exists")
}

/// The names in `names` that the doc never writes as `` `name` ``.
fn missing<'a>(doc: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    names.into_iter().filter(|name| !doc.contains(&format!("`{name}`"))).collect()
}

/// Every `type` a client may send on each endpoint, and every `type` the hub sends, is in the doc.
#[test]
fn every_message_type_is_documented() {
    let doc = protocol_doc();
    for endpoint in Endpoint::ALL {
        let absent = missing(&doc, endpoint.request_types());
        assert!(absent.is_empty(), "request types of {} missing from docs/protocol.md: {absent:?}", endpoint.label());
    }
    let absent = missing(&doc, protocol::SERVER_TYPES.iter().copied());
    assert!(absent.is_empty(), "server message types missing from docs/protocol.md: {absent:?}");
}

/// Every WebSocket `error` code and every HTTP error `code` is in the doc.
#[test]
fn every_error_code_is_documented() {
    let doc = protocol_doc();
    let absent = missing(&doc, ErrorCode::VARIANTS.iter().copied());
    assert!(absent.is_empty(), "WebSocket error codes missing from docs/protocol.md: {absent:?}");
    let absent = missing(&doc, HttpErrorCode::VARIANTS.iter().copied());
    assert!(absent.is_empty(), "HTTP error codes missing from docs/protocol.md: {absent:?}");
}

/// Every close code the hub sends is in the doc.
#[test]
fn every_close_code_is_documented() {
    let doc = protocol_doc();
    let codes: Vec<String> = close::ALL.iter().map(|(code, _)| code.to_string()).collect();
    let absent = missing(&doc, codes.iter().map(String::as_str));
    assert!(absent.is_empty(), "close codes missing from docs/protocol.md: {absent:?}");
}
