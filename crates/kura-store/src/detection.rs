//! Per-organization detection rules and alert delivery, set by the
//! organization's admins. An organization without stored rules gets the
//! defaults, which are all on.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::keyring::Keyring;
use crate::time::now_micros;
use kura_core::{OrgAction, OrgGrant, OrgId};
use serde::{Deserialize, Serialize};

/// What the detector does to the actor when a rule fires (besides alerting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Containment {
    None,
    /// Every further action of the actor's sessions needs a fresh second
    /// factor, until the session ends; the actor's API tokens are revoked.
    StepUp,
    /// End every session and API token of the actor.
    EndSessions,
    /// Lock the account pending an administrator's review (ends everything).
    Lock,
}

impl Containment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StepUp => "step_up",
            Self::EndSessions => "end_sessions",
            Self::Lock => "lock",
        }
    }
}

/// More than `files` distinct files or `bytes` bytes within `minutes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRule {
    pub enabled: bool,
    pub files: u32,
    pub bytes: u64,
    pub minutes: u32,
    pub contain: Containment,
}

/// More than `count` events within `minutes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRule {
    pub enabled: bool,
    pub count: u32,
    pub minutes: u32,
    pub contain: Containment,
}

/// The longest window a rule may look back over: a day.
pub const MAX_WINDOW_MINUTES: u32 = 1440;

/// Most days off an organization may list (about three years of public
/// holidays and closures, with room to spare).
const MAX_HOLIDAYS: usize = 1000;

/// Access outside `start_hour`..`end_hour` (and, with `weekdays_only`, on
/// Saturdays and Sundays) in the organization's time zone, and on any of
/// the organization's `holidays`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursRule {
    pub enabled: bool,
    pub time_zone: String,
    pub start_hour: u8,
    pub end_hour: u8,
    pub weekdays_only: bool,
    /// Days off in the organization's time zone (`YYYY-MM-DD`; public
    /// holidays, office closures): any access on them is outside hours.
    /// Kept sorted (see [`set`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<String>,
    pub contain: Containment,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleRule {
    pub enabled: bool,
    pub contain: Containment,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// One actor downloads many files or bytes of this organization's projects.
    pub bulk_download: VolumeRule,
    /// Bulk downloads from a project the actor first used in the last day.
    pub new_project_bulk: VolumeRule,
    /// One actor lists many folders or projects quickly.
    pub enumeration: CountRule,
    /// Failed sign-ins to this organization's accounts.
    pub failed_signins: CountRule,
    pub off_hours: HoursRule,
    /// A sign-in from a network and device never seen for that user.
    pub new_network: SimpleRule,
    /// Any read of a file an admin marked as a canary (always critical).
    pub canary: SimpleRule,
    /// Where alerts are emailed; empty: the organization's admins.
    pub notify_emails: Vec<String>,
    /// Alerts are POSTed here as JSON, signed with HMAC-SHA256.
    pub webhook_url: Option<String>,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            bulk_download: VolumeRule {
                enabled: true,
                files: 100,
                bytes: 2 << 30,
                minutes: 10,
                contain: Containment::EndSessions,
            },
            new_project_bulk: VolumeRule {
                enabled: true,
                files: 30,
                bytes: 1 << 30,
                minutes: 10,
                contain: Containment::StepUp,
            },
            enumeration: CountRule {
                enabled: true,
                count: 300,
                minutes: 5,
                contain: Containment::None,
            },
            failed_signins: CountRule {
                enabled: true,
                count: 20,
                minutes: 10,
                contain: Containment::None,
            },
            off_hours: HoursRule {
                enabled: true,
                time_zone: "UTC".into(),
                start_hour: 7,
                end_hour: 21,
                weekdays_only: true,
                holidays: Vec::new(),
                contain: Containment::None,
            },
            new_network: SimpleRule {
                enabled: true,
                contain: Containment::None,
            },
            canary: SimpleRule {
                enabled: true,
                contain: Containment::StepUp,
            },
            notify_emails: Vec::new(),
            webhook_url: None,
        }
    }
}

