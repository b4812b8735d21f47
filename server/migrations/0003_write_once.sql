-- The ledger, rebuilt (SQLite cannot drop a NOT NULL; this is portable):
-- * `content_length` is the exact length signed into the URL, or NULL when the client announced
--   none (the SRS's request); the confirm then bounds the stored size.
-- * `picture_key`: the checked copy a confirmed upload became (before this migration the
--   upload's own key was the picture).
-- * `audited_at`: when the maintenance pass audited the user's prefix after the URL expired.
CREATE TABLE uploads_v3 (
    photo_key      TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    content_type   TEXT NOT NULL,
    content_length BIGINT,
    expires_at     BIGINT NOT NULL,
    confirmed_at   BIGINT,
    picture_key    TEXT,
    swept_at       BIGINT,
    audited_at     BIGINT
);
INSERT INTO uploads_v3
    (photo_key, user_id, content_type, content_length, expires_at, confirmed_at, picture_key,
     swept_at)
SELECT photo_key, user_id, content_type, content_length, expires_at, confirmed_at,
       CASE WHEN confirmed_at IS NOT NULL THEN photo_key END, swept_at
FROM uploads;
DROP TABLE uploads;
ALTER TABLE uploads_v3 RENAME TO uploads;

-- The cap on uploads in progress, counted in the same transaction as the insert.
CREATE INDEX uploads_pending_by_user ON uploads (user_id, expires_at) WHERE confirmed_at IS NULL;
-- The maintenance pass: expired URLs whose prefix was not audited yet, oldest first.
CREATE INDEX uploads_unaudited ON uploads (expires_at) WHERE audited_at IS NULL;
-- Pruning audited entries after their retention.
CREATE INDEX uploads_audited ON uploads (audited_at) WHERE audited_at IS NOT NULL;

-- A task that kept failing is parked: kept for an operator, never due again.
ALTER TABLE outbox ADD COLUMN parked_at BIGINT;
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE parked_at IS NULL;
-- A user's deletions wait for their attribute sync; the prefix audit reads their queued keys.
CREATE INDEX outbox_by_user ON outbox (user_id, kind);
