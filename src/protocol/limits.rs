//! The protocol's fixed limits and defaults: longer input is refused with a message naming the field,
//! never truncated. (The limits an operator sets, such as the frame size and the rates, are in
//! `config::Limits`.)

/// The default and the largest page of every list (`get_notifications`, `get_history`, the REST lists).
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// The longest user id, in bytes (user ids are opaque to the hub; 128 fits any UUID, email or URN).
pub const MAX_USER_ID: usize = 128;
/// The longest room, org or order id, in bytes (`[A-Za-z0-9_.-]{1,64}`).
pub const MAX_SCOPE_ID: usize = 64;

/// Largest HTTP request body in bytes (PROTOCOL §5: 413 above it). A limit of the protocol rather than of
/// the HTTP code: clients size their requests by it (10,000 recipients of a long notification fit).
pub const MAX_BODY: usize = 1024 * 1024;

/// A notification's longest title and message, in characters.
pub const MAX_TITLE: usize = 200;
pub const MAX_NOTIFICATION_MESSAGE: usize = 10_000;
/// A notification type's longest length (also each type of `subscribe`), in bytes.
pub const MAX_NOTIFICATION_TYPE: usize = 64;
/// A notification's longest link, in bytes.
pub const MAX_LINK: usize = 2_048;
/// The `type` of a notification sent without one.
pub const DEFAULT_NOTIFICATION_TYPE: &str = "general";
/// Most recipients one `POST /api/v1/notifications` may name.
pub const MAX_RECIPIENTS: usize = 10_000;

/// An org event's longest `event_type`, in bytes.
pub const MAX_EVENT_TYPE: usize = 128;

/// A pending user's longest email (RFC 5321's 254) in bytes, and name in characters.
pub const MAX_EMAIL: usize = 254;
pub const MAX_NAME: usize = 200;
/// The longest reason of a rejection, in characters.
pub const MAX_REASON: usize = 1_000;
/// An order update's longest status, in bytes.
pub const MAX_ORDER_STATUS: usize = 64;

/// A chat message's longest length, in characters (PROTOCOL §4.4: 1..4000, stored as sent).
pub const MAX_CHAT_MESSAGE: usize = 4_000;
/// The longest `client_id` a chat message may carry, in bytes.
pub const MAX_CLIENT_ID: usize = 128;
/// A room's longest name, in characters.
pub const MAX_ROOM_NAME: usize = 200;
/// A chat message's longest attachment URL, in bytes.
pub const MAX_ATTACHMENT_URL: usize = 2_048;
/// Most members one room may be created with.
pub const MAX_MEMBERS: usize = 10_000;
