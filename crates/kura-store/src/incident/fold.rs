//! Folding the subject's events into per-organization totals. Rows arrive
//! borrowed from whichever driver read them, and a map key is allocated only
//! the first time an object is seen: a report over millions of events costs
//! memory and allocations per object touched, not per event.

use super::{is_change, FileRead, OrgAcc, ProjectAcc, Span, Touched};
use ipnet::IpNet;

/// The columns of one event that the report reads.
pub(super) struct EventRow<'a> {
    pub ts: i64,
    pub org_id: Option<&'a str>,
    pub project_id: Option<&'a str>,
    pub node_id: Option<&'a str>,
    pub version_id: Option<&'a str>,
    pub object_name: Option<&'a str>,
    pub action: &'a str,
    pub outcome: &'a str,
    pub bytes: Option<i64>,
    pub ip: Option<&'a str>,
}

/// The report's totals so far.
pub(super) struct Fold {
    /// Only events from an address inside this range count (when the query
    /// could only narrow the scan, not decide it).
    cidr: Option<IpNet>,
    pub orgs: Map<OrgAcc>,
    pub matched: u64,
    /// Scratch space for two-part keys, reused for every event.
    key: String,
}

/// The key of a pair: the parts joined by NUL, which sorts below any other
/// character, so keys sort as the pairs do.
fn pair_key<'k>(buf: &'k mut String, a: &str, b: Option<&str>) -> &'k str {
    buf.clear();
    buf.push_str(a);
    buf.push('\0');
    buf.push_str(b.unwrap_or_default());
    buf
}

/// A map from ids and actions, looked up by the borrowed key so that only a
/// new entry allocates (`entry_ref`); sorted when the report is built.
pub(super) type Map<V> = hashbrown::HashMap<String, V>;

/// Keep the name an object had at its earliest event in the report, whatever
/// order the rows arrive in.
fn note_name(name: &mut String, first_micros: i64, seen: u64, ts: i64, now: &str) {
    if (seen == 0 || ts < first_micros) && name != now {
        name.clear();
        name.push_str(now);
    }
}

impl Fold {
    pub fn new(cidr: Option<IpNet>) -> Self {
        Self {
            cidr,
            orgs: Map::new(),
            matched: 0,
            key: String::new(),
        }
    }

    pub fn add(&mut self, r: &EventRow<'_>) {
        if let Some(net) = &self.cidr {
            let inside =
                r.ip.and_then(|i| i.parse::<std::net::IpAddr>().ok())
                    .is_some_and(|i| net.contains(&i));
            if !inside {
                return;
            }
        }
        let Some(org) = r.org_id else {
            return;
        };
        self.matched += 1;
        let acc = self.orgs.entry_ref(org).or_default();
        if r.outcome != "success" {
            acc.denied += 1;
            return;
        }
        acc.span.add(r.ts);
        let name = r.object_name.unwrap_or_default();
        let Some(project) = r.project_id else {
            let new = || Touched {
                action: r.action.to_owned(),
                node_id: None,
                name: String::new(),
                span: Default::default(),
            };
            acc.other
                .entry_ref(r.action)
                .or_insert_with(new)
                .span
                .add(r.ts);
            return;
        };
        let p = acc.projects.entry_ref(project).or_default();
        p.span.add(r.ts);
        if crate::detect::is_read(r.action) {
            let bytes = r.bytes.unwrap_or(0).max(0);
            let new = || FileRead {
                node_id: r.node_id.unwrap_or_default().to_owned(),
                name: String::new(),
                version_id: r.version_id.map(str::to_owned),
                downloads: 0,
                previews: 0,
                bytes_served: 0,
                span: Default::default(),
            };
            let key = pair_key(&mut self.key, r.node_id.unwrap_or_default(), r.version_id);
            let fr = p.reads.entry_ref(key).or_insert_with(new);
            note_name(
                &mut fr.name,
                fr.span.first_micros,
                fr.span.count,
                r.ts,
                name,
            );
            if r.action == "file.preview" {
                fr.previews += 1;
            } else {
                fr.downloads += 1;
            }
            fr.bytes_served += bytes;
            fr.span.add(r.ts);
            p.bytes += bytes;
            acc.bytes += bytes;
        } else {
            let target = if is_change(r.action) {
                &mut p.changed
            } else {
                &mut p.listed
            };
            let new = || Touched {
                action: r.action.to_owned(),
                node_id: r.node_id.map(str::to_owned),
                name: String::new(),
                span: Default::default(),
            };
            let key = pair_key(&mut self.key, r.action, r.node_id);
            let t = target.entry_ref(key).or_insert_with(new);
            note_name(&mut t.name, t.span.first_micros, t.span.count, r.ts, name);
            t.span.add(r.ts);
        }
    }
}

/// Totals of two disjoint sets of events, added up: the report is folded in
/// parallel slices and the slices merged.
pub(super) trait Merge {
    fn merge(&mut self, other: Self);
}

impl Merge for Span {
    fn merge(&mut self, o: Span) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 || o.first_micros < self.first_micros {
            self.first_micros = o.first_micros;
        }
        self.last_micros = self.last_micros.max(o.last_micros);
        self.count += o.count;
    }
}

