//! The detector's loop: it follows the committed audit trail (like the SIEM
//! forwarder, so requests never wait for it and a restart resumes from the
//! stored cursor), evaluates the rules, stores each alert, applies the
//! rule's containment and sends the alert by email and signed webhook.
//! Every response is itself audited. With several nodes, one holds a lease
//! and evaluates; the others stand by.

use crate::state::AppState;
use hmac::{Hmac, Mac};
use kura_store::alert_outbox::{self as outbox, Channel, Delivery};
use kura_store::alerts::{self, Alert};
use kura_store::detect::{Detector, Finding, Inputs};
use kura_store::detection::{self, Containment, DetectionConfig};
use kura_store::{Outcome, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

const BATCH: i64 = 2000;
const TICK: Duration = Duration::from_millis(500);
const LEASE_MICROS: i64 = 15_000_000;
const CURSOR_EVERY: Duration = Duration::from_secs(2);
/// After a start or a lease take-over, the detector replays at least this
/// much of the recent trail (without raising alerts) to rebuild its windows,
/// so a burst that straddles a restart is still counted whole; more when an
/// organization's rules look back further (up to a day).
const WARM_UP_MICROS: i64 = 60 * 60 * 1_000_000;
/// At most this many of the newest events are replayed (a start stays
/// quick; ids are close to dense, so this bounds the replay by id).
const WARM_UP_MAX: i64 = 200_000;

/// The platform mode as last read (for the maintenance page, which answers
/// before any credential is read); refreshed every tick.
#[derive(Default)]
pub struct ModeCache(AtomicU8);

impl ModeCache {
    pub fn get(&self) -> kura_store::platform::Mode {
        match self.0.load(Ordering::Relaxed) {
            1 => kura_store::platform::Mode::ReadOnly,
            2 => kura_store::platform::Mode::Suspended,
            _ => kura_store::platform::Mode::Normal,
        }
    }
    pub fn set(&self, m: kura_store::platform::Mode) {
        let v = match m {
            kura_store::platform::Mode::Normal => 0,
            kura_store::platform::Mode::ReadOnly => 1,
            kura_store::platform::Mode::Suspended => 2,
        };
        self.0.store(v, Ordering::Relaxed);
    }
}

struct Loop {
    node: String,
    /// Until when this node holds the lease (as last written).
    lease_until: i64,
    /// The cursor as last stored, and when.
    stored: Option<i64>,
    saved_at: Instant,
    detector: Detector,
    cursor: Option<i64>,
    first_access: HashMap<(String, String), i64>,
    /// Whether the windows were rebuilt from the recent trail since this
    /// node (re)took the lease.
    warm: bool,
}

/// Keep the mode cache fresh and, with `evaluate`, take part in detection.
pub fn start(state: AppState, evaluate: bool) {
    tokio::spawn(async move {
        let mut l = Loop {
            node: uuid::Uuid::new_v4().to_string(),
            lease_until: 0,
            stored: None,
            saved_at: Instant::now(),
            detector: Detector::default(),
            cursor: None,
            first_access: HashMap::new(),
            warm: false,
        };
        loop {
            if let Ok(m) = kura_store::platform::mode(&state.store.db).await {
                state.mode.set(m);
            }
            if !evaluate {
                tokio::time::sleep(TICK).await;
                continue;
            }
            match l.tick(&state).await {
                Ok(true) => continue, // more to read
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "detector could not evaluate the trail"),
            }
            tokio::time::sleep(TICK).await;
        }
    });
}

use kura_store::settings::{compare_and_set as put_setting, get as setting};

impl Loop {
    /// Hold (or take over an expired) lease; compare-and-set, so two nodes
    /// never both evaluate.
    async fn lease(&mut self, db: &kura_store::Db) -> Result<bool, StoreError> {
        let now = kura_store::time::now_micros();
        // Renewed at half-life: a durable write every few seconds, not
        // every tick (the writer connection belongs to the audit sink).
        if self.lease_until - now > LEASE_MICROS / 2 {
            return Ok(true);
        }
        let cur = setting(db, "detector_lease").await?;
        let ours_or_free = match cur.as_deref().and_then(|v| v.split_once('|')) {
            Some((node, until)) => {
                node == self.node || until.parse::<i64>().map_or(true, |u| u < now)
            }
            None => true,
        };
        if !ours_or_free {
            self.cursor = None; // another node moves the cursor meanwhile
            self.stored = None;
            self.forget_windows();
            return Ok(false);
        }
        let got = put_setting(
            db,
            "detector_lease",
            cur.as_deref(),
            &format!("{}|{}", self.node, now + LEASE_MICROS),
        )
        .await?;
        if got {
            self.lease_until = now + LEASE_MICROS;
        }
        Ok(got)
    }

