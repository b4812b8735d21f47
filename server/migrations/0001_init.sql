-- Portable between SQLite and PostgreSQL: one schema, one set of queries.
-- Times are Unix seconds (BIGINT) so that both databases store and compare them the same way.

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    phone      TEXT,
    role       TEXT NOT NULL DEFAULT 'Member',
    status     TEXT NOT NULL DEFAULT 'Active',
    joined_at  TEXT NOT NULL,
    photo_key  TEXT,
    -- Bumped on every picture change: the compare-and-swap that keeps concurrent confirms honest.
    version    BIGINT NOT NULL DEFAULT 0
);

-- The ledger of signed upload URLs: `uploaded` accepts only keys found here.
CREATE TABLE uploads (
    photo_key      TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    content_type   TEXT NOT NULL,
    content_length BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    confirmed_at   BIGINT
);
CREATE INDEX uploads_by_user ON uploads (user_id, confirmed_at);

-- Accounts of the embedded identity provider (unused with Cognito).
CREATE TABLE local_accounts (
    user_id       TEXT PRIMARY KEY REFERENCES users (id),
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    picture       TEXT
);
