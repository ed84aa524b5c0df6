-- Password reset by email: single-use, short-lived tokens stored as digests.
-- Keep in step with ../postgres/0005_password_resets.sql.
CREATE TABLE password_resets (
    id TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX password_resets_user ON password_resets(user_id);