    /// Read fresh for every batch: a rule an admin just changed applies to
    /// the next event, on every node (one small query per organization).
    async fn config(&mut self, db: &kura_store::Db, org: &str) -> DetectionConfig {
        match org.parse() {
            Ok(o) => detection::get(db, o).await.unwrap_or_default(),
            Err(_) => DetectionConfig::default(),
        }
    }

    /// Empty the windows: another node evaluated meanwhile, so they are
    /// rebuilt from the trail when this node takes the lease again.
    fn forget_windows(&mut self) {
        self.detector = Detector::default();
        self.warm = false;
    }

    /// The rules, canaries and first accesses that evaluating `batch` needs.
    async fn prepare<R: std::borrow::Borrow<kura_store::chain::Record>>(
        &mut self,
        db: &kura_store::Db,
        batch: &[R],
    ) -> Result<(HashMap<String, DetectionConfig>, HashMap<String, String>), StoreError> {
        let canaries: HashMap<String, String> = alerts::all_canaries(db)
            .await?
            .into_iter()
            .map(|c| (c.node_id, c.org_id))
            .collect();
        let mut configs: HashMap<String, DetectionConfig> = HashMap::new();
        let orgs: HashSet<String> = batch
            .iter()
            .filter_map(|r| r.borrow().org_id.clone())
            .collect();
        for o in orgs {
            let c = self.config(db, &o).await;
            configs.insert(o, c);
        }
        if self.first_access.len() > 100_000 {
            self.first_access.clear();
        }
        for r in batch {
            let r = r.borrow();
            if let Some(pair) = Detector::pair_of(r) {
                if let std::collections::hash_map::Entry::Vacant(e) = self.first_access.entry(pair)
                {
                    let (actor, project) = e.key();
                    let first = kura_store::audit::first_access(db, actor, project)
                        .await?
                        .unwrap_or(r.ts);
                    e.insert(first);
                }
            }
        }
        Ok((configs, canaries))
    }

