//! Second factors: TOTP authenticator apps (RFC 6238), WebAuthn passkeys and
//! security keys (verified by the server layer with webauthn-rs; stored
//! here), and one-time recovery codes. TOTP secrets are sealed with the
//! organization key; recovery codes are stored as digests only.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::keyring::Keyring;
use crate::time::now_micros;
use kura_core::{FactorId, OrgId, UserId};
use rand::RngCore;
use serde::Serialize;
use totp_rs::{Algorithm, TOTP};

pub const RECOVERY_CODES: usize = 10;
const TOTP_STEP: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FactorKind {
    Totp,
    Webauthn,
}

impl FactorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Webauthn => "webauthn",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        match s {
            "totp" => Ok(Self::Totp),
            "webauthn" => Ok(Self::Webauthn),
            _ => Err(StoreError::Internal(format!("unknown factor kind {s}"))),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Factor {
    pub id: FactorId,
    pub kind: FactorKind,
    pub name: String,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::serialize_opt_rfc3339")]
    pub last_used_at: Option<i64>,
}

/// What a user can present as a second factor.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Enrolled {
    pub totp: usize,
    pub webauthn: usize,
    pub recovery_codes_left: usize,
}

impl Enrolled {
    pub fn any(&self) -> bool {
        self.totp + self.webauthn > 0
    }
}

fn factor_context(id: FactorId) -> Vec<u8> {
    format!("kura-totp:{id}").into_bytes()
}

fn totp_for(secret: Vec<u8>, account: &str) -> Result<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        TOTP_STEP,
        secret,
        Some("Kura".into()),
        account.to_string(),
    )
    .map_err(|e| StoreError::Internal(format!("totp: {e}")))
}

pub async fn enrolled(db: &Db, user: UserId) -> Result<Enrolled> {
    let row = sqlx::query(
        "SELECT \
         (SELECT COUNT(*) FROM mfa_factors WHERE user_id = $1 AND confirmed = 1 AND kind = 'totp') AS totp, \
         (SELECT COUNT(*) FROM mfa_factors WHERE user_id = $1 AND confirmed = 1 AND kind = 'webauthn') AS webauthn, \
         (SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL) AS recovery",
    )
    .bind(user.to_string())
    .fetch_one(&db.read)
    .await?;
    Ok(Enrolled {
        totp: usize::try_from(row.int("totp")?).unwrap_or(0),
        webauthn: usize::try_from(row.int("webauthn")?).unwrap_or(0),
        recovery_codes_left: usize::try_from(row.int("recovery")?).unwrap_or(0),
    })
}

pub async fn list(db: &Db, user: UserId) -> Result<Vec<Factor>> {
    let rows = sqlx::query("SELECT id, kind, name, created_at, last_used_at FROM mfa_factors WHERE user_id = $1 AND confirmed = 1 ORDER BY created_at")
        .bind(user.to_string())
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Factor {
                id: r.id("id")?,
                kind: FactorKind::parse(&r.str("kind")?)?,
                name: r.str("name")?,
                created_at: r.int("created_at")?,
                last_used_at: r.opt_int("last_used_at")?,
            })
        })
        .collect()
}

/// A TOTP enrolment waiting for its first code.
pub struct TotpEnrolment {
    pub factor_id: FactorId,
    pub secret_base32: String,
    pub otpauth_uri: String,
}

/// Start a TOTP enrolment: a new random 160-bit secret, stored sealed and
/// unconfirmed until the user proves their app computes the same codes.
pub async fn totp_begin(
    db: &Db,
    keys: &Keyring,
    user: UserId,
    org: OrgId,
    account: &str,
    name: &str,
) -> Result<TotpEnrolment> {
    let name = crate::orgs::validate_display("name", name, 100)?;
    let mut secret = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let totp = totp_for(secret.clone(), account)?;
    let id = FactorId::new();
    let sealed = keys
        .org_key(db, org)
        .await?
        .seal_secret(&secret, &factor_context(id));
    let mut tx = db.write.begin().await?;
    // One pending enrolment at a time.
    sqlx::query("DELETE FROM mfa_factors WHERE user_id = $1 AND confirmed = 0")
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO mfa_factors (id, user_id, org_id, kind, name, sealed_secret, confirmed, created_at) VALUES ($1, $2, $3, 'totp', $4, $5, 0, $6)")
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(org.to_string())
        .bind(&name)
        .bind(sealed)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(TotpEnrolment {
        factor_id: id,
        secret_base32: totp.get_secret_base32(),
        otpauth_uri: totp.get_url(),
    })
}

