//! Server-side sessions and API tokens. Secrets are 256-bit random values
//! handed to the client once; only their SHA-256 digests are stored. Every
//! request resolves its credential here, and resolution re-checks that the
//! session or token, the user and the organization are all still active, so
//! a revocation or suspension takes effect on the very next request.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::org_policy::OrgPolicy;
use crate::time::{now_micros, MICROS_PER_SEC};
use kura_core::{Actor, Credential, OrgId, SessionId, TokenId, UserId};
use kura_crypto::{random_token, token_digest};
use serde::Serialize;
use sqlx::{Any, Transaction};

#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

pub struct NewSession {
    pub id: SessionId,
    pub token: String,
    pub csrf_token: String,
    pub absolute_expires_at: i64,
}

/// How the user proved who they are, as an OpenID Connect `amr` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amr {
    /// Password only (an organization that does not require MFA, and a user without factors).
    Password,
    /// Password and a TOTP code.
    PasswordOtp,
    /// Password and a WebAuthn passkey or security key.
    PasswordHwk,
    /// Password and a one-time recovery code.
    PasswordRecovery,
    /// Single sign-on where the identity provider asserted MFA.
    FederatedMfa,
    /// Single sign-on without an MFA assertion.
    Federated,
}

impl Amr {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::PasswordOtp => "pwd otp",
            Self::PasswordHwk => "pwd hwk",
            Self::PasswordRecovery => "pwd rec",
            Self::FederatedMfa => "fed mfa",
            Self::Federated => "fed",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "pwd otp" => Self::PasswordOtp,
            "pwd hwk" => Self::PasswordHwk,
            "pwd rec" => Self::PasswordRecovery,
            "fed mfa" => Self::FederatedMfa,
            "fed" => Self::Federated,
            _ => Self::Password,
        }
    }

    pub fn is_mfa(self) -> bool {
        !matches!(self, Self::Password | Self::Federated)
    }
}

/// Create a session for `user` (the caller verified every factor). The
/// caller revokes any session the client presented before (no fixation).
pub async fn create(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    policy: SessionPolicy,
    amr: Amr,
) -> Result<NewSession> {
    let id = SessionId::new();
    let token = random_token("kses");
    let csrf = kura_crypto::secrets::csrf_for(&token);
    let now = now_micros();
    let abs = now + policy.absolute_secs * MICROS_PER_SEC;
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO sessions (id, token_digest, csrf_digest, user_id, org_id, created_at, last_seen_at, absolute_expires_at, ip, user_agent, mfa_at, amr) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11)")
        .bind(id.to_string())
        .bind(token_digest(&token))
        .bind(token_digest(&csrf))
        .bind(user.to_string())
        .bind(org.to_string())
        .bind(now)
        .bind(abs)
        .bind(ctx.ip.clone().unwrap_or_default())
        .bind(ctx.user_agent.clone().unwrap_or_default().chars().take(512).collect::<String>())
        .bind(amr.is_mfa().then_some(now))
        .bind(amr.as_str())
        .execute(&mut *tx)
        .await?;
    let mut ctx = ctx.clone();
    ctx.credential = Some(format!("session:{id}"));
    audit::append(
        &mut tx,
        &ctx,
        &AuditEvent::new("auth.login", Outcome::Success)
            .org(org)
            .detail(serde_json::json!({"amr": amr.as_str()})),
    )
    .await?;
    tx.commit().await?;
    Ok(NewSession {
        id,
        token,
        csrf_token: csrf,
        absolute_expires_at: abs,
    })
}

/// A resolved, currently valid credential.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub actor: Actor,
    /// Digest of the session's CSRF token (sessions only).
    pub csrf_digest: Option<String>,
    /// The home organization's policy, read with the credential.
    pub policy: std::sync::Arc<OrgPolicy>,
    /// The platform's kill-switch state, read with the credential.
    pub platform_mode: crate::platform::Mode,
}

