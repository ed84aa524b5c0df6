//! Per-organization sign-in policy, set by the organization's admins. An
//! organization without a stored policy gets the defaults, which are the
//! strict ones: MFA required, WebAuthn required for administrators.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::now_micros;
use ipnet::IpNet;
use kura_core::{OrgAction, OrgGrant, OrgId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Upper bound of the consecutive-failure lock (NIST SP 800-63B: at most 100).
pub const MAX_LOCKOUT_THRESHOLD: u32 = 100;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrgPolicy {
    /// Every member must pass a second factor at sign-in.
    pub mfa_required: bool,
    /// Organization and platform admins must use WebAuthn (phishing-resistant).
    pub webauthn_for_admins: bool,
    /// Client networks allowed for web, API tokens and every protocol; empty: any.
    pub allowed_networks: Vec<IpNet>,
    /// Session idle timeout in minutes (none: the platform's).
    pub session_idle_minutes: Option<u32>,
    /// Session absolute lifetime in hours (none: the platform's).
    pub session_absolute_hours: Option<u32>,
    /// Email domains allowed for self-service and single-sign-on accounts.
    pub allowed_email_domains: Vec<String>,
    /// Consecutive failed sign-ins that lock the account (an admin unlocks).
    pub lockout_threshold: u32,
    /// How long a second factor counts as fresh for sensitive actions.
    pub step_up_minutes: u32,
    /// Downloads of more than this many files within `step_up_minutes` need a fresh factor.
    pub bulk_download_files: u32,
    /// Downloads of more than this many bytes within `step_up_minutes` need a fresh factor.
    pub bulk_download_bytes: u64,
}

impl Default for OrgPolicy {
    fn default() -> Self {
        Self {
            mfa_required: true,
            webauthn_for_admins: true,
            allowed_networks: Vec::new(),
            session_idle_minutes: None,
            session_absolute_hours: None,
            allowed_email_domains: Vec::new(),
            lockout_threshold: 10,
            step_up_minutes: 10,
            bulk_download_files: 50,
            bulk_download_bytes: 1 << 30,
        }
    }
}

impl OrgPolicy {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(StoreError::Invalid(m.into()));
        if !(1..=MAX_LOCKOUT_THRESHOLD).contains(&self.lockout_threshold) {
            return bad("lockout_threshold must be between 1 and 100");
        }
        if !(1..=1440).contains(&self.step_up_minutes) {
            return bad("step_up_minutes must be between 1 and 1440");
        }
        if self.allowed_networks.len() > 200 || self.allowed_email_domains.len() > 200 {
            return bad("at most 200 networks and 200 email domains");
        }
        if self
            .session_idle_minutes
            .is_some_and(|m| !(1..=60 * 24 * 30).contains(&m))
        {
            return bad("session_idle_minutes must be between 1 and 43200");
        }
        if self
            .session_absolute_hours
            .is_some_and(|h| !(1..=24 * 366).contains(&h))
        {
            return bad("session_absolute_hours must be between 1 and 8784");
        }
        if self.bulk_download_files == 0 || self.bulk_download_bytes == 0 {
            return bad("bulk download thresholds must be positive");
        }
        for d in &self.allowed_email_domains {
            let ok = d.len() <= 253
                && d.contains('.')
                && d.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if !ok {
                return bad(
                    "allowed_email_domains must be lower-case domain names like example.go.jp",
                );
            }
        }
        Ok(())
    }

    /// Whether a client address is inside the allowed networks. An address
    /// that cannot be parsed is outside every non-empty list (fail closed).
    pub fn allows_ip(&self, ip: &str) -> bool {
        if self.allowed_networks.is_empty() {
            return true;
        }
        match ip.parse::<IpAddr>() {
            Ok(addr) => {
                let addr = match addr {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
                    v4 => v4,
                };
                self.allowed_networks.iter().any(|n| n.contains(&addr))
            }
            Err(_) => false,
        }
    }

    pub fn allows_email(&self, email: &str) -> bool {
        let Some((_, domain)) = email.rsplit_once('@') else {
            return false;
        };
        self.allowed_email_domains.iter().any(|d| d == domain)
    }

    /// Whether `user` must present a second factor at sign-in.
    pub fn requires_mfa(&self) -> bool {
        self.mfa_required
    }

    pub fn requires_webauthn(&self, is_admin: bool) -> bool {
        is_admin && self.webauthn_for_admins
    }

    /// Parse the stored JSON; a damaged row falls back to the strict defaults.
    pub fn from_stored(json: Option<&str>) -> Self {
        match json {
            Some(j) => serde_json::from_str(j).unwrap_or_else(|e| {
                tracing::error!(error = %e, "stored organization policy is unreadable; using defaults");
                Self::default()
            }),
            None => Self::default(),
        }
    }
}