    /// Rebuild the windows from the last hour of the trail (or the longest
    /// window a rule looks back over) up to `upto`
    /// (events already evaluated, at most the newest `WARM_UP_MAX`): what
    /// they raise was raised before, so nothing is raised now, but the
    /// windows are as if the detector had never stopped (a quiet period
    /// longer than the replay, such as off-hours' eight hours, may restart).
    /// False if the lease was lost meanwhile (the windows are then empty).
    async fn warm_up(&mut self, db: &kura_store::Db, upto: i64) -> Result<bool, StoreError> {
        // From empty windows, also after a replay that failed half-way:
        // nothing may be counted twice.
        self.detector = Detector::default();
        let now = kura_store::time::now_micros();
        // If the rules cannot be read, the default hour: detection must
        // start regardless.
        let longest = kura_store::detection::longest_window_minutes(db)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "detector: rule windows unreadable; replaying the last hour");
                0
            });
        let span = WARM_UP_MICROS.max(i64::from(longest) * 60 * 1_000_000);
        let Some(first) = kura_store::audit::first_id_since(db, now - span).await? else {
            return Ok(true);
        };
        let mut from = (first - 1).max(upto - WARM_UP_MAX);
        let mut replayed = 0usize;
        while from < upto {
            // A long replay must not outlive the lease it runs under.
            if !self.lease(db).await? {
                self.forget_windows();
                return Ok(false);
            }
            let mut batch = kura_store::audit::events_after_uncached(db, from, BATCH).await?;
            batch.retain(|r| r.id <= upto);
            let Some(last) = batch.last().map(|r| r.id) else {
                break;
            };
            let (configs, canaries) = self.prepare(db, &batch).await?;
            let inp = Inputs {
                configs: &configs,
                canaries: &canaries,
                first_access: &self.first_access,
            };
            for r in &batch {
                let _ = self.detector.process(r, &inp);
            }
            replayed += batch.len();
            from = last;
        }
        self.detector.prune(now);
        if replayed > 0 {
            tracing::info!(
                events = replayed,
                "detector windows rebuilt from the recent trail"
            );
        }
        Ok(true)
    }

    async fn tick(&mut self, s: &AppState) -> Result<bool, StoreError> {
        let db = &s.store.db;
        if !self.lease(db).await? {
            return Ok(false);
        }
        let from = match self.cursor {
            Some(c) => c,
            None => match setting(db, "detector_cursor").await? {
                Some(v) => {
                    let c = v.parse().unwrap_or(0);
                    self.stored = Some(c);
                    c
                }
                None => {
                    // First start: evaluate from now on, not the whole history.
                    let max = kura_store::audit::max_id(db).await?;
                    put_setting(db, "detector_cursor", None, &max.to_string()).await?;
                    self.stored = Some(max);
                    max
                }
            },
        };
        if !self.warm {
            if !self.warm_up(db, from).await? {
                return Ok(false);
            }
            self.warm = true;
        }
        let batch = kura_store::audit::events_after(db, from, BATCH).await?;
        if batch.is_empty() {
            self.cursor = Some(from);
            return Ok(false);
        }
        let (configs, canaries) = self.prepare(db, &batch).await?;
        let mut findings: Vec<Finding> = Vec::new();
        {
            let inp = Inputs {
                configs: &configs,
                canaries: &canaries,
                first_access: &self.first_access,
            };
            for r in &batch {
                findings.extend(self.detector.process(r, &inp));
            }
        }
        self.detector.prune(kura_store::time::now_micros());
        for f in findings {
            let cfg = f
                .alert
                .org_id
                .map(|o| o.to_string())
                .and_then(|o| configs.get(&o).cloned())
                .unwrap_or_default();
            respond(s, f, cfg).await;
        }
        let last = batch.last().map_or(from, |r| r.id);
        self.cursor = Some(last);
        // The stored cursor follows every few seconds (after a crash, those
        // events are evaluated again: alerts are at least once). Only the
        // lease holder moves it, by compare-and-set as well.
        if self.saved_at.elapsed() >= CURSOR_EVERY {
            let old = match self.stored {
                Some(v) => v.to_string(),
                None => setting(db, "detector_cursor").await?.unwrap_or_default(),
            };
            if !put_setting(db, "detector_cursor", Some(&old), &last.to_string()).await? {
                self.cursor = None;
                self.stored = None;
                self.lease_until = 0;
                self.forget_windows();
                return Ok(false);
            }
            self.stored = Some(last);
            self.saved_at = Instant::now();
        }
        Ok(batch.len() as i64 == BATCH)
    }
}

/// What containment the rule's choice becomes for this actor:
/// - locking an account is its home organization's decision, so an
///   account of another organization is cut off (sessions ended) instead;
/// - an account without a second factor could lift a step-up with the
///   password a thief may hold, so its sessions end instead.
async fn effective_containment(s: &AppState, f: &Finding, user: kura_core::UserId) -> Containment {
    let db = &s.store.db;
    let home = kura_store::users::get_any(db, user)
        .await
        .ok()
        .map(|u| u.org_id);
    match f.contain {
        Containment::Lock if home != f.alert.org_id => Containment::EndSessions,
        Containment::StepUp => match kura_store::mfa::enrolled(db, user).await {
            Ok(e) if e.any() => Containment::StepUp,
            _ => Containment::EndSessions,
        },
        c => c,
    }
}

/// Store the alert, contain, notify; each step audited.
async fn respond(s: &AppState, f: Finding, cfg: DetectionConfig) {
    let db = &s.store.db;
    let alert = match alerts::insert(db, &f.alert).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, rule = f.alert.rule, "could not store an alert");
            return;
        }
    };
    s.metrics.alerts.inc();
    tracing::warn!(alert_id = %alert.id, rule = %alert.rule, severity = %alert.severity, "security alert");
    if let (Some(user), true) = (f.alert.actor_user_id, f.contain != Containment::None) {
        let contain = effective_containment(s, &f, user).await;
        let result = match contain {
            Containment::StepUp => alerts::contain_step_up(db, user).await.map(|_| ()),
            Containment::EndSessions => alerts::contain_end_sessions(db, user).await,
            Containment::Lock => match kura_store::users::get_any(db, user).await {
                Ok(u) => kura_store::throttle::lock(
                    db,
                    &alerts::detector_ctx(),
                    user,
                    u.org_id,
                    &format!("alert {}: {}", alert.id, alert.rule),
                )
                .await
                .map(|_| ()),
                Err(e) => Err(e),
            },
            Containment::None => Ok(()),
        };
        let outcome = if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, alert_id = %alert.id, "containment failed");
        }
        let _ = alerts::record_response(
            db,
            f.alert.org_id,
            &alert.id,
            "alert.contain",
            outcome,
            serde_json::json!({"action": contain.as_str(), "rule_says": f.contain.as_str(), "user_id": user}),
        )
        .await;
    }
    // Queued before the detector's cursor moves past the event: a stop
    // right after cannot lose the notices (the delivery loop sends them).
    notify(s, &alert, &cfg).await;
}