/// Why a credential did not resolve; all answer 401 to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Unknown,
    Expired,
    Revoked,
    AccountDisabled,
    AccountLocked,
    OrgSuspended,
    /// The platform is suspended (kill switch).
    PlatformSuspended,
    /// The client's address is outside the organization's allowed networks.
    NetworkNotAllowed,
}

/// The columns every credential check reads about the account, its
/// organization and the organization's policy.
const ACCOUNT_COLS: &str =
    "u.org_id, u.disabled, u.locked_at, u.locked_by_failures, u.org_admin, u.platform_admin, o.suspended, p.policy, \
     (SELECT value FROM settings WHERE key = 'platform_mode') AS platform_mode";
const ACCOUNT_JOIN: &str = "JOIN users u ON u.id = c.user_id JOIN orgs o ON o.id = u.org_id LEFT JOIN org_policies p ON p.org_id = u.org_id";

/// What sessions and tokens both re-check on every request: the account is
/// enabled and unlocked, its organization not suspended, and the client's
/// address inside the organization's allowed networks.
fn active_actor(
    r: &impl RowExt,
    credential: Credential,
    policy: &OrgPolicy,
    ip: &str,
    mfa: bool,
    stepped_up: bool,
    contained: bool,
) -> Result<Result<Actor, Rejected>> {
    if r.flag("disabled")? {
        return Ok(Err(Rejected::AccountDisabled));
    }
    if r.opt_int("locked_at")?.is_some() && !r.flag("locked_by_failures")? {
        return Ok(Err(Rejected::AccountLocked));
    }
    if r.flag("suspended")? {
        return Ok(Err(Rejected::OrgSuspended));
    }
    if !policy.allows_ip(ip) {
        return Ok(Err(Rejected::NetworkNotAllowed));
    }
    // A suspended platform admits only its break-glass administrators (the
    // caller also requires a loopback client for them).
    if crate::platform::Mode::parse(r.opt_str("platform_mode")?.as_deref())
        == crate::platform::Mode::Suspended
        && !r.flag("platform_admin")?
    {
        return Ok(Err(Rejected::PlatformSuspended));
    }
    Ok(Ok(Actor {
        user_id: r.id("user_id")?,
        org_id: r.id("org_id")?,
        org_admin: r.flag("org_admin")?,
        platform_admin: r.flag("platform_admin")?,
        credential,
        mfa,
        stepped_up,
        contained,
    }))
}

impl SessionPolicy {
    /// The platform's timeouts, shortened by the organization's own.
    pub fn for_org(self, p: &OrgPolicy) -> Self {
        Self {
            idle_secs: p
                .session_idle_minutes
                .map_or(self.idle_secs, |m| self.idle_secs.min(i64::from(m) * 60)),
            absolute_secs: p.session_absolute_hours.map_or(self.absolute_secs, |h| {
                self.absolute_secs.min(i64::from(h) * 3600)
            }),
        }
    }
}

