-- A user's notifications (PROTOCOL §4.1).
-- AUTOINCREMENT so that an id is never reused after a delete: clients page with before_id and mark
-- notifications by id, and a recycled id could point at someone else's newer notification.
CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    read       INTEGER NOT NULL DEFAULT 0 CHECK (read IN (0, 1)),
    -- Unix milliseconds.
    created_at INTEGER NOT NULL,
    -- A JSON object, as text.
    data       TEXT    NOT NULL DEFAULT '{}',
    link       TEXT
);

-- Every query is "this user's, newest first, below an id".
CREATE INDEX notifications_user_id ON notifications (user_id, id);
-- Unread counts run on every connect and every change; keep them off the read rows.
CREATE INDEX notifications_user_unread ON notifications (user_id, id) WHERE read = 0;