/// The name at the earliest event wins, as when one fold sees both.
fn earlier_name(name: &mut String, span: &Span, o_name: String, o_span: &Span) {
    if o_span.count > 0 && (span.count == 0 || o_span.first_micros < span.first_micros) {
        *name = o_name;
    }
}

impl Merge for Touched {
    fn merge(&mut self, o: Touched) {
        earlier_name(&mut self.name, &self.span, o.name, &o.span);
        self.span.merge(o.span);
    }
}

impl Merge for FileRead {
    fn merge(&mut self, o: FileRead) {
        earlier_name(&mut self.name, &self.span, o.name, &o.span);
        self.downloads += o.downloads;
        self.previews += o.previews;
        self.bytes_served += o.bytes_served;
        self.span.merge(o.span);
    }
}

impl<V: Merge> Merge for Map<V> {
    fn merge(&mut self, other: Map<V>) {
        for (k, v) in other {
            match self.entry(k) {
                hashbrown::hash_map::Entry::Occupied(e) => e.into_mut().merge(v),
                hashbrown::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
    }
}

impl Merge for ProjectAcc {
    fn merge(&mut self, o: ProjectAcc) {
        self.listed.merge(o.listed);
        self.reads.merge(o.reads);
        self.changed.merge(o.changed);
        self.bytes += o.bytes;
        self.span.merge(o.span);
    }
}

impl Merge for OrgAcc {
    fn merge(&mut self, o: OrgAcc) {
        self.projects.merge(o.projects);
        self.other.merge(o.other);
        self.denied += o.denied;
        self.bytes += o.bytes;
        self.span.merge(o.span);
    }
}

impl Merge for Fold {
    fn merge(&mut self, o: Fold) {
        self.orgs.merge(o.orgs);
        self.matched += o.matched;
    }
}

/// Every total of a fold as sorted lines, for comparing two folds in tests.
#[cfg(test)]
pub(super) fn summary(f: &Fold) -> Vec<String> {
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    let mut out = vec![format!("matched {}", f.matched)];
    for (org, acc) in &f.orgs {
        out.push(format!(
            "{org} denied {} bytes {} {:?}",
            acc.denied, acc.bytes, acc.span
        ));
        for (k, t) in &acc.other {
            out.push(format!("{org} other {k} {}", json(t)));
        }
        for (pid, p) in &acc.projects {
            out.push(format!("{org} {pid} bytes {} {:?}", p.bytes, p.span));
            for (kind, m) in [("listed", &p.listed), ("changed", &p.changed)] {
                for (k, t) in m {
                    out.push(format!("{org} {pid} {kind} {k:?} {}", json(t)));
                }
            }
            for (k, r) in &p.reads {
                out.push(format!("{org} {pid} read {k:?} {}", json(r)));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of three organizations: reads of files and versions,
    /// listings, changes, organization-level events, refusals, renames.
    fn events() -> Vec<(i64, [Option<String>; 6], &'static str, &'static str)> {
        (0..600i64)
            .map(|i| {
                let org = format!("org-{}", i % 3);
                let project = (i % 5 != 0).then(|| format!("project-{}", i % 4));
                let node = Some(format!("node-{}", i % 17));
                let version = (i % 2 == 0).then(|| format!("version-{}", i % 3));
                let name = Some(format!("name-{}", i % 7));
                let ip = Some(format!("10.0.{}.{}", i % 3, i % 250));
                let action = [
                    "file.download",
                    "file.preview",
                    "folder.list",
                    "node.rename",
                ][usize::try_from(i % 4).unwrap_or(0)];
                let outcome = if i % 11 == 0 { "denied" } else { "success" };
                // Out of order in time, as parallel slices may meet them.
                (
                    1_000_000 + (i * 7919) % 600,
                    [Some(org), project, node, version, name, ip],
                    action,
                    outcome,
                )
            })
            .collect()
    }

    fn fold(
        evs: &[(i64, [Option<String>; 6], &'static str, &'static str)],
        cidr: Option<IpNet>,
    ) -> Fold {
        let mut f = Fold::new(cidr);
        for (ts, [org, project, node, version, name, ip], action, outcome) in evs {
            f.add(&EventRow {
                ts: *ts,
                org_id: org.as_deref(),
                project_id: project.as_deref(),
                node_id: node.as_deref(),
                version_id: version.as_deref(),
                object_name: name.as_deref(),
                action,
                outcome,
                bytes: Some(100),
                ip: ip.as_deref(),
            });
        }
        f
    }

    #[test]
    fn merged_slices_total_what_one_fold_totals() {
        let evs = events();
        let whole = fold(&evs, None);
        for cut in [1, 250, 599] {
            let mut merged = fold(&evs[..cut], None);
            merged.merge(fold(&evs[cut..], None));
            assert_eq!(summary(&merged), summary(&whole), "cut at {cut}");
        }
        // The name an object had at its earliest event wins, whatever the order.
        let mut reversed = evs.clone();
        reversed.reverse();
        assert_eq!(summary(&fold(&reversed, None)), summary(&whole));
        assert_eq!(whole.matched, 600);
    }

    #[test]
    fn only_addresses_inside_the_range_count() {
        let evs = events();
        let net: IpNet = "10.0.1.0/24".parse().expect("net");
        let f = fold(&evs, Some(net));
        assert_eq!(f.matched, 200);
    }
}