pub async fn resolve_session(
    db: &Db,
    token: &str,
    policy: SessionPolicy,
    ip: &str,
) -> Result<Result<Resolved, Rejected>> {
    let sql = format!(
        "SELECT c.id, c.user_id, c.csrf_digest, c.created_at, c.last_seen_at, c.absolute_expires_at, c.revoked_at, c.mfa_at, c.amr, c.contained_at, \
         {ACCOUNT_COLS} FROM sessions c {ACCOUNT_JOIN} WHERE c.token_digest = $1"
    );
    let row = db
        .fetch_point(&sql, vec![token_digest(token).into()])
        .await?;
    let Some(r) = row else {
        return Ok(Err(Rejected::Unknown));
    };
    let now = now_micros();
    if r.opt_int("revoked_at")?.is_some() {
        return Ok(Err(Rejected::Revoked));
    }
    let org_policy = OrgPolicy::from_stored(r.opt_str("policy")?.as_deref());
    let policy = policy.for_org(&org_policy);
    let last_seen = r.int("last_seen_at")?;
    if now >= r.int("absolute_expires_at")?
        || now >= r.int("created_at")? + policy.absolute_secs * MICROS_PER_SEC
        || now - last_seen >= policy.idle_secs * MICROS_PER_SEC
    {
        return Ok(Err(Rejected::Expired));
    }
    let id: SessionId = r.id("id")?;
    let mfa_at = r.opt_int("mfa_at")?;
    let fresh = mfa_at
        .is_some_and(|t| now - t < i64::from(org_policy.step_up_minutes) * 60 * MICROS_PER_SEC);
    let actor = match active_actor(
        &r,
        Credential::Session(id),
        &org_policy,
        ip,
        // The session holds a second factor only if one was presented; a
        // password re-entry (step-up without factors) renews freshness only.
        Amr::parse(&r.str("amr")?).is_mfa(),
        fresh,
        r.opt_int("contained_at")?.is_some(),
    )? {
        Ok(a) => a,
        Err(rej) => return Ok(Err(rej)),
    };
    // Sliding idle window; written at most once a minute to spare the writer.
    if now - last_seen > 60 * MICROS_PER_SEC {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_string())
            .execute(&db.write)
            .await?;
    }
    Ok(Ok(Resolved {
        actor,
        csrf_digest: Some(r.str("csrf_digest")?),
        policy: std::sync::Arc::new(org_policy),
        platform_mode: crate::platform::Mode::parse(r.opt_str("platform_mode")?.as_deref()),
    }))
}

pub async fn revoke(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    id: SessionId,
) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let n = sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
    )
    .bind(now_micros())
    .bind(id.to_string())
    .bind(user.to_string())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let ev = AuditEvent::new("auth.session_revoke", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"session_id": id}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

/// Step-up: a fresh second factor renews the session's secret (the old
/// cookie stops working) and marks the factor time.
pub async fn rotate_after_step_up(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    id: SessionId,
    method: &str,
) -> Result<(String, String)> {
    let token = random_token("kses");
    let csrf = kura_crypto::secrets::csrf_for(&token);
    let mut tx = db.write.begin().await?;
    // A factor presented now upgrades a password-only session; a password
    // re-entry keeps its amr (fresh, but still one factor).
    let upgraded = match method {
        "totp" => Some(Amr::PasswordOtp),
        "webauthn" => Some(Amr::PasswordHwk),
        "recovery" => Some(Amr::PasswordRecovery),
        _ => None,
    };
    let n = sqlx::query("UPDATE sessions SET token_digest = $1, csrf_digest = $2, mfa_at = $3, amr = COALESCE($6, amr) WHERE id = $4 AND user_id = $5 AND revoked_at IS NULL")
        .bind(token_digest(&token))
        .bind(token_digest(&csrf))
        .bind(now_micros())
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(upgraded.map(Amr::as_str))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let ev = AuditEvent::new("auth.step_up", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"method": method, "session_id": id}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok((token, csrf))
}

/// End every session (and, with `tokens`, every API token) of a user: an
/// admin cutting off an account. Returns how many credentials ended.
pub async fn revoke_user(
    db: &Db,
    ctx: &AuditCtx,
    org: OrgId,
    user: UserId,
    tokens: bool,
) -> Result<u64> {
    revoke_where(
        db,
        ctx,
        org,
        "user_id",
        &user.to_string(),
        tokens,
        serde_json::json!({"user_id": user}),
    )
    .await
}

/// End every session (and, with `tokens`, every API token) of an organization.
pub async fn revoke_org(db: &Db, ctx: &AuditCtx, org: OrgId, tokens: bool) -> Result<u64> {
    revoke_where(
        db,
        ctx,
        org,
        "org_id",
        &org.to_string(),
        tokens,
        serde_json::json!({"org_id": org}),
    )
    .await
}

