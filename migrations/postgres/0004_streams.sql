-- Stream positions and the bounded log behind `resume` (PROTOCOL §7): org events and dashboard pushes.
-- Same shape as the SQLite schema; timestamps are Unix milliseconds. Every node allocates positions
-- here, under the stream row's lock, so nodes agree on them.

-- One row per stream (a layer group name such as `org:acme` or `admins`): its epoch, random when the row
-- is made, so a store that lost its rows gives every stream a new epoch, and its last seq.
CREATE TABLE streams (
    stream   TEXT   PRIMARY KEY,
    epoch    TEXT   NOT NULL,
    last_seq BIGINT NOT NULL
);

-- The frames as they were pushed, seq and epoch included, so a replay sends the same bytes. Pruned by
-- count per stream and by age in the background (--event-history, --event-retention).
CREATE TABLE stream_events (
    stream     TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    frame      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (stream, seq)
);

-- Pruning by age scans by time, not by stream.
CREATE INDEX stream_events_created_at ON stream_events (created_at);
