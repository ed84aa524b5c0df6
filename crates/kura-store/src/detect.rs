//! The detection rules, evaluated over committed audit events in order.
//! This part is pure: the caller feeds events with the rules of the
//! organizations they concern, the canary set and first-access times, and
//! gets back the alerts to raise. State is sliding windows in memory.

use crate::alerts::NewAlert;
use crate::chain::Record;
use crate::detection::{Containment, DetectionConfig, VolumeRule};
use std::collections::{HashMap, VecDeque};

const MICROS_PER_MIN: i64 = 60_000_000;
/// A project counts as new to an actor for this long after their first access.
const NEW_PROJECT_MICROS: i64 = 24 * 60 * MICROS_PER_MIN;
/// One off-hours alert per actor and organization per this period.
const OFF_HOURS_QUIET_MICROS: i64 = 8 * 60 * MICROS_PER_MIN;

/// What a rule found: the alert to store and the containment to apply.
#[derive(Debug, Clone)]
pub struct Finding {
    pub alert: NewAlert,
    pub contain: Containment,
}

/// Lookups the caller provides for one batch.
pub struct Inputs<'a> {
    pub configs: &'a HashMap<String, DetectionConfig>,
    /// Canary file id → owning organization.
    pub canaries: &'a HashMap<String, String>,
    /// (actor, project) → time of the actor's first event in the project.
    pub first_access: &'a HashMap<(String, String), i64>,
}

#[derive(Default)]
struct Window {
    items: VecDeque<(i64, Option<String>, i64, i64)>,
    bytes: i64,
    nodes: HashMap<String, u32>,
}

impl Window {
    fn push(&mut self, ts: i64, node: Option<&str>, bytes: i64, id: i64, span_micros: i64) {
        self.items
            .push_back((ts, node.map(str::to_string), bytes, id));
        self.bytes += bytes;
        if let Some(n) = node {
            *self.nodes.entry(n.to_string()).or_default() += 1;
        }
        while let Some((t, _, _, _)) = self.items.front() {
            if *t > ts - span_micros {
                break;
            }
            if let Some((_, n, b, _)) = self.items.pop_front() {
                self.bytes -= b;
                if let Some(n) = n {
                    if let Some(c) = self.nodes.get_mut(&n) {
                        *c -= 1;
                        if *c == 0 {
                            self.nodes.remove(&n);
                        }
                    }
                }
            }
        }
    }
    fn first_id(&self) -> i64 {
        self.items.front().map_or(0, |i| i.3)
    }
}