async fn revoke_where(
    db: &Db,
    ctx: &AuditCtx,
    org: OrgId,
    column: &'static str,
    value: &str,
    tokens: bool,
    scope: serde_json::Value,
) -> Result<u64> {
    let now = now_micros();
    let mut tx = db.write.begin().await?;
    // `column` is one of two constants above, never user input.
    let mut n = sqlx::query(&format!("UPDATE sessions SET revoked_at = $1 WHERE {column} = $2 AND org_id = $3 AND revoked_at IS NULL"))
        .bind(now)
        .bind(value)
        .bind(org.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if tokens {
        n += sqlx::query(&format!("UPDATE api_tokens SET revoked_at = $1 WHERE {column} = $2 AND org_id = $3 AND revoked_at IS NULL"))
            .bind(now)
            .bind(value)
            .bind(org.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    let ev = AuditEvent::new("auth.revoke_all", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"scope": scope, "tokens": tokens, "revoked": n}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(n)
}

/// End the session a client presents (on a new sign-in: no fixation).
pub async fn revoke_by_token(db: &Db, token: &str) -> Result<()> {
    if token.len() > 200 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE token_digest = $2 AND revoked_at IS NULL",
    )
    .bind(now_micros())
    .bind(token_digest(token))
    .execute(&db.write)
    .await?;
    Ok(())
}

pub async fn revoke_all_for_user_tx(tx: &mut Transaction<'_, Any>, user: UserId) -> Result<()> {
    let now = now_micros();
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Changing a secret revokes what it protected: sessions and API tokens.
pub async fn revoke_all_credentials_tx(tx: &mut Transaction<'_, Any>, user: UserId) -> Result<()> {
    revoke_all_for_user_tx(tx, user).await?;
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now_micros())
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub last_seen_at: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub expires_at: i64,
    pub ip: String,
    pub user_agent: String,
    /// How the session was opened (pwd, pwd otp, pwd hwk, …).
    pub amr: String,
}

pub async fn list_for_user(db: &Db, user: UserId, idle_secs: i64) -> Result<Vec<SessionInfo>> {
    let rows = sqlx::query("SELECT id, created_at, last_seen_at, absolute_expires_at, ip, user_agent, amr FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND absolute_expires_at > $2 AND last_seen_at > $3 ORDER BY created_at DESC")
        .bind(user.to_string())
        .bind(now_micros())
        .bind(now_micros() - idle_secs * MICROS_PER_SEC)
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SessionInfo {
                id: r.id("id")?,
                created_at: r.int("created_at")?,
                last_seen_at: r.int("last_seen_at")?,
                expires_at: r.int("absolute_expires_at")?,
                ip: r.str("ip")?,
                user_agent: r.str("user_agent")?,
                amr: r.str("amr")?,
            })
        })
        .collect()
}

// ---- API tokens ----

#[derive(Debug, Serialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub name: String,
    pub read_only: bool,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub expires_at: i64,
    #[serde(serialize_with = "crate::time::serialize_opt_rfc3339")]
    pub last_used_at: Option<i64>,
}

pub async fn create_token(
    db: &Db,
    ctx: &AuditCtx,
    actor: &Actor,
    name: &str,
    read_only: bool,
    ttl_days: i64,
) -> Result<(TokenInfo, String)> {
    let name = crate::orgs::validate_display("name", name, 100)?;
    if !(1..=366).contains(&ttl_days) {
        return Err(StoreError::Invalid(
            "expires_in_days must be between 1 and 366".into(),
        ));
    }
    let id = TokenId::new();
    let secret = random_token("kura");
    let now = now_micros();
    let exp = now + ttl_days * 86_400 * MICROS_PER_SEC;
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO api_tokens (id, token_digest, user_id, org_id, name, read_only, created_at, expires_at, mfa) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(id.to_string())
        .bind(token_digest(&secret))
        .bind(actor.user_id.to_string())
        .bind(actor.org_id.to_string())
        .bind(&name)
        .bind(i64::from(read_only))
        .bind(now)
        .bind(exp)
        .bind(i64::from(actor.mfa))
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("auth.token_create", Outcome::Success)
        .org(actor.org_id)
        .name(name.clone())
        .detail(serde_json::json!({"token_id": id, "read_only": read_only, "expires_at": exp}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok((
        TokenInfo {
            id,
            name,
            read_only,
            created_at: now,
            expires_at: exp,
            last_used_at: None,
        },
        secret,
    ))
}

pub async fn list_tokens(db: &Db, user: UserId) -> Result<Vec<TokenInfo>> {
    let rows = sqlx::query("SELECT id, name, read_only, created_at, expires_at, last_used_at FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC")
        .bind(user.to_string())
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenInfo {
                id: r.id("id")?,
                name: r.str("name")?,
                read_only: r.flag("read_only")?,
                created_at: r.int("created_at")?,
                expires_at: r.int("expires_at")?,
                last_used_at: r.opt_int("last_used_at")?,
            })
        })
        .collect()
}

