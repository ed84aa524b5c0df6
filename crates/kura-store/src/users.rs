//! User accounts. Each user has one home organization; organization admins
//! (and platform admins, for account administration only) manage them.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::orgs::validate_display;
use crate::time::now_micros;
use kura_core::{OrgAction, OrgGrant, OrgId, UserId};
use serde::Serialize;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub org_id: OrgId,
    pub email: String,
    pub display_name: String,
    pub org_admin: bool,
    pub platform_admin: bool,
    pub disabled: bool,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    /// Preferred interface language ("en", "ja"); none: follow the browser.
    pub locale: Option<String>,
    /// IANA time zone for showing times; none: UTC.
    pub time_zone: Option<String>,
    /// Locked after failed sign-ins or by an admin; only an admin unlocks.
    pub locked: bool,
    /// Until then a user without a second factor may enrol one after the password step.
    #[serde(serialize_with = "crate::time::serialize_opt_rfc3339")]
    pub mfa_enrol_until: Option<i64>,
    /// Kill switch: the current password opens nothing until it is reset
    /// through the emailed link.
    pub must_reset_password: bool,
}

const COLS: &str = "id, org_id, email, display_name, org_admin, platform_admin, disabled, created_at, locale, time_zone, locked_at, mfa_enrol_until, must_reset_password";

/// How long a new account (or one whose factors an admin reset) may enrol
/// its first second factor right after the password step.
pub const ENROL_WINDOW_SECS: i64 = 7 * 86_400;

fn from_row(r: &AnyRow) -> Result<User> {
    Ok(User {
        id: r.id("id")?,
        org_id: r.id("org_id")?,
        email: r.str("email")?,
        display_name: r.str("display_name")?,
        org_admin: r.flag("org_admin")?,
        platform_admin: r.flag("platform_admin")?,
        disabled: r.flag("disabled")?,
        created_at: r.int("created_at")?,
        locale: r.opt_str("locale")?,
        time_zone: r.opt_str("time_zone")?,
        locked: r.opt_int("locked_at")?.is_some(),
        mfa_enrol_until: r.opt_int("mfa_enrol_until")?,
        must_reset_password: r.flag("must_reset_password")?,
    })
}

/// Emails are compared case-insensitively: stored lower-cased and trimmed.
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(StoreError::Invalid(
            "email must look like name@example.org (at most 254 characters)".into(),
        ))
    }
}

/// NIST SP 800-63B: a minimum length (15 where the password is the only
/// factor, 8 otherwise), at least 64 allowed (here 1024 bytes), no
/// composition rules, and no value from the shipped list of common and
/// breached passwords (nor trivial ones derived from the email).
pub fn check_password_policy(password: &str, email: &str, password_only: bool) -> Result<()> {
    let n = password.chars().count();
    let min = if password_only { 15 } else { 8 };
    if n < min {
        return Err(StoreError::Invalid(if password_only {
            "password must have at least 15 characters (it is your only sign-in factor; with a second factor, 8 are enough)".into()
        } else {
            "password must have at least 8 characters".into()
        }));
    }
    if password.len() > 1024 {
        return Err(StoreError::Invalid(
            "password must be at most 1024 bytes".into(),
        ));
    }
    let lower = password.to_lowercase();
    let local = email.trim().to_lowercase();
    let local = local.split('@').next().unwrap_or("");
    if kura_crypto::passwords::is_common(password)
        || (local.len() >= 4 && lower.contains(local))
        || lower.contains("kura")
    {
        return Err(StoreError::Invalid(
            "this password is too common or too easy to guess (it appears in lists of breached passwords or contains your name or the service's); choose another".into(),
        ));
    }
    Ok(())
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    /// Argon2id PHC string, computed by the caller on a blocking pool.
    pub password_hash: &'a str,
    pub org_admin: bool,
    pub platform_admin: bool,
}

fn require(g: &OrgGrant, a: OrgAction) -> Result<()> {
    if g.action() == a {
        Ok(())
    } else {
        Err(StoreError::Denied(kura_core::Denied::Forbidden))
    }
}

pub async fn create(db: &Db, g: &OrgGrant, ctx: &AuditCtx, n: NewUser<'_>) -> Result<User> {
    require(g, OrgAction::ManageUsers)?;
    insert(db, g.org_id(), ctx, n).await
}

