-- Idempotency-Key records for the POST routes that store or publish (docs/protocol.md, "Idempotency"):
-- the first answer to a caller's key, kept 24 h, so that a retry gets it again instead of storing twice.
-- `status` and `body` are NULL while the first request is in flight. Timestamps are Unix milliseconds.
CREATE TABLE idempotency_keys (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    status      INTEGER,
    body        TEXT,
    created_at  INTEGER  NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Expired keys are pruned in the background, oldest first.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- --notification-retention prunes notifications older than its age, oldest first, off the hot path.
CREATE INDEX notifications_created_at ON notifications (created_at);
