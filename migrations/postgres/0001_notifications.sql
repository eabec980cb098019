-- A user's notifications (PROTOCOL §4.1). Same shape as the SQLite schema; timestamps are Unix
-- milliseconds. Identity ids are never reused after a delete: clients page with before_id and mark
-- notifications by id, and a recycled id could point at someone else's newer notification.
CREATE TABLE notifications (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    read       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT  NOT NULL,
    -- A JSON object, as text (the hub parses it; no query looks inside).
    data       TEXT    NOT NULL DEFAULT '{}',
    link       TEXT
);

-- Every query is "this user's, newest first, below an id".
CREATE INDEX notifications_user_id ON notifications (user_id, id);
-- Unread counts run on every connect and every change; keep them off the read rows.
CREATE INDEX notifications_user_unread ON notifications (user_id, id) WHERE NOT read;
