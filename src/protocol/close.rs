//! WebSocket close codes (PROTOCOL §2), each with what it means to a client.

/// Defines each code as a const and lists them all in [`ALL`], from one table, so the list cannot miss
/// a code.
macro_rules! close_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $meaning:literal;)*) => {
        $($(#[$doc])* pub const $name: u16 = $code;)*

        /// Every close code of the protocol with its meaning in a few words, in code order.
        pub const ALL: &[(u16, &str)] = &[$(($name, $meaning)),*];
    };
}

close_codes! {
    /// Normal close.
    NORMAL = 1000, "normal close";
    /// The hub is shutting down or restarting; reconnect with backoff.
    GOING_AWAY = 1001, "hub shutting down or restarting; reconnect with backoff";
    /// The client broke the WebSocket protocol (RFC 6455).
    PROTOCOL_ERROR = 1002, "WebSocket protocol error";
    /// A binary frame was received.
    UNSUPPORTED_DATA = 1003, "binary frame received; the hub takes JSON text only";
    /// A text frame held invalid UTF-8.
    INVALID_PAYLOAD = 1007, "invalid UTF-8";
    /// A frame was larger than the configured limit.
    TOO_BIG = 1009, "frame larger than the hub's limit";
    /// Internal error; reconnect with backoff.
    INTERNAL = 1011, "internal error in the hub; reconnect with backoff";
    /// The node serves as many connections as it may (`--max-connections`); reconnect with backoff.
    TRY_AGAIN_LATER = 1013, "try again later: the node is at its connection limit";
    /// Nothing arrived from the client within the heartbeat timeout.
    HEARTBEAT_TIMEOUT = 4000, "heartbeat timeout: nothing arrived within the timeout";
    /// Missing, invalid or expired token.
    UNAUTHORIZED = 4001, "unauthorized: missing, invalid or expired token";
    /// Authenticated but not allowed on this endpoint.
    FORBIDDEN = 4003, "forbidden: authenticated but not allowed here";
    /// The chat room does not exist.
    NOT_FOUND = 4004, "not found: the chat room does not exist";
    /// The outbound queue overflowed: the client reads too slowly.
    SLOW_CONSUMER = 4008, "slow consumer: the outbound queue overflowed";
    /// Rate limit exceeded repeatedly, or the user holds `--max-connections-per-user` connections.
    RATE_LIMITED = 4029, "too many messages or connections: a rate or connection limit exceeded";
}

/// The longest close reason, in bytes: a close frame's payload is at most 125 bytes (RFC 6455 §5.5), two
/// of them the code. A longer reason makes the frame invalid and the client sees 1006 instead of the code.
pub const MAX_REASON: usize = 123;

/// `reason` cut to [`MAX_REASON`] bytes at a character boundary; every close the hub sends goes through
/// this, since a reason may quote what a client sent (an unknown JWT `kid`, say).
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON {
        return reason;
    }
    let end = (0..=MAX_REASON).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
    &reason[..end]
}

/// What a close code means, in a few words; `None` for a code the protocol does not use.
pub fn meaning(code: u16) -> Option<&'static str> {
    ALL.iter().find(|(known, _)| *known == code).map(|(_, meaning)| *meaning)
}

#[cfg(test)]
mod tests {
    /// The list is in code order without repeats, and every code has a meaning.
    #[test]
    fn codes_are_listed_once_in_order() {
        assert!(super::ALL.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!(super::meaning(super::SLOW_CONSUMER), Some("slow consumer: the outbound queue overflowed"));
        assert_eq!(super::meaning(1006), None);
    }

    /// A reason is cut to 123 bytes, never inside a character; a short one is left alone.
    #[test]
    fn reasons_are_cut_to_123_bytes_on_a_character_boundary() {
        assert_eq!(super::truncate_reason("token expired"), "token expired");
        let ascii = "k".repeat(200);
        assert_eq!(super::truncate_reason(&ascii), &ascii[..123]);
        // "é" is two bytes: after the "a", 61 of them end at byte 123; alone, the 62nd would end at 124.
        let accented = format!("a{}", "é".repeat(100));
        assert_eq!(super::truncate_reason(&accented), format!("a{}", "é".repeat(61)));
        assert_eq!(super::truncate_reason(&"é".repeat(100)).len(), 122);
    }
}
