-- Refresh tokens of the embedded issuer revoked by signing out, until they would have expired
-- anyway (Cognito keeps its own record; this table is unused with it).
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