async fn recipients(s: &AppState, alert: &Alert, cfg: &DetectionConfig) -> Vec<String> {
    if alert.org_id.is_some() && !cfg.notify_emails.is_empty() {
        return cfg.notify_emails.clone();
    }
    alerts::default_recipients(&s.store.db, alert.org_id.as_deref())
        .await
        .unwrap_or_default()
}

/// Queue the alert's notices: an email per security contact and the
/// organization's webhook. The delivery loop sends them (see
/// [`start_deliveries`]); queueing is in the database, so a receiver that
/// is down, or a restart, delays a notice instead of losing it.
async fn notify(s: &AppState, alert: &Alert, cfg: &DetectionConfig) {
    let db = &s.store.db;
    let org = alert.org_id.as_deref();
    let to = recipients(s, alert, cfg).await;
    if !to.is_empty() {
        if s.mailer.is_some() {
            if let Err(e) = outbox::enqueue(db, &alert.id, org, Channel::Email, &to).await {
                tracing::error!(error = %e, alert_id = %alert.id, "could not queue alert emails");
            }
        } else {
            // No relay configured: say so in the trail rather than pretend.
            let _ = alerts::record_response(
                db,
                org.and_then(|o| o.parse().ok()),
                &alert.id,
                "alert.notify",
                Outcome::Failure,
                serde_json::json!({"channel": "email", "recipients": to.len(), "error": "no SMTP relay configured"}),
            )
            .await;
        }
    }
    if let (Some(url), Some(_)) = (cfg.webhook_url.as_deref(), org) {
        if let Err(e) =
            outbox::enqueue(db, &alert.id, org, Channel::Webhook, &[url.to_string()]).await
        {
            tracing::error!(error = %e, alert_id = %alert.id, "could not queue the alert webhook");
        }
    }
}

/// How often the delivery loop looks for due notices.
const DELIVERY_TICK: Duration = Duration::from_secs(1);

/// Deliver queued alert notices on this node until the process ends: each
/// due notice is claimed, sent once, and then marked sent or scheduled
/// again (`alert_retry_seconds`, doubling); the final outcome is audited.
pub fn start_deliveries(state: AppState) {
    tokio::spawn(async move {
        // Only what this node can send: a node without a relay leaves
        // email to the others instead of using up its tries.
        let channels: Vec<Channel> = if state.mailer.is_some() {
            vec![Channel::Email, Channel::Webhook]
        } else {
            vec![Channel::Webhook]
        };
        let mut purged_at: Option<Instant> = None;
        loop {
            if purged_at.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
                purged_at = Some(Instant::now());
                if let Err(e) = outbox::purge_finished(&state.store.db).await {
                    tracing::warn!(error = %e, "old alert notices could not be removed");
                }
            }
            match outbox::claim_next(&state.store.db, &channels).await {
                Ok(Some(d)) => deliver(&state, d).await,
                Ok(None) => tokio::time::sleep(DELIVERY_TICK).await,
                Err(e) => {
                    tracing::warn!(error = %e, "alert notices could not be read");
                    tokio::time::sleep(DELIVERY_TICK).await;
                }
            }
        }
    });
}

