//! Platform-wide kill switches: read-only mode and suspension. The mode is
//! one row in `settings`, read with every credential (no cache, so a switch
//! thrown by the CLI on another process counts from the next request).

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::now_micros;
use kura_core::PlatformGrant;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Normal,
    /// Nothing changes: every state-changing request is refused (sign-in and
    /// sign-out excepted), reads go on.
    ReadOnly,
    /// Every session ended, sign-in refused, a maintenance page; only the
    /// platform's break-glass administrators on loopback get in.
    Suspended,
}

impl Mode {
    /// Unknown or missing values read as normal only if missing; a corrupt
    /// value fails closed to suspended.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            None | Some("normal") => Self::Normal,
            Some("read-only") => Self::ReadOnly,
            _ => Self::Suspended,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::ReadOnly => "read-only",
            Self::Suspended => "suspended",
        }
    }

    pub fn from_arg(s: &str) -> Result<Self> {
        match s {
            "normal" => Ok(Self::Normal),
            "read-only" => Ok(Self::ReadOnly),
            "suspended" => Ok(Self::Suspended),
            _ => Err(StoreError::Invalid(
                "mode must be normal, read-only or suspended".into(),
            )),
        }
    }
}

pub async fn mode(db: &Db) -> Result<Mode> {
    let r = sqlx::query("SELECT value FROM settings WHERE key = 'platform_mode'")
        .fetch_optional(&db.read)
        .await?;
    Ok(Mode::parse(
        r.map(|r| r.str("value")).transpose()?.as_deref(),
    ))
}

/// Throw a switch. Suspension also ends every session and API token on the
/// platform in the same transaction.
pub async fn set_mode(db: &Db, _g: &PlatformGrant, ctx: &AuditCtx, m: Mode) -> Result<Mode> {
    let old = mode(db).await?;
    let mut tx = db.write.begin().await?;
    sqlx::query("DELETE FROM settings WHERE key = 'platform_mode'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO settings (key, value) VALUES ('platform_mode', $1)")
        .bind(m.as_str())
        .execute(&mut *tx)
        .await?;
    let mut ended = 0u64;
    if m == Mode::Suspended {
        let now = now_micros();
        ended = sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE revoked_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        ended += sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    let ev = AuditEvent::new("platform.mode", Outcome::Success).detail(serde_json::json!({
        "old": old.as_str(), "new": m.as_str(), "credentials_ended": ended
    }));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(old)
}