#[derive(Default)]
pub struct Detector {
    windows: HashMap<(&'static str, String), Window>,
    quiet_until: HashMap<(&'static str, String), i64>,
}

pub fn is_read(action: &str) -> bool {
    matches!(action, "file.download" | "file.preview")
}

fn is_listing(action: &str) -> bool {
    matches!(action, "folder.list" | "project.list" | "trash.list")
}

fn is_data_access(action: &str) -> bool {
    ["file.", "folder.", "node.", "project.", "member.", "trash."]
        .iter()
        .any(|p| action.starts_with(p))
}

fn mib(b: i64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

impl Detector {
    /// Forget windows with nothing newer than a day before `now` and quiet
    /// periods that are over (bounded memory however many actors there are).
    pub fn prune(&mut self, now: i64) {
        let horizon = now - NEW_PROJECT_MICROS;
        self.windows
            .retain(|_, w| w.items.back().is_some_and(|i| i.0 > horizon));
        self.quiet_until.retain(|_, until| *until > now);
    }

    /// Pairs (actor, project) whose first access the caller must look up.
    pub fn pair_of(r: &Record) -> Option<(String, String)> {
        if is_read(&r.action) && r.outcome == "success" {
            Some((r.actor_user_id.clone()?, r.project_id.clone()?))
        } else {
            None
        }
    }

    /// Add a read to a volume rule's window; the files, bytes and first
    /// event id when it crosses a threshold (and was not quiet).
    fn volume(
        &mut self,
        name: &'static str,
        key: String,
        rule: &VolumeRule,
        r: &Record,
        bytes: i64,
    ) -> Option<(usize, i64, i64)> {
        let span = i64::from(rule.minutes) * MICROS_PER_MIN;
        let w = self.windows.entry((name, key.clone())).or_default();
        w.push(r.ts, r.node_id.as_deref(), bytes, r.id, span);
        let found = (w.nodes.len(), w.bytes, w.first_id());
        let over = found.0 > rule.files as usize
            || found.1 > i64::try_from(rule.bytes).unwrap_or(i64::MAX);
        (over && !self.quiet(name, &key, r.ts, span)).then_some(found)
    }

    fn quiet(&mut self, rule: &'static str, key: &str, ts: i64, for_micros: i64) -> bool {
        let k = (rule, key.to_string());
        if self.quiet_until.get(&k).is_some_and(|u| *u > ts) {
            return true;
        }
        self.quiet_until.insert(k, ts + for_micros);
        false
    }

    /// Evaluate one committed event.
    pub fn process(&mut self, r: &Record, inp: &Inputs<'_>) -> Vec<Finding> {
        let mut out = Vec::new();
        // The detector's own records and platform-operator actions are not evidence.
        if r.action.starts_with("alert.") || r.credential.as_deref() == Some("detector") {
            return out;
        }
        let default = DetectionConfig::default();
        let cfg = r
            .org_id
            .as_ref()
            .and_then(|o| inp.configs.get(o))
            .unwrap_or(&default);
        let org = r.org_id.clone().unwrap_or_default();
        let actor = r.actor_user_id.clone();
        let success = r.outcome == "success";
        let new = |rule: &'static str,
                   severity: &'static str,
                   contain: Containment,
                   summary: String,
                   detail: serde_json::Value,
                   first: i64| Finding {
            alert: NewAlert {
                org_id: r.org_id.as_deref().and_then(|o| o.parse().ok()),
                rule,
                severity,
                actor_user_id: r.actor_user_id.as_deref().and_then(|u| u.parse().ok()),
                credential: r.credential.clone(),
                ip: r.ip.clone(),
                project_id: r.project_id.as_deref().and_then(|p| p.parse().ok()),
                summary,
                detail,
                containment: contain.as_str(),
                first_event_id: first,
                last_event_id: r.id,
            },
            contain,
        };

        // Canary: any read, at once; a copy of it too (the copy would
        // otherwise be read unnoticed).
        let canary_source = if r.action == "node.copy" {
            r.detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|d| d["source_id"].as_str().map(str::to_string))
        } else {
            None
        };
        if success && (is_read(&r.action) || canary_source.is_some()) && cfg.canary.enabled {
            let node = canary_source.as_deref().or(r.node_id.as_deref());
            if let (Some(node), Some(a)) = (node, actor.as_deref()) {
                if inp.canaries.contains_key(node)
                    && !self.quiet("canary", &format!("{a}/{node}"), r.ts, 10 * MICROS_PER_MIN)
                {
                    out.push(new(
                        "canary",
                        "critical",
                        cfg.canary.contain,
                        format!("canary file \"{}\" was read", r.object_name.as_deref().unwrap_or("")),
                        serde_json::json!({"node_id": node, "version_id": r.version_id, "action": r.action, "bytes": r.bytes}),
                        r.id,
                    ));
                }
            }
        }

        if let Some(a) = actor.as_deref() {
            // Bulk download by one actor across the organization's projects.
            if success && is_read(&r.action) {
                let bytes = r.bytes.unwrap_or(0).max(0);
                let rule = &cfg.bulk_download;
                if rule.enabled {
                    if let Some((files, total, first)) =
                        self.volume("bulk_download", format!("{org}/{a}"), rule, r, bytes)
                    {
                        out.push(new(
                            "bulk_download",
                            "high",
                            rule.contain,
                            format!("{files} files ({}) downloaded within {} minutes", mib(total), rule.minutes),
                            serde_json::json!({"files": files, "bytes": total, "minutes": rule.minutes}),
                            first,
                        ));
                    }
                }
                // Bulk pattern in a project new to the actor.
                let rule = &cfg.new_project_bulk;
                if let (true, Some(p)) = (rule.enabled, r.project_id.as_deref()) {
                    let first_access = inp
                        .first_access
                        .get(&(a.to_string(), p.to_string()))
                        .copied()
                        .unwrap_or(r.ts);
                    if first_access > r.ts - NEW_PROJECT_MICROS {
                        if let Some((files, total, first)) = self.volume(
                            "new_project_bulk",
                            format!("{org}/{a}/{p}"),
                            rule,
                            r,
                            bytes,
                        ) {
                            out.push(new(
                                "new_project_bulk",
                                "high",
                                rule.contain,
                                format!("{files} files ({}) downloaded within {} minutes from a project first used {} minutes ago", mib(total), rule.minutes, (r.ts - first_access) / MICROS_PER_MIN),
                                serde_json::json!({"files": files, "bytes": total, "minutes": rule.minutes, "first_access_micros": first_access}),
                                first,
                            ));
                        }
                    }
                }
            }
            // Enumeration: many listings quickly.
            let rule = &cfg.enumeration;
            if success && rule.enabled && is_listing(&r.action) {
                let key = format!("{org}/{a}");
                let span = i64::from(rule.minutes) * MICROS_PER_MIN;
                let w = self
                    .windows
                    .entry(("enumeration", key.clone()))
                    .or_default();
                w.push(r.ts, None, 0, r.id, span);
                let (n, first) = (w.items.len(), w.first_id());
                if n > rule.count as usize && !self.quiet("enumeration", &key, r.ts, span) {
                    out.push(new(
                        "enumeration",
                        "medium",
                        rule.contain,
                        format!(
                            "{n} folder and project listings within {} minutes",
                            rule.minutes
                        ),
                        serde_json::json!({"listings": n, "minutes": rule.minutes}),
                        first,
                    ));
                }
            }
            // Access outside working hours.
            let rule = &cfg.off_hours;
            if success
                && rule.enabled
                && r.org_id.is_some()
                && is_data_access(&r.action)
                && outside_hours(rule, r.ts)
                && !self.quiet(
                    "off_hours",
                    &format!("{org}/{a}"),
                    r.ts,
                    OFF_HOURS_QUIET_MICROS,
                )
            {
                out.push(new(
                    "off_hours",
                    "low",
                    rule.contain,
                    format!(
                        "access outside working hours ({}:00-{}:00 {})",
                        rule.start_hour, rule.end_hour, rule.time_zone
                    ),
                    serde_json::json!({"action": r.action}),
                    r.id,
                ));
            }
            // A sign-in from a network and device never seen for the user.
            if r.action == "auth.new_device" && cfg.new_network.enabled {
                out.push(new(
                    "new_network",
                    "medium",
                    cfg.new_network.contain,
                    format!(
                        "sign-in from a new network or device ({})",
                        r.ip.as_deref().unwrap_or("?")
                    ),
                    r.detail
                        .as_deref()
                        .and_then(|d| serde_json::from_str(d).ok())
                        .unwrap_or_default(),
                    r.id,
                ));
            }
        }

        // Bursts of failed sign-ins against the organization's accounts.
        let rule = &cfg.failed_signins;
        // Refusals by a kill switch are the operator's doing, not an attack.
        let by_switch = r.detail.as_deref().is_some_and(|d| {
            d.contains("platform_suspended") || d.contains("password_reset_required")
        });
        if rule.enabled
            && matches!(
                r.action.as_str(),
                "auth.login" | "auth.mfa" | "auth.step_up"
            )
            && !success
            && !by_switch
        {
            let span = i64::from(rule.minutes) * MICROS_PER_MIN;
            let w = self
                .windows
                .entry(("failed_signins", org.clone()))
                .or_default();
            w.push(r.ts, None, 0, r.id, span);
            let (n, first) = (w.items.len(), w.first_id());
            if n > rule.count as usize && !self.quiet("failed_signins", &org, r.ts, span) {
                let mut f = new(
                    "failed_signins",
                    "medium",
                    Containment::None,
                    format!("{n} failed sign-ins within {} minutes", rule.minutes),
                    serde_json::json!({"failures": n, "minutes": rule.minutes, "last_ip": r.ip}),
                    first,
                );
                // The burst is about the organization, not one account.
                f.alert.actor_user_id = None;
                f.alert.credential = None;
                out.push(f);
            }
        }
        out
    }
}

fn outside_hours(rule: &crate::detection::HoursRule, ts: i64) -> bool {
    let Ok(tz) = jiff::tz::TimeZone::get(&rule.time_zone) else {
        return false;
    };
    let Ok(t) = jiff::Timestamp::from_microsecond(ts) else {
        return false;
    };
    let z = t.to_zoned(tz);
    let hour = u8::try_from(z.hour()).unwrap_or(0);
    let weekend = matches!(
        z.weekday(),
        jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
    );
    if (rule.weekdays_only && weekend) || hour < rule.start_hour || hour >= rule.end_hour {
        return true;
    }
    if rule.holidays.is_empty() {
        return false;
    }
    let today = z.date().to_string();
    rule.holidays.binary_search(&today).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64, ts: i64, action: &str, node: &str, bytes: i64) -> Record {
        Record {
            id,
            ts,
            org_id: Some("org-a".into()),
            actor_user_id: Some("u1".into()),
            actor_org_id: Some("org-b".into()),
            credential: Some("session:s1".into()),
            ip: Some("198.51.100.7".into()),
            user_agent: None,
            request_id: None,
            action: action.into(),
            outcome: "success".into(),
            project_id: Some("p1".into()),
            node_id: Some(node.into()),
            version_id: None,
            object_name: Some(node.into()),
            bytes: Some(bytes),
            detail: None,
            chain_seq: None,
            chain_hash: None,
        }
    }

    fn inputs_with<'a>(
        configs: &'a HashMap<String, DetectionConfig>,
        canaries: &'a HashMap<String, String>,
        first: &'a HashMap<(String, String), i64>,
    ) -> Inputs<'a> {
        Inputs {
            configs,
            canaries,
            first_access: first,
        }
    }

    #[test]
    fn bulk_fires_once_above_threshold_and_repeat_reads_of_one_file_do_not_count() {
        let mut cfg = DetectionConfig::default();
        cfg.bulk_download.files = 5;
        cfg.new_project_bulk.enabled = false;
        cfg.off_hours.enabled = false;
        let configs = HashMap::from([("org-a".to_string(), cfg)]);
        let (c, f) = (HashMap::new(), HashMap::new());
        let inp = inputs_with(&configs, &c, &f);
        let mut d = Detector::default();
        let t0 = 1_800_000_000_000_000;
        // One file read 20 times (ranges): no alert.
        for i in 0..20 {
            assert!(d
                .process(&ev(i, t0 + i, "file.download", "n0", 10), &inp)
                .is_empty());
        }
        let mut fired = Vec::new();
        for i in 1..12 {
            fired.extend(d.process(
                &ev(100 + i, t0 + 100 + i, "file.download", &format!("n{i}"), 10),
                &inp,
            ));
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].alert.rule, "bulk_download");
        assert_eq!(fired[0].contain, Containment::EndSessions);
        // Outside the window, the count starts again.
        let later = t0 + 11 * MICROS_PER_MIN;
        assert!(d
            .process(&ev(500, later, "file.download", "x", 1), &inp)
            .is_empty());
    }

    #[test]
    fn canary_read_alerts_at_once_but_listing_does_not() {
        let configs = HashMap::new();
        let canaries = HashMap::from([("bait".to_string(), "org-a".to_string())]);
        let f = HashMap::new();
        let inp = inputs_with(&configs, &canaries, &f);
        let mut d = Detector::default();
        assert!(d
            .process(&ev(1, 1, "folder.list", "bait", 0), &inp)
            .iter()
            .all(|f| f.alert.rule != "canary"));
        let got = d.process(&ev(2, 2, "file.download", "bait", 5), &inp);
        assert!(got
            .iter()
            .any(|f| f.alert.rule == "canary" && f.alert.severity == "critical"));
    }

    #[test]
    fn off_hours_in_the_organizations_zone() {
        let mut rule = DetectionConfig::default().off_hours;
        rule.time_zone = "Asia/Tokyo".into();
        // 2026-11-26 (Thursday) 03:00 UTC = 12:00 in Tokyo: working hours.
        let noon_tokyo = 1_795_662_000_000_000;
        assert!(!outside_hours(&rule, noon_tokyo));
        // 15:00 UTC = 00:00 in Tokyo.
        assert!(outside_hours(&rule, noon_tokyo + 12 * 60 * MICROS_PER_MIN));
        // Holidays, alone: every hour of every day is a working hour here.
        rule.start_hour = 0;
        rule.end_hour = 24;
        rule.weekdays_only = false;
        assert!(!outside_hours(&rule, noon_tokyo));
        rule.holidays = vec!["2026-11-03".into(), "2026-11-26".into()];
        assert!(outside_hours(&rule, noon_tokyo));
        // The date counts in Tokyo: 16:00 UTC on the 25th is already 01:00
        // on the 26th there, 14:00 UTC is still 23:00 on the 25th.
        let hour = 60 * MICROS_PER_MIN;
        assert!(outside_hours(&rule, noon_tokyo - 11 * hour));
        assert!(!outside_hours(&rule, noon_tokyo - 13 * hour));
        assert!(!outside_hours(&rule, noon_tokyo + 24 * hour));
    }
}
