-- Zero-trust sign-in: per-organization policy, second factors, sign-in
-- challenges, throttling and lockout. Keep in step with ../postgres/0004_zero_trust.sql.
CREATE TABLE org_policies (
    org_id TEXT PRIMARY KEY REFERENCES orgs(id),
    policy TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
ALTER TABLE users ADD COLUMN locked_at INTEGER;
-- A lock from failed sign-ins stops new sign-ins only: anyone who knows an
-- address can cause it, so it must not cut off the owner's open sessions.
-- An administrator's lock (and containment) stops everything.
ALTER TABLE users ADD COLUMN locked_by_failures INTEGER NOT NULL DEFAULT 0;
-- Until this time a user without a second factor may enrol one right after
-- the password step (new accounts and accounts an admin reset); afterwards
-- only an admin can reopen enrolment, so a stolen password cannot enrol a factor.
ALTER TABLE users ADD COLUMN mfa_enrol_until INTEGER;
ALTER TABLE sessions ADD COLUMN mfa_at INTEGER;
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
ALTER TABLE api_tokens ADD COLUMN mfa INTEGER NOT NULL DEFAULT 0;
CREATE TABLE mfa_factors (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    org_id TEXT NOT NULL REFERENCES orgs(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    -- TOTP: the shared secret sealed with the organization key.
    sealed_secret BLOB,
    -- WebAuthn: the credential id (unique platform-wide) and the serialized passkey.
    cred_id TEXT UNIQUE,
    credential TEXT,
    confirmed INTEGER NOT NULL DEFAULT 0,
    -- TOTP replay protection: the last accepted time step.
    last_step INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX mfa_factors_user ON mfa_factors(user_id);
CREATE TABLE recovery_codes (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    code_digest TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX recovery_codes_user ON recovery_codes(user_id);
-- Between the password step and the second factor (or a step-up): a
-- short-lived, single-use challenge; only its digest is stored.
CREATE TABLE auth_challenges (
    id TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id),
    purpose TEXT NOT NULL,
    state TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX auth_challenges_user ON auth_challenges(user_id);
-- Consecutive failed sign-ins per email (known or not, so that throttling
-- does not reveal which accounts exist).
CREATE TABLE signin_failures (
    email_digest TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failed_at INTEGER NOT NULL
);
-- Accounts that exist before this migration may enrol a factor for a week.
UPDATE users SET mfa_enrol_until = (CAST(strftime('%s', 'now') AS INTEGER) + 7 * 86400) * 1000000;