/// Insert without an organization grant: bootstrap and the local CLI only.
pub async fn insert(db: &Db, org: OrgId, ctx: &AuditCtx, n: NewUser<'_>) -> Result<User> {
    let email = normalize_email(n.email)?;
    let name = validate_display("display_name", n.display_name, 200)?;
    let id = UserId::new();
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO users (id, org_id, email, display_name, password_hash, org_admin, platform_admin, disabled, created_at, password_changed_at, mfa_enrol_until) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $9)")
        .bind(id.to_string())
        .bind(org.to_string())
        .bind(&email)
        .bind(&name)
        // No password (single sign-on accounts): password sign-in never matches.
        .bind((!n.password_hash.is_empty()).then_some(n.password_hash))
        .bind(i64::from(n.org_admin))
        .bind(i64::from(n.platform_admin))
        .bind(now_micros())
        .bind(now_micros() + ENROL_WINDOW_SECS * crate::time::MICROS_PER_SEC)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_on_unique("a user with this email already exists"))?;
    let ev = AuditEvent::new("user.create", Outcome::Success)
        .org(org)
        .name(email)
        .detail(serde_json::json!({"user_id": id, "org_admin": n.org_admin, "platform_admin": n.platform_admin}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    get_any(db, id).await
}

pub async fn get_any(db: &Db, id: UserId) -> Result<User> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM users WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&db.read)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

/// A user of the grant's organization (others are invisible: NotFound).
pub async fn get_in_org(db: &Db, g: &OrgGrant, id: UserId) -> Result<User> {
    let u = get_any(db, id).await?;
    if u.org_id != g.org_id() {
        return Err(StoreError::NotFound);
    }
    Ok(u)
}

pub async fn by_email(db: &Db, email: &str) -> Result<Option<(User, Option<String>)>> {
    let Ok(email) = normalize_email(email) else {
        return Ok(None);
    };
    let row = sqlx::query(&format!(
        "SELECT {COLS}, password_hash FROM users WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(&db.read)
    .await?;
    match row {
        Some(r) => Ok(Some((from_row(&r)?, r.opt_str("password_hash")?))),
        None => Ok(None),
    }
}

pub async fn list(db: &Db, g: &OrgGrant) -> Result<Vec<User>> {
    require(g, OrgAction::ManageUsers)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM users WHERE org_id = $1 ORDER BY email"
    ))
    .bind(g.org_id().to_string())
    .fetch_all(&db.read)
    .await?;
    rows.iter().map(from_row).collect()
}

pub struct UserChanges {
    pub display_name: Option<String>,
    pub org_admin: Option<bool>,
    pub disabled: Option<bool>,
}

