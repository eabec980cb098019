-- The admin dashboard (PROTOCOL §4.3) and chat rooms (§4.4). Timestamps are Unix milliseconds.
-- `seq` columns keep arrival order where SQLite uses its rowid.

-- One row per user who ever registered for approval; a decided user who registers again is pending again.
CREATE TABLE pending_users (
    user_id       TEXT   PRIMARY KEY,
    email         TEXT,
    name          TEXT,
    registered_at BIGINT NOT NULL,
    status        TEXT   NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    seq           BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX pending_users_pending ON pending_users (registered_at, seq) WHERE status = 'pending';

-- Every decision ever taken, kept apart from pending_users so that a new registration does not erase
-- the history behind "recent approvals" and "approved today".
CREATE TABLE approvals (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT   NOT NULL,
    status     TEXT   NOT NULL CHECK (status IN ('approved', 'rejected')),
    reason     TEXT,
    decided_by TEXT   NOT NULL,
    decided_at BIGINT NOT NULL
);

CREATE INDEX approvals_decided_at ON approvals (decided_at);

-- The admin activity feed.
CREATE TABLE admin_activity (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT   NOT NULL CHECK (kind IN ('new_user', 'approval', 'order_update')),
    data       TEXT   NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);

CREATE TABLE chat_rooms (
    -- [A-Za-z0-9_.-]{1,64}, as the protocol's ids; the hub validates first, this is the backstop.
    room_id    TEXT   PRIMARY KEY CHECK (room_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE chat_members (
    room_id TEXT   NOT NULL REFERENCES chat_rooms (room_id) ON DELETE CASCADE,
    user_id TEXT   NOT NULL,
    -- Members list in the order they were added.
    seq     BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (room_id, user_id)
);

-- "Which rooms may this user enter?"
CREATE INDEX chat_members_user ON chat_members (user_id, room_id);

-- Identity ids for the same reason as notifications: ids are paging cursors and read positions.
CREATE TABLE chat_messages (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id        TEXT   NOT NULL REFERENCES chat_rooms (room_id) ON DELETE CASCADE,
    sender_id      TEXT   NOT NULL,
    content        TEXT   NOT NULL,
    attachment_url TEXT,
    created_at     BIGINT NOT NULL
);

CREATE INDEX chat_messages_room ON chat_messages (room_id, id);

-- How far each user has read in each room; only ever moves forward.
CREATE TABLE chat_read_positions (
    room_id    TEXT   NOT NULL REFERENCES chat_rooms (room_id) ON DELETE CASCADE,
    user_id    TEXT   NOT NULL,
    message_id BIGINT NOT NULL,
    read_at    BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