/// The enrolment still waiting for its first code, shown again after a
/// mistyped code (the user scanned this one).
pub async fn totp_pending(
    db: &Db,
    keys: &Keyring,
    user: UserId,
    account: &str,
) -> Result<Option<TotpEnrolment>> {
    let Some((id, org, sealed, _)) = totp_rows(db, user, false).await?.into_iter().next() else {
        return Ok(None);
    };
    let secret = keys
        .org_key(db, org)
        .await?
        .open_secret(&sealed, &factor_context(id))?;
    let totp = totp_for(secret.to_vec(), account)?;
    Ok(Some(TotpEnrolment {
        factor_id: id,
        secret_base32: totp.get_secret_base32(),
        otpauth_uri: totp.get_url(),
    }))
}

/// The time step `code` belongs to (now, or one step either side for clock
/// skew), compared in constant time.
fn matching_step(totp: &TOTP, code: &str, now_secs: u64) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut found = None;
    for t in [
        now_secs.saturating_sub(TOTP_STEP),
        now_secs,
        now_secs + TOTP_STEP,
    ] {
        let expected = totp.generate(t);
        if kura_crypto::secrets::secrets_equal(expected.as_bytes(), code.as_bytes()) {
            found = i64::try_from(t / TOTP_STEP).ok();
        }
    }
    found
}

async fn totp_rows(
    db: &Db,
    user: UserId,
    confirmed: bool,
) -> Result<Vec<(FactorId, OrgId, Vec<u8>, i64)>> {
    let rows = sqlx::query("SELECT id, org_id, sealed_secret, last_step FROM mfa_factors WHERE user_id = $1 AND kind = 'totp' AND confirmed = $2")
        .bind(user.to_string())
        .bind(i64::from(confirmed))
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.id("id")?,
                r.id("org_id")?,
                r.bytes("sealed_secret")?,
                r.int("last_step")?,
            ))
        })
        .collect()
}

/// Check a TOTP code against the user's factors. A code is accepted once:
/// its time step must be newer than the last one accepted for that factor,
/// and the update is conditional so two racing requests cannot both win.
pub async fn verify_totp(
    db: &Db,
    keys: &Keyring,
    user: UserId,
    code: &str,
    confirmed: bool,
) -> Result<Option<FactorId>> {
    let now = u64::try_from(now_micros() / 1_000_000).unwrap_or(0);
    for (id, org, sealed, last_step) in totp_rows(db, user, confirmed).await? {
        let secret = keys
            .org_key(db, org)
            .await?
            .open_secret(&sealed, &factor_context(id))?;
        let totp = totp_for(secret.to_vec(), "-")?;
        let Some(step) = matching_step(&totp, code, now) else {
            continue;
        };
        if step <= last_step {
            return Ok(None); // replayed
        }
        let n = sqlx::query("UPDATE mfa_factors SET last_step = $1, last_used_at = $2 WHERE id = $3 AND last_step < $1")
            .bind(step)
            .bind(now_micros())
            .bind(id.to_string())
            .execute(&db.write)
            .await?
            .rows_affected();
        return Ok((n == 1).then_some(id));
    }
    Ok(None)
}

/// Confirm a pending TOTP enrolment with a code from the app. Returns the
/// fresh recovery codes when the user had none left.
pub async fn totp_confirm(
    db: &Db,
    keys: &Keyring,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    factor: FactorId,
    code: &str,
) -> Result<Option<Vec<String>>> {
    let pending = totp_rows(db, user, false).await?;
    if !pending.iter().any(|(id, ..)| *id == factor) {
        return Err(StoreError::NotFound);
    }
    match verify_totp(db, keys, user, code, false).await? {
        Some(id) if id == factor => {}
        _ => {
            let ev = AuditEvent::new("mfa.enrol", Outcome::Failure)
                .org(org)
                .detail(serde_json::json!({"kind": "totp", "factor_id": factor}));
            audit::record_now(db, ctx, &ev).await?;
            return Err(StoreError::Invalid(
                "the code does not match: check the time on your device and enter the current code"
                    .into(),
            ));
        }
    }
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE mfa_factors SET confirmed = 1 WHERE id = $1 AND user_id = $2")
        .bind(factor.to_string())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("mfa.enrol", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"kind": "totp", "factor_id": factor}));
    audit::append(&mut tx, ctx, &ev).await?;
    close_enrolment_tx(&mut tx, user).await?;
    let codes = codes_if_none_tx(&mut tx, user).await?;
    tx.commit().await?;
    Ok(codes)
}