pub async fn get(db: &Db, org: OrgId) -> Result<OrgPolicy> {
    let row = db
        .fetch_point(
            "SELECT policy FROM org_policies WHERE org_id = $1",
            vec![org.to_string().into()],
        )
        .await?;
    let json = row.map(|r| r.str("policy")).transpose()?;
    Ok(OrgPolicy::from_stored(json.as_deref()))
}

/// Replace an organization's policy (admins of the organization; platform
/// admins through the CLI). The old and new policies are both audited.
pub async fn set(db: &Db, g: &OrgGrant, ctx: &AuditCtx, policy: &OrgPolicy) -> Result<()> {
    if g.action() != OrgAction::ManageUsers {
        return Err(StoreError::Denied(kura_core::Denied::Forbidden));
    }
    set_unchecked(db, g.org_id(), ctx, policy).await
}

/// Without a grant: the local operator CLI only.
pub async fn set_unchecked(db: &Db, org: OrgId, ctx: &AuditCtx, policy: &OrgPolicy) -> Result<()> {
    policy.validate()?;
    let old = get(db, org).await?;
    let json = serde_json::to_string(policy).map_err(|e| StoreError::Internal(e.to_string()))?;
    let mut tx = db.write.begin().await?;
    let n = sqlx::query("UPDATE org_policies SET policy = $1, updated_at = $2 WHERE org_id = $3")
        .bind(&json)
        .bind(now_micros())
        .bind(org.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        sqlx::query("INSERT INTO org_policies (org_id, policy, updated_at) VALUES ($1, $2, $3)")
            .bind(org.to_string())
            .bind(&json)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
    }
    let ev = AuditEvent::new("org.policy_update", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"old": old, "new": policy}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_domains() {
        let p = OrgPolicy {
            allowed_networks: vec![
                "10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!()),
                "::1/128".parse().unwrap_or_else(|_| unreachable!()),
            ],
            allowed_email_domains: vec!["example.go.jp".into()],
            ..OrgPolicy::default()
        };
        assert!(p.allows_ip("10.1.2.3"));
        assert!(p.allows_ip("::ffff:10.1.2.3"));
        assert!(p.allows_ip("::1"));
        assert!(!p.allows_ip("127.0.0.1"));
        assert!(!p.allows_ip("not-an-ip"));
        assert!(OrgPolicy::default().allows_ip("203.0.113.9"));
        assert!(p.allows_email("a@example.go.jp"));
        assert!(!p.allows_email("a@evil-example.go.jp"));
        assert!(p.validate().is_ok());
        let bad = OrgPolicy {
            lockout_threshold: 101,
            ..OrgPolicy::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn damaged_json_is_strict() {
        assert!(OrgPolicy::from_stored(Some("{nope")).mfa_required);
        let p: OrgPolicy = serde_json::from_str(r#"{"mfa_required": false}"#).unwrap();
        assert!(!p.mfa_required && p.webauthn_for_admins);
        assert!(serde_json::from_str::<OrgPolicy>(r#"{"unknown": 1}"#).is_err());
    }
}