pub async fn revoke_token(db: &Db, ctx: &AuditCtx, actor: &Actor, id: TokenId) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let n = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
        .bind(now_micros())
        .bind(id.to_string())
        .bind(actor.user_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let ev = AuditEvent::new("auth.token_revoke", Outcome::Success)
        .org(actor.org_id)
        .detail(serde_json::json!({"token_id": id}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn resolve_token(db: &Db, secret: &str, ip: &str) -> Result<Result<Resolved, Rejected>> {
    let sql = format!(
        "SELECT c.id, c.user_id, c.read_only, c.expires_at, c.revoked_at, c.last_used_at, c.mfa, \
         {ACCOUNT_COLS} FROM api_tokens c {ACCOUNT_JOIN} WHERE c.token_digest = $1"
    );
    let row = db
        .fetch_point(&sql, vec![token_digest(secret).into()])
        .await?;
    let Some(r) = row else {
        return Ok(Err(Rejected::Unknown));
    };
    let now = now_micros();
    if r.opt_int("revoked_at")?.is_some() {
        return Ok(Err(Rejected::Revoked));
    }
    if now >= r.int("expires_at")? {
        return Ok(Err(Rejected::Expired));
    }
    let id: TokenId = r.id("id")?;
    let org_policy = OrgPolicy::from_stored(r.opt_str("policy")?.as_deref());
    // A token was created under a fresh second factor; it stands for it.
    let mfa = r.flag("mfa")?;
    let actor = match active_actor(
        &r,
        Credential::Token {
            id,
            read_only: r.flag("read_only")?,
        },
        &org_policy,
        ip,
        mfa,
        mfa,
        false,
    )? {
        Ok(a) => a,
        Err(rej) => return Ok(Err(rej)),
    };
    if r.opt_int("last_used_at")?
        .is_none_or(|t| now - t > 60 * MICROS_PER_SEC)
    {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_string())
            .execute(&db.write)
            .await?;
    }
    Ok(Ok(Resolved {
        actor,
        csrf_digest: None,
        policy: std::sync::Arc::new(org_policy),
        platform_mode: crate::platform::Mode::parse(r.opt_str("platform_mode")?.as_deref()),
    }))
}

/// Whether a sign-in from this address and device is new for a user who
/// has signed in before (no earlier session with both), for the "new
/// sign-in" email. The very first sign-in is not news.
pub async fn is_new_device(
    db: &Db,
    user: UserId,
    ip: &str,
    user_agent: &str,
    except: SessionId,
) -> Result<bool> {
    let row = sqlx::query("SELECT COUNT(*) AS earlier, COALESCE(SUM(CASE WHEN ip = $2 AND user_agent = $3 THEN 1 ELSE 0 END), 0) AS same FROM sessions WHERE user_id = $1 AND id <> $4")
        .bind(user.to_string())
        .bind(ip)
        .bind(user_agent.chars().take(512).collect::<String>())
        .bind(except.to_string())
        .fetch_one(&db.write)
        .await?;
    Ok(row.int("earlier")? > 0 && row.int("same")? == 0)
}