/// Store a verified WebAuthn credential (the server layer ran the ceremony).
#[allow(clippy::too_many_arguments)]
pub async fn add_webauthn(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    name: &str,
    cred_id: &str,
    credential_json: &str,
) -> Result<(FactorId, Option<Vec<String>>)> {
    let name = crate::orgs::validate_display("name", name, 100)?;
    let id = FactorId::new();
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO mfa_factors (id, user_id, org_id, kind, name, cred_id, credential, confirmed, created_at) VALUES ($1, $2, $3, 'webauthn', $4, $5, $6, 1, $7)")
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(org.to_string())
        .bind(&name)
        .bind(cred_id)
        .bind(credential_json)
        .bind(now_micros())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_on_unique("this security key is already registered"))?;
    let ev = AuditEvent::new("mfa.enrol", Outcome::Success)
        .org(org)
        .name(name)
        .detail(serde_json::json!({"kind": "webauthn", "factor_id": id}));
    audit::append(&mut tx, ctx, &ev).await?;
    close_enrolment_tx(&mut tx, user).await?;
    let codes = codes_if_none_tx(&mut tx, user).await?;
    tx.commit().await?;
    Ok((id, codes))
}

/// The user's WebAuthn credentials as stored (serialized passkeys).
pub async fn webauthn_credentials(db: &Db, user: UserId) -> Result<Vec<(FactorId, String)>> {
    let rows = sqlx::query("SELECT id, credential FROM mfa_factors WHERE user_id = $1 AND kind = 'webauthn' AND confirmed = 1")
        .bind(user.to_string())
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| Ok((r.id("id")?, r.str("credential")?)))
        .collect()
}

/// Record a successful WebAuthn use (and the credential's new counter).
pub async fn webauthn_used(db: &Db, id: FactorId, credential_json: Option<&str>) -> Result<()> {
    match credential_json {
        Some(c) => {
            sqlx::query("UPDATE mfa_factors SET credential = $1, last_used_at = $2 WHERE id = $3")
                .bind(c)
                .bind(now_micros())
                .bind(id.to_string())
        }
        None => sqlx::query("UPDATE mfa_factors SET last_used_at = $2 WHERE id = $3 AND $1 = $1")
            .bind("")
            .bind(now_micros())
            .bind(id.to_string()),
    }
    .execute(&db.write)
    .await?;
    Ok(())
}