impl DetectionConfig {
    /// The longest window an enabled counting rule looks back over, in
    /// minutes (0 when none is on).
    pub fn longest_window_minutes(&self) -> u32 {
        let volume = [&self.bulk_download, &self.new_project_bulk]
            .into_iter()
            .filter(|r| r.enabled)
            .map(|r| r.minutes);
        let count = [&self.enumeration, &self.failed_signins]
            .into_iter()
            .filter(|r| r.enabled)
            .map(|r| r.minutes);
        volume.chain(count).max().unwrap_or(0)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(StoreError::Invalid(m.to_string()));
        for (name, r) in [
            ("bulk_download", &self.bulk_download),
            ("new_project_bulk", &self.new_project_bulk),
        ] {
            if r.files == 0 || r.bytes == 0 || !(1..=MAX_WINDOW_MINUTES).contains(&r.minutes) {
                return bad(&format!(
                    "{name}: files and bytes must be at least 1, minutes 1-1440"
                ));
            }
        }
        for (name, r) in [
            ("enumeration", &self.enumeration),
            ("failed_signins", &self.failed_signins),
        ] {
            if r.count == 0 || !(1..=MAX_WINDOW_MINUTES).contains(&r.minutes) {
                return bad(&format!("{name}: count must be at least 1, minutes 1-1440"));
            }
        }
        let h = &self.off_hours;
        if h.start_hour > 23 || h.end_hour > 24 || h.start_hour >= h.end_hour {
            return bad("off_hours: start_hour 0-23 must be before end_hour 1-24");
        }
        if jiff::tz::TimeZone::get(&h.time_zone).is_err() || h.time_zone.len() > 64 {
            return bad("off_hours: time_zone must be an IANA time zone such as Asia/Tokyo");
        }
        if h.holidays.len() > MAX_HOLIDAYS
            || h.holidays.iter().any(|d| {
                d.parse::<jiff::civil::Date>()
                    .map_or(true, |date| date.to_string() != *d)
            })
        {
            return bad("off_hours: holidays must be at most 1000 dates written YYYY-MM-DD");
        }
        if self.notify_emails.len() > 20
            || self
                .notify_emails
                .iter()
                .any(|e| crate::users::normalize_email(e).is_err())
        {
            return bad("notify_emails: at most 20 valid email addresses");
        }
        if let Some(u) = &self.webhook_url {
            if u.len() > 500 || !crate::sso::issuer_allowed(u) {
                return bad("webhook_url must be an https:// URL (http only on loopback)");
            }
        }
        Ok(())
    }

    pub fn from_stored(json: Option<&str>) -> Self {
        match json {
            Some(j) => serde_json::from_str(j).unwrap_or_else(|e| {
                tracing::error!(error = %e, "stored detection rules are unreadable; using defaults");
                Self::default()
            }),
            None => Self::default(),
        }
    }
}

fn webhook_context(org: OrgId) -> Vec<u8> {
    format!("kura-alert-webhook:{org}").into_bytes()
}

pub async fn get(db: &Db, org: OrgId) -> Result<DetectionConfig> {
    let row = sqlx::query("SELECT config FROM org_detection WHERE org_id = $1")
        .bind(org.to_string())
        .fetch_optional(&db.read)
        .await?;
    let json = row.map(|r| r.str("config")).transpose()?;
    Ok(DetectionConfig::from_stored(json.as_deref()))
}

/// The longest window any organization's enabled rules look back over, in
/// minutes (organizations without stored rules have the defaults'): how
/// much of the trail the detector replays when it starts, so that a window
/// that straddles the start is counted whole.
pub async fn longest_window_minutes(db: &Db) -> Result<u32> {
    let mut longest = DetectionConfig::default().longest_window_minutes();
    for r in sqlx::query("SELECT config FROM org_detection")
        .fetch_all(&db.read)
        .await?
    {
        // A row that cannot be read counts with the defaults, as it does
        // when its organization's rules are evaluated.
        let stored = DetectionConfig::from_stored(r.opt_str("config").ok().flatten().as_deref());
        longest = longest.max(stored.longest_window_minutes());
    }
    // Rules allow at most a day (`validate`); stored ones are not trusted.
    Ok(longest.min(MAX_WINDOW_MINUTES))
}

/// The webhook's signing secret (created with the first webhook URL).
pub async fn webhook_secret(db: &Db, keys: &Keyring, org: OrgId) -> Result<Option<Vec<u8>>> {
    let row = sqlx::query("SELECT webhook_secret FROM org_detection WHERE org_id = $1")
        .bind(org.to_string())
        .fetch_optional(&db.read)
        .await?;
    let Some(sealed) = row.and_then(|r| r.bytes("webhook_secret").ok()) else {
        return Ok(None);
    };
    let key = keys.org_key(db, org).await?;
    Ok(Some(
        key.open_secret(&sealed, &webhook_context(org))?.to_vec(),
    ))
}