pub async fn update(
    db: &Db,
    g: &OrgGrant,
    ctx: &AuditCtx,
    id: UserId,
    c: UserChanges,
) -> Result<User> {
    require(g, OrgAction::ManageUsers)?;
    get_in_org(db, g, id).await?;
    let mut tx = db.write.begin().await?;
    if let Some(n) = &c.display_name {
        let n = validate_display("display_name", n, 200)?;
        sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
            .bind(n)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    if let Some(a) = c.org_admin {
        sqlx::query("UPDATE users SET org_admin = $1 WHERE id = $2")
            .bind(i64::from(a))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    if let Some(d) = c.disabled {
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(d))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    if c.org_admin == Some(true) {
        reopen_passkey_enrolment_tx(&mut tx, id).await?;
    }
    if c.disabled == Some(true) {
        // A disabled account loses every session and token for good.
        crate::sessions::revoke_all_credentials_tx(&mut tx, id).await?;
    } else if c.org_admin.is_some() {
        // A privilege change ends sessions (no session outlives its privileges).
        crate::sessions::revoke_all_for_user_tx(&mut tx, id).await?;
    }
    let detail = serde_json::json!({"user_id": id, "display_name": c.display_name, "org_admin": c.org_admin, "disabled": c.disabled});
    audit::append(
        &mut tx,
        ctx,
        &AuditEvent::new("user.update", Outcome::Success)
            .org(g.org_id())
            .detail(detail),
    )
    .await?;
    tx.commit().await?;
    get_any(db, id).await
}

/// Set a new password hash and end every session of the user.
pub async fn set_password_hash(
    db: &Db,
    org: OrgId,
    ctx: &AuditCtx,
    id: UserId,
    hash: &str,
    action: &'static str,
) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let n = sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2, must_reset_password = 0 WHERE id = $3 AND org_id = $4")
        .bind(hash)
        .bind(now_micros())
        .bind(id.to_string())
        .bind(org.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    crate::sessions::revoke_all_credentials_tx(&mut tx, id).await?;
    audit::append(
        &mut tx,
        ctx,
        &AuditEvent::new(action, Outcome::Success)
            .org(org)
            .detail(serde_json::json!({"user_id": id})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn reset_password(
    db: &Db,
    g: &OrgGrant,
    ctx: &AuditCtx,
    id: UserId,
    hash: &str,
) -> Result<()> {
    require(g, OrgAction::ManageUsers)?;
    set_password_hash(db, g.org_id(), ctx, id, hash, "user.password_reset").await
}

/// A new administrator without a passkey may register one at the next
/// sign-in (admins need WebAuthn by default): the promotion reopens the
/// enrolment window, as a new account's creation does.
async fn reopen_passkey_enrolment_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: UserId,
) -> Result<()> {
    // Only for an account with no factor at all: one that has a factor
    // must keep proving it (an admin resets factors to re-enrol).
    sqlx::query("UPDATE users SET mfa_enrol_until = $1 WHERE id = $2 AND NOT EXISTS (SELECT 1 FROM mfa_factors WHERE user_id = $2 AND confirmed = 1)")
        .bind(now_micros() + ENROL_WINDOW_SECS * crate::time::MICROS_PER_SEC)
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Kill switch: force a password reset and second-factor re-enrolment for
/// one user or, with `None`, every user of the organization. Their sessions
/// and tokens end, their factors are removed, and the current password
/// opens nothing until it is replaced through the emailed reset link.
pub async fn force_reset(
    db: &Db,
    g: &OrgGrant,
    ctx: &AuditCtx,
    who: Option<UserId>,
) -> Result<u64> {
    require(g, OrgAction::ManageUsers)?;
    let ids: Vec<UserId> = match who {
        Some(id) => vec![get_in_org(db, g, id).await?.id],
        // The admin who throws the switch keeps their account, so that
        // someone can still act; the CLI (no actor) resets everyone.
        None => list(db, g)
            .await?
            .into_iter()
            .map(|u| u.id)
            .filter(|id| Some(*id) != ctx.actor_user_id)
            .collect(),
    };
    let until = now_micros() + ENROL_WINDOW_SECS * crate::time::MICROS_PER_SEC;
    let mut tx = db.write.begin().await?;
    for id in &ids {
        sqlx::query("UPDATE users SET must_reset_password = 1 WHERE id = $1 AND org_id = $2")
            .bind(id.to_string())
            .bind(g.org_id().to_string())
            .execute(&mut *tx)
            .await?;
        crate::mfa::reset_tx(&mut tx, *id, until).await?;
        crate::sessions::revoke_all_credentials_tx(&mut tx, *id).await?;
    }
    audit::append(
        &mut tx,
        ctx,
        &AuditEvent::new("user.force_reset", Outcome::Success)
            .org(g.org_id())
            .detail(
                serde_json::json!({"user_id": who, "whole_org": who.is_none(), "users": ids.len()}),
            ),
    )
    .await?;
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// Remove a user's factors and recovery codes, reopen enrolment for the
/// enrolment window, and end their sessions and tokens (admin action).
pub async fn reset_mfa(db: &Db, g: &OrgGrant, ctx: &AuditCtx, id: UserId) -> Result<()> {
    require(g, OrgAction::ManageUsers)?;
    get_in_org(db, g, id).await?;
    let mut tx = db.write.begin().await?;
    crate::mfa::reset_tx(
        &mut tx,
        id,
        now_micros() + ENROL_WINDOW_SECS * crate::time::MICROS_PER_SEC,
    )
    .await?;
    crate::sessions::revoke_all_credentials_tx(&mut tx, id).await?;
    audit::append(
        &mut tx,
        ctx,
        &AuditEvent::new("mfa.reset", Outcome::Success)
            .org(g.org_id())
            .detail(serde_json::json!({"user_id": id})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn count_platform_admins(db: &Db) -> Result<i64> {
    let r = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE platform_admin = 1")
        .fetch_one(&db.read)
        .await?;
    r.int("n")
}

/// All users, for the local CLI.
pub async fn list_all(db: &Db) -> Result<Vec<User>> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM users ORDER BY email"))
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(from_row).collect()
}

const BOOTSTRAP_KEY: &str = "bootstrap_token_digest";

/// The digest of the one-time bootstrap token, while no platform admin exists.
pub async fn bootstrap_digest(db: &Db) -> Result<Option<String>> {
    let r = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(BOOTSTRAP_KEY)
        .fetch_optional(&db.read)
        .await?;
    r.map(|r| r.str("value")).transpose()
}

pub async fn set_bootstrap_digest(db: &Db, digest: &str) -> Result<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query("DELETE FROM settings WHERE key = $1")
        .bind(BOOTSTRAP_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
        .bind(BOOTSTRAP_KEY)
        .bind(digest)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Create the platform operators' organization (once) and the first
/// platform administrator, and retire the bootstrap token, in one transaction.
pub async fn bootstrap_admin(
    db: &Db,
    keys: &crate::Keyring,
    ctx: &AuditCtx,
    email: &str,
    display_name: &str,
    hash: &str,
) -> Result<User> {
    let email = normalize_email(email)?;
    let name = validate_display("display_name", display_name, 200)?;
    let mut tx = db.write.begin().await?;
    let admins = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE platform_admin = 1")
        .fetch_one(&mut *tx)
        .await?;
    if admins.int("n")? > 0 {
        return Err(StoreError::Conflict(
            "a platform administrator already exists".into(),
        ));
    }
    let org = match sqlx::query("SELECT id FROM orgs WHERE is_platform = 1")
        .fetch_optional(&mut *tx)
        .await?
    {
        Some(r) => r.id("id")?,
        None => {
            let org = OrgId::new();
            let (_k, wrapped) = keys.new_org_key(org);
            sqlx::query("INSERT INTO orgs (id, name, slug, is_platform, suspended, quota_bytes, used_bytes, wrapped_key, master_key_id, created_at) VALUES ($1, 'Platform operators', 'platform', 1, 0, 0, 0, $2, $3, $4)")
                .bind(org.to_string())
                .bind(wrapped)
                .bind(keys.master_id())
                .bind(now_micros())
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::from(e).conflict_on_unique("the slug 'platform' is taken"))?;
            org
        }
    };
    let id = UserId::new();
    sqlx::query("INSERT INTO users (id, org_id, email, display_name, password_hash, org_admin, platform_admin, disabled, created_at, password_changed_at, mfa_enrol_until) VALUES ($1, $2, $3, $4, $5, 1, 1, 0, $6, $6, $7)")
        .bind(id.to_string())
        .bind(org.to_string())
        .bind(&email)
        .bind(&name)
        .bind(hash)
        .bind(now_micros())
        .bind(now_micros() + ENROL_WINDOW_SECS * crate::time::MICROS_PER_SEC)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_on_unique("a user with this email already exists"))?;
    sqlx::query("DELETE FROM settings WHERE key = $1")
        .bind(BOOTSTRAP_KEY)
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("platform.bootstrap", Outcome::Success)
        .org(org)
        .name(email)
        .detail(serde_json::json!({"user_id": id}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    get_any(db, id).await
}

/// Account roles set by the local operator CLI (`kura admin set-role`).
/// Project membership is deliberately not settable here: operators get no
/// standing access to project contents.
pub async fn set_account_roles(
    db: &Db,
    _g: &kura_core::PlatformGrant,
    ctx: &AuditCtx,
    id: UserId,
    org_admin: Option<bool>,
    platform_admin: Option<bool>,
    disabled: Option<bool>,
) -> Result<User> {
    let u = get_any(db, id).await?;
    let mut tx = db.write.begin().await?;
    for (col, v) in [
        ("org_admin", org_admin),
        ("platform_admin", platform_admin),
        ("disabled", disabled),
    ] {
        if let Some(v) = v {
            // `col` comes from the fixed list above, never from input.
            sqlx::query(&format!("UPDATE users SET {col} = $1 WHERE id = $2"))
                .bind(i64::from(v))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
    }
    if org_admin == Some(true) || platform_admin == Some(true) {
        reopen_passkey_enrolment_tx(&mut tx, id).await?;
    }
    if disabled == Some(true) {
        crate::sessions::revoke_all_credentials_tx(&mut tx, id).await?;
    } else {
        crate::sessions::revoke_all_for_user_tx(&mut tx, id).await?;
    }
    let detail = serde_json::json!({"user_id": id, "org_admin": org_admin, "platform_admin": platform_admin, "disabled": disabled});
    audit::append(
        &mut tx,
        ctx,
        &AuditEvent::new("user.set_role", Outcome::Success)
            .org(u.org_id)
            .detail(detail),
    )
    .await?;
    tx.commit().await?;
    get_any(db, id).await
}

/// The caller's own display preferences (validated by the caller).
pub async fn set_preferences(
    db: &Db,
    ctx: &AuditCtx,
    id: UserId,
    org: OrgId,
    locale: Option<&str>,
    time_zone: Option<&str>,
) -> Result<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE users SET locale = $1, time_zone = $2 WHERE id = $3")
        .bind(locale.map(str::to_string))
        .bind(time_zone.map(str::to_string))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("user.preferences", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"locale": locale, "time_zone": time_zone}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}
