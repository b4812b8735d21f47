-- Filled by the atomic picture swap: the key the last change replaced (see db.rs).
ALTER TABLE users ADD COLUMN replaced_photo_key TEXT;

-- Set when the sweeper removed the object of an upload that was never confirmed.
ALTER TABLE uploads ADD COLUMN swept_at BIGINT;
CREATE INDEX uploads_unconfirmed ON uploads (confirmed_at, expires_at);
-- The per-user count of uploads in progress reads at most the limit's worth of this index.
CREATE INDEX uploads_pending_by_user ON uploads (user_id, expires_at) WHERE confirmed_at IS NULL;

-- Work that must happen after a committed picture change, retried until it succeeds:
-- 'sync_picture' (make the directory attribute match users.photo_key) and 'delete_object'.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    photo_key       TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);