/// How often delivered and given-up notices older than 30 days are removed.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Send one notice once, and record what came of it.
async fn deliver(s: &AppState, d: Delivery) {
    let db = &s.store.db;
    let result = match alerts::get(db, &d.alert_id).await {
        Ok(alert) => send_once(s, &d, &alert).await,
        Err(e) => Err(format!("alert {}: {e}", d.alert_id)),
    };
    let org = d.org_id.as_deref().and_then(|o| o.parse().ok());
    let tries = d.attempts + 1;
    let given_up = match &result {
        Ok(()) => {
            match outbox::finish(db, &d, true).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(delivery = %d.id, "a notice was taken over by another node while it was sent")
                }
                Err(e) => {
                    tracing::error!(error = %e, delivery = %d.id, "could not mark a notice sent")
                }
            }
            false
        }
        Err(e) => {
            // The details stay in the server log: the trail is readable by
            // the organization's admins, who must not learn what lies
            // inside the network.
            tracing::warn!(error = %e, alert_id = %d.alert_id, channel = d.channel.as_str(), tries, "alert notice failed");
            match outbox::retry_later(db, &d, s.config.alert_retry_seconds).await {
                Ok(again) => !again,
                Err(e) => {
                    tracing::error!(error = %e, delivery = %d.id, "could not schedule a notice");
                    false
                }
            }
        }
    };
    if result.is_ok() || given_up {
        let _ = alerts::record_response(
            db,
            org,
            &d.alert_id,
            "alert.notify",
            if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            serde_json::json!({
                "channel": d.channel.as_str(),
                "tries": tries,
                "error": result.err().map(|_| "delivery failed (see the server log)"),
            }),
        )
        .await;
    }
}

async fn send_once(s: &AppState, d: &Delivery, alert: &Alert) -> Result<(), String> {
    match d.channel {
        Channel::Email => {
            let Some(mailer) = &s.mailer else {
                return Err("no SMTP relay configured".into());
            };
            let (subject, body) = crate::notices::alert_message(s, alert);
            mailer.deliver(&d.target, &subject, body).await
        }
        Channel::Webhook => {
            let org = d
                .org_id
                .as_deref()
                .and_then(|o| o.parse().ok())
                .ok_or("a webhook without an organization")?;
            match detection::webhook_secret(&s.store.db, &s.store.keys, org).await {
                Ok(Some(secret)) => {
                    post_webhook(&d.target, &secret, alert, s.config.webhook_allow_private).await
                }
                Ok(None) => Err("no webhook secret".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// `Kura-Signature: t=UNIX,v1=HEX(HMAC-SHA256(secret, "UNIX.BODY"))`; the
/// timestamp lets receivers refuse replays.
pub fn signature(secret: &[u8], unix: i64, body: &[u8]) -> Result<String, String> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "t={unix},v1={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// Where a webhook may go: public addresses only, unless the operator
/// allows private ones (`webhook_allow_private`). The address checked is the
/// address connected to (the client is pinned to it: no DNS rebinding).
async fn webhook_target(
    url: &str,
    allow_private: bool,
) -> Result<(String, std::net::SocketAddr), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("no host")?.to_string();
    let port = parsed.port_or_known_default().ok_or("no port")?;
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the host has no address")?;
    if !allow_private && !is_public(addr.ip()) {
        return Err(format!("{host} is not a public address ({})", addr.ip()));
    }
    Ok((bare, addr))
}

fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v) => {
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_documentation()
                || v.octets()[0] == 100 && (v.octets()[1] & 0xc0) == 64) // CGNAT 100.64/10
        }
        std::net::IpAddr::V6(v) => {
            let s = v.segments();
            !(v.is_loopback()
                || v.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || v.to_ipv4_mapped().is_some_and(|m| !is_public(m.into())))
        }
    }
}

async fn post_webhook(
    url: &str,
    secret: &[u8],
    alert: &Alert,
    allow_private: bool,
) -> Result<(), String> {
    let body = serde_json::to_vec(&serde_json::json!({"type": "kura.alert", "alert": alert}))
        .map_err(|e| e.to_string())?;
    let unix = kura_store::time::now_micros() / 1_000_000;
    let (host, addr) = webhook_target(url, allow_private).await?;
    let client = reqwest::Client::builder()
        .resolve(&host, addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    // One try: the delivery loop keeps the notice and tries again later.
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("kura-signature", signature(secret, unix, &body)?)
        .header("kura-alert-id", &alert.id)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn private_destinations_are_refused() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!super::is_public(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "2001:4860::8888"] {
            assert!(super::is_public(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn signature_matches_a_known_hmac() {
        // HMAC-SHA256("key", "1.{}") computed with Python's hmac module.
        assert_eq!(
            super::signature(b"key", 1, b"{}").as_deref(),
            Ok("t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224")
        );
    }
}