/// Replace the organization's rules. Returns a new webhook secret (shown
/// once) when a webhook URL is set for the first time or `new_secret` asks.
pub async fn set(
    db: &Db,
    keys: &Keyring,
    g: &OrgGrant,
    ctx: &AuditCtx,
    cfg: &DetectionConfig,
    new_secret: bool,
) -> Result<Option<String>> {
    if g.action() != OrgAction::ManageUsers {
        return Err(StoreError::Denied(kura_core::Denied::Forbidden));
    }
    cfg.validate()?;
    // Holidays are looked up by binary search for every event.
    let mut cfg = cfg.clone();
    cfg.off_hours.holidays.sort();
    cfg.off_hours.holidays.dedup();
    let cfg = &cfg;
    let org = g.org_id();
    crate::orgs::get_any(db, org).await?;
    let old = get(db, org).await?;
    let had_secret = webhook_secret(db, keys, org).await?.is_some();
    let fresh = (cfg.webhook_url.is_some() && (!had_secret || new_secret))
        .then(|| kura_crypto::secrets::random_token("kwhs"));
    let json = serde_json::to_string(cfg).map_err(|e| StoreError::Internal(e.to_string()))?;
    let mut tx = db.write.begin().await?;
    let existing = sqlx::query("SELECT webhook_secret FROM org_detection WHERE org_id = $1")
        .bind(org.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    let sealed = match &fresh {
        Some(s) => Some(
            keys.org_key(db, org)
                .await?
                .seal_secret(s.as_bytes(), &webhook_context(org)),
        ),
        None => existing
            .as_ref()
            .and_then(|r| r.bytes("webhook_secret").ok()),
    };
    sqlx::query("DELETE FROM org_detection WHERE org_id = $1")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO org_detection (org_id, config, webhook_secret, updated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(org.to_string())
    .bind(&json)
    .bind(sealed)
    .bind(now_micros())
    .execute(&mut *tx)
    .await?;
    let ev = AuditEvent::new("org.detection_update", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"old": old, "new": cfg, "new_webhook_secret": fresh.is_some()}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_partial_json_fills_in() {
        DetectionConfig::default().validate().unwrap();
        let c: DetectionConfig =
            serde_json::from_str(r#"{"webhook_url":"http://127.0.0.1:9/x"}"#).unwrap();
        c.validate().unwrap();
        assert!(c.canary.enabled);
        let mut bad = DetectionConfig::default();
        bad.off_hours.time_zone = "Mars/Olympus".into();
        assert!(bad.validate().is_err());
        for day in ["2026-02-30", "2026-2-3", "tomorrow", ""] {
            let mut c = DetectionConfig::default();
            c.off_hours.holidays = vec!["2027-01-01".into(), day.into()];
            assert!(c.validate().is_err(), "{day:?}");
        }
        let mut c = DetectionConfig::default();
        c.off_hours.holidays = vec!["2027-01-01".into(), "2026-12-31".into()];
        c.validate().unwrap();
        bad = DetectionConfig {
            webhook_url: Some("http://203.0.113.9/hook".into()),
            ..DetectionConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[tokio::test]
    async fn the_longest_window_counts_enabled_rules_of_every_organization() {
        let (db, dir) = crate::db::test_db("longest-window").await;
        // No stored rules: the defaults' longest, bulk downloads over 10 min.
        assert_eq!(longest_window_minutes(&db).await.unwrap(), 10);
        let mut long = DetectionConfig::default();
        long.enumeration.minutes = 600;
        long.enumeration.enabled = false;
        long.failed_signins.minutes = 180;
        for (org, c) in [
            (OrgId::new(), long),
            (OrgId::new(), DetectionConfig::default()),
        ] {
            sqlx::query(
                "INSERT INTO orgs (id, name, slug, quota_bytes, wrapped_key, master_key_id, created_at) \
                 VALUES ($1, $1, $1, 0, X'00', 'k', 0)",
            )
            .bind(org.to_string())
            .execute(&db.write)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO org_detection (org_id, config, webhook_secret, updated_at) VALUES ($1, $2, NULL, 0)",
            )
            .bind(org.to_string())
            .bind(serde_json::to_string(&c).unwrap())
            .execute(&db.write)
            .await
            .unwrap();
        }
        // The disabled 600-minute rule does not count; the 180-minute one does.
        assert_eq!(longest_window_minutes(&db).await.unwrap(), 180);
        let _ = std::fs::remove_dir_all(dir);
    }
}