pub async fn rename(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    id: FactorId,
    name: &str,
) -> Result<()> {
    let name = crate::orgs::validate_display("name", name, 100)?;
    let mut tx = db.write.begin().await?;
    let n = sqlx::query(
        "UPDATE mfa_factors SET name = $1 WHERE id = $2 AND user_id = $3 AND confirmed = 1",
    )
    .bind(&name)
    .bind(id.to_string())
    .bind(user.to_string())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let ev = AuditEvent::new("mfa.rename", Outcome::Success)
        .org(org)
        .name(name)
        .detail(serde_json::json!({"factor_id": id}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

/// Which factors must remain after a removal.
#[derive(Debug, Clone, Copy)]
pub struct KeepRule {
    /// MFA is required: the last factor may not go.
    pub one_factor: bool,
    /// WebAuthn is required (an administrator): the last passkey may not go.
    pub one_webauthn: bool,
}

/// Remove a factor, unless the policy needs it. Checked inside the
/// transaction so two concurrent removals cannot take away both factors.
pub async fn remove(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    id: FactorId,
    keep: KeepRule,
) -> Result<()> {
    let mut tx = db.write.begin().await?;
    // Take the user's row lock first (PostgreSQL): two removals of the same
    // user's factors then run one after the other, never both at count 2.
    sqlx::query("UPDATE users SET mfa_enrol_until = mfa_enrol_until WHERE id = $1")
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(
        "SELECT kind FROM mfa_factors WHERE id = $1 AND user_id = $2 AND confirmed = 1",
    )
    .bind(id.to_string())
    .bind(user.to_string())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound)?;
    let kind = FactorKind::parse(&row.str("kind")?)?;
    let counts = sqlx::query("SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN kind = 'webauthn' THEN 1 ELSE 0 END), 0) AS w FROM mfa_factors WHERE user_id = $1 AND confirmed = 1")
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await?;
    let (n, w) = (counts.int("n")?, counts.int("w")?);
    if keep.one_factor && n <= 1 {
        return Err(StoreError::Conflict(
            "your organization requires a second factor: add another one before removing this one"
                .into(),
        ));
    }
    if keep.one_webauthn && kind == FactorKind::Webauthn && w <= 1 {
        return Err(StoreError::Conflict(
            "administrators must keep a passkey or security key: add another one before removing this one".into(),
        ));
    }
    sqlx::query("DELETE FROM mfa_factors WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    if n <= 1 {
        // No factor left: recovery codes would be a second factor for nothing.
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
    }
    let ev = AuditEvent::new("mfa.remove", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"factor_id": id, "kind": kind.as_str()}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

/// Remove every factor and recovery code of a user and reopen enrolment
/// (an admin's "force MFA re-enrolment"); the caller revokes sessions.
pub async fn reset_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: UserId,
    enrol_until: i64,
) -> Result<()> {
    for sql in [
        "DELETE FROM mfa_factors WHERE user_id = $1",
        "DELETE FROM recovery_codes WHERE user_id = $1",
        "DELETE FROM auth_challenges WHERE user_id = $1",
    ] {
        sqlx::query(sql)
            .bind(user.to_string())
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE users SET mfa_enrol_until = $1 WHERE id = $2")
        .bind(enrol_until)
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// With a factor enrolled, the password-only enrolment window closes.
async fn close_enrolment_tx(tx: &mut sqlx::Transaction<'_, sqlx::Any>, user: UserId) -> Result<()> {
    sqlx::query("UPDATE users SET mfa_enrol_until = NULL WHERE id = $1")
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// ---- recovery codes ----

/// A code of 10 characters from a 32-letter alphabet without look-alikes
/// (no i, l, o, 1; 50 bits; 32 divides 256, so no bias), shown as xxxxx-xxxxx.
fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz023456789";
    let mut raw = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let chars: String = raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

fn normalize_recovery(code: &str) -> String {
    let c: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        // The alphabet has 0 and no o: read a typed o as the zero it must be.
        .map(|c| if c == 'o' { '0' } else { c })
        .collect();
    if c.len() == 10 {
        format!("{}-{}", &c[..5], &c[5..])
    } else {
        c
    }
}

async fn codes_if_none_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: UserId,
) -> Result<Option<Vec<String>>> {
    let left = sqlx::query(
        "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user.to_string())
    .fetch_one(&mut **tx)
    .await?
    .int("n")?;
    if left > 0 {
        return Ok(None);
    }
    replace_codes_tx(tx, user).await.map(Some)
}

async fn replace_codes_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: UserId,
) -> Result<Vec<String>> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    let now = now_micros();
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let code = new_recovery_code();
        sqlx::query("INSERT INTO recovery_codes (id, user_id, code_digest, created_at) VALUES ($1, $2, $3, $4)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(user.to_string())
            .bind(kura_crypto::token_digest(&code))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        codes.push(code);
    }
    Ok(codes)
}

/// New recovery codes replace the old ones (shown once, stored as digests).
pub async fn regenerate_codes(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
) -> Result<Vec<String>> {
    let mut tx = db.write.begin().await?;
    let codes = replace_codes_tx(&mut tx, user).await?;
    let ev = AuditEvent::new("mfa.recovery_codes", Outcome::Success).org(org);
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(codes)
}

/// Spend a recovery code; true if it was valid and unused. Codes carry 50
/// random bits, so a plain digest lookup is safe against guessing.
pub async fn use_recovery_code(db: &Db, user: UserId, code: &str) -> Result<bool> {
    let code = normalize_recovery(code);
    if code.len() != 11 {
        return Ok(false);
    }
    let n = sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_digest = $3 AND used_at IS NULL")
        .bind(now_micros())
        .bind(user.to_string())
        .bind(kura_crypto::token_digest(&code))
        .execute(&db.write)
        .await?
        .rows_affected();
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_steps_and_format() {
        let totp = totp_for(vec![7u8; 20], "a@example.org").unwrap();
        let now = 1_800_000_000u64;
        let code = totp.generate(now);
        assert_eq!(matching_step(&totp, &code, now), Some((now / 30) as i64));
        let prev = totp.generate(now - 30);
        assert_eq!(
            matching_step(&totp, &prev, now),
            Some((now / 30 - 1) as i64)
        );
        assert_eq!(matching_step(&totp, &totp.generate(now - 90), now), None);
        assert_eq!(matching_step(&totp, "12345", now), None);
        assert_eq!(matching_step(&totp, "abcdef", now), None);
        assert!(totp.get_url().starts_with("otpauth://totp/Kura:"));
    }

    #[test]
    fn recovery_code_shape() {
        assert_eq!(b"abcdefghjkmnpqrstuvwxyz023456789".len(), 32);
        let c = new_recovery_code();
        assert_eq!(c.len(), 11);
        assert_eq!(normalize_recovery(&c.to_uppercase().replace('-', " ")), c);
    }
}
