//! The scope report: everything one account, address, session or token
//! touched, per organization, from the audit trail; and which organizations
//! it did not touch at all, so that they can be told quickly.

use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use futures_util::TryStreamExt;
use ipnet::IpNet;
use kura_core::{OrgAction, OrgGrant, OrgId, PlatformGrant, UserId};
use serde::Serialize;
use std::collections::HashMap;

mod fold;
mod scan;

use fold::{EventRow, Fold, Map};

/// A map's entries in key order.
fn sorted<V>(m: Map<V>) -> impl Iterator<Item = (String, V)> {
    let mut v: Vec<(String, V)> = m.into_iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v.into_iter()
}

/// A map's values in key order.
fn sorted_values<V>(m: Map<V>) -> Vec<V> {
    sorted(m).map(|(_, v)| v).collect()
}

/// Whose traces to follow.
#[derive(Clone, Debug)]
pub enum Subject {
    Actor(UserId),
    Ip(IpNet),
    Session(String),
    Token(String),
}

impl Subject {
    /// `actor:ID`, `ip:CIDR`, `session:ID` or `token:ID` (also the CLI's form).
    pub fn describe(&self) -> String {
        match self {
            Self::Actor(u) => format!("actor {u}"),
            Self::Ip(n) => format!("ip {n}"),
            Self::Session(s) => format!("session {s}"),
            Self::Token(t) => format!("token {t}"),
        }
    }

    pub fn parse_ip(s: &str) -> Result<IpNet> {
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| StoreError::Invalid("ip must be an address or a CIDR range".into()))
    }

    fn valid_id(s: &str) -> Result<String> {
        uuid::Uuid::parse_str(s)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| StoreError::Invalid("session and token ids are UUIDs".into()))
    }
}

/// Who may see what: an organization admin only their organization.
pub enum ScopeView<'a> {
    Org(&'a OrgGrant),
    Platform(&'a PlatformGrant),
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Span {
    pub count: u64,
    pub first_micros: i64,
    pub last_micros: i64,
}

impl Span {
    fn add(&mut self, ts: i64) {
        if self.count == 0 || ts < self.first_micros {
            self.first_micros = ts;
        }
        self.last_micros = self.last_micros.max(ts);
        self.count += 1;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileRead {
    pub node_id: String,
    pub name: String,
    pub version_id: Option<String>,
    pub downloads: u64,
    pub previews: u64,
    pub bytes_served: i64,
    #[serde(flatten)]
    pub span: Span,
}

#[derive(Debug, Clone, Serialize)]
pub struct Touched {
    pub action: String,
    pub node_id: Option<String>,
    pub name: String,
    #[serde(flatten)]
    pub span: Span,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectScope {
    pub project_id: String,
    pub name: String,
    /// Folders listed and objects viewed (metadata reads).
    pub listed: Vec<Touched>,
    /// Files and versions viewed or downloaded, with bytes served.
    pub files_read: Vec<FileRead>,
    /// Objects changed or shared (uploads, renames, moves, trash, members).
    pub changed: Vec<Touched>,
    pub bytes_served: i64,
    #[serde(flatten)]
    pub span: Span,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrgRef {
    pub org_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrgScope {
    pub org_id: String,
    pub name: String,
    pub projects: Vec<ProjectScope>,
    /// Organization-level events (sign-ins, project lists, admin actions).
    pub other: Vec<Touched>,
    /// Refused attempts (not access, but evidence of intent).
    pub denied_attempts: u64,
    pub bytes_served: i64,
    #[serde(flatten)]
    pub span: Span,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub subject: String,
    pub from_micros: Option<i64>,
    pub to_micros: Option<i64>,
    pub generated_micros: i64,
    pub events_matched: u64,
    pub affected: Vec<OrgScope>,
    /// Organizations in view with no event of the subject in the period.
    pub unaffected: Vec<OrgRef>,
}

fn is_change(action: &str) -> bool {
    matches!(
        action,
        "file.upload"
            | "file.upload_version"
            | "file.restore_version"
            | "folder.create"
            | "node.rename"
            | "node.move"
            | "node.copy"
            | "node.trash"
            | "node.restore"
            | "node.purge"
            | "member.add"
            | "member.remove"
            | "member.role_change"
            | "project.rename"
            | "project.create"
    )
}

#[derive(Default)]
struct ProjectAcc {
    /// By action and node.
    listed: Map<Touched>,
    /// By node and version.
    reads: Map<FileRead>,
    /// By action and node.
    changed: Map<Touched>,
    bytes: i64,
    span: Span,
}

#[derive(Default)]
struct OrgAcc {
    projects: Map<ProjectAcc>,
    other: Map<Touched>,
    denied: u64,
    bytes: i64,
    span: Span,
}

/// Build the report. Events are streamed, so memory grows with the number
/// of distinct objects touched, not with the number of events.
pub async fn scope(
    db: &Db,
    view: ScopeView<'_>,
    subject: &Subject,
    from_micros: Option<i64>,
    to_micros: Option<i64>,
) -> Result<Report> {
    let only_org: Option<OrgId> = match view {
        ScopeView::Org(g) if g.action() == OrgAction::ReadAudit => Some(g.org_id()),
        ScopeView::Org(_) => return Err(StoreError::Denied(kura_core::Denied::Forbidden)),
        ScopeView::Platform(_) => None,
    };
    crate::audit::settle(db).await?;
    let cols_template = "SELECT ts, org_id, project_id, node_id, version_id, object_name, action, outcome, bytes, ip FROM audit_events {index} WHERE ";
    let (cond, key, cidr): (&str, String, Option<IpNet>) = match subject {
        Subject::Actor(u) => ("actor_user_id = $1", u.to_string(), None),
        Subject::Session(s) => (
            "credential = $1",
            format!("session:{}", Subject::valid_id(s)?),
            None,
        ),
        Subject::Token(t) => (
            "credential = $1",
            format!("token:{}", Subject::valid_id(t)?),
            None,
        ),
        Subject::Ip(net) if net.prefix_len() == net.max_prefix_len() => {
            ("ip = $1", net.addr().to_string(), None)
        }
        // An IPv4 range on SQLite: the addresses as stored text share the
        // prefix of the whole octets, so the index on ip narrows the scan to
        // that text range ('/' sorts right after '.' in SQLite's binary
        // collation; PostgreSQL's locale collations do not promise that);
        // the exact range is checked here unless the prefix is whole octets,
        // where the text range is the range (addresses are stored as Kura
        // parsed and printed them).
        Subject::Ip(IpNet::V4(net))
            if net.prefix_len() >= 8 && db.backend == crate::db::Backend::Sqlite =>
        {
            let octets = net.network().octets();
            let whole = usize::from(net.prefix_len() / 8);
            let prefix: String = octets[..whole].iter().map(|o| format!("{o}.")).collect();
            let exact = net.prefix_len() % 8 == 0;
            (
                "ip >= $1 AND ip < $5",
                prefix,
                (!exact).then_some(IpNet::V4(*net)),
            )
        }
        // Other ranges: the time window narrows the scan, the range is checked here.
        Subject::Ip(net) => ("$1 = $1 AND ip IS NOT NULL", String::new(), Some(*net)),
    };
    let upper = match key.strip_suffix('.') {
        Some(p) if cond.contains("$5") => format!("{p}/"),
        _ => String::new(),
    };
    // SQLite's planner, without statistics, prefers the time index for a
    // text range on ip; an address range of two octets or more is narrower.
    let index = match (subject, db.backend) {
        (Subject::Ip(IpNet::V4(n)), crate::db::Backend::Sqlite)
            if n.prefix_len() >= 16 && n.prefix_len() < 32 =>
        {
            "INDEXED BY audit_ip"
        }
        _ => "",
    };
    let cols = cols_template.replace("{index}", index);
    let sql = format!(
        "{cols}{cond} AND ts >= $2 AND ts < $3 AND ($4 IS NULL OR org_id = $4) AND ($5 = $5)"
    );
    let from = from_micros.unwrap_or(i64::MIN);
    let to = to_micros.unwrap_or(i64::MAX);
    let org_param = only_org.map(|o| o.to_string());
    let fold = if let Some(file) = db.sqlite_file.clone() {
        // SQLite: straight from its row buffers on blocking threads (the
        // async driver copies every column of every row into owned values).
        let params = scan::Params {
            key,
            from,
            to,
            org: org_param,
            upper,
        };
        scan::fold_parallel(file, sql, params, cidr).await?
    } else {
        let mut fold = Fold::new(cidr);
        let mut rows = sqlx::query(&sql)
            .bind(key)
            .bind(from)
            .bind(to)
            .bind(org_param)
            .bind(upper)
            .fetch(&db.read);
        while let Some(r) = rows.try_next().await? {
            let (org_id, project_id, node_id) = (
                r.opt_str("org_id")?,
                r.opt_str("project_id")?,
                r.opt_str("node_id")?,
            );
            let (version_id, object_name, ip) = (
                r.opt_str("version_id")?,
                r.opt_str("object_name")?,
                r.opt_str("ip")?,
            );
            let (action, outcome) = (r.str("action")?, r.str("outcome")?);
            fold.add(&EventRow {
                ts: r.int("ts")?,
                org_id: org_id.as_deref(),
                project_id: project_id.as_deref(),
                node_id: node_id.as_deref(),
                version_id: version_id.as_deref(),
                object_name: object_name.as_deref(),
                action: &action,
                outcome: &outcome,
                bytes: r.opt_int("bytes")?,
                ip: ip.as_deref(),
            });
        }
        fold
    };
    let (orgs, matched) = (fold.orgs, fold.matched);
    // Names of the organizations and projects in view.
    let org_rows = sqlx::query(
        "SELECT id, name FROM orgs WHERE is_platform = 0 AND ($1 IS NULL OR id = $1) ORDER BY name",
    )
    .bind(only_org.map(|o| o.to_string()))
    .fetch_all(&db.read)
    .await?;
    let mut org_names: Vec<(String, String)> = Vec::new();
    for r in &org_rows {
        org_names.push((r.str("id")?, r.str("name")?));
    }
    let mut project_names: HashMap<String, String> = HashMap::new();
    for (org, acc) in &orgs {
        if acc.projects.is_empty() {
            continue;
        }
        for r in sqlx::query("SELECT id, name FROM projects WHERE org_id = $1")
            .bind(org)
            .fetch_all(&db.read)
            .await?
        {
            project_names.insert(r.str("id")?, r.str("name")?);
        }
    }
    let name_of = |id: &str| {
        org_names
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let unaffected = org_names
        .iter()
        .filter(|(id, _)| !orgs.contains_key(id))
        .map(|(id, name)| OrgRef {
            org_id: id.clone(),
            name: name.clone(),
        })
        .collect();
    let affected = sorted(orgs)
        .map(|(org_id, acc)| OrgScope {
            name: name_of(&org_id),
            projects: sorted(acc.projects)
                .map(|(pid, p)| ProjectScope {
                    name: project_names.get(&pid).cloned().unwrap_or_default(),
                    project_id: pid,
                    listed: sorted_values(p.listed),
                    files_read: sorted_values(p.reads),
                    changed: sorted_values(p.changed),
                    bytes_served: p.bytes,
                    span: p.span,
                })
                .collect(),
            other: sorted_values(acc.other),
            denied_attempts: acc.denied,
            bytes_served: acc.bytes,
            span: acc.span,
            org_id,
        })
        .collect();
    Ok(Report {
        subject: subject.describe(),
        from_micros,
        to_micros,
        generated_micros: crate::time::now_micros(),
        events_matched: matched,
        affected,
        unaffected,
    })
}

/// Quote every field and neutralize spreadsheet formulas (CSV injection).
/// Every CSV Kura writes goes through this (scope reports, audit exports).
pub fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    format!("\"{}\"", v.replace('"', "\"\""))
}

impl Report {
    /// One row per object touched, and one per unaffected organization.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("org_id,org_name,project_id,project_name,kind,action,node_id,name,version_id,count,bytes_served,first,last\n");
        let t = crate::time::rfc3339;
        let mut row = |f: [&str; 13]| {
            out.push_str(&f.map(csv_field).join(","));
            out.push('\n');
        };
        for o in &self.affected {
            for p in &o.projects {
                for f in &p.files_read {
                    row([
                        &o.org_id,
                        &o.name,
                        &p.project_id,
                        &p.name,
                        "read",
                        if f.previews > 0 && f.downloads == 0 {
                            "file.preview"
                        } else {
                            "file.download"
                        },
                        &f.node_id,
                        &f.name,
                        f.version_id.as_deref().unwrap_or(""),
                        &(f.downloads + f.previews).to_string(),
                        &f.bytes_served.to_string(),
                        &t(f.span.first_micros),
                        &t(f.span.last_micros),
                    ]);
                }
                for (kind, list) in [("listed", &p.listed), ("changed", &p.changed)] {
                    for x in list {
                        row([
                            &o.org_id,
                            &o.name,
                            &p.project_id,
                            &p.name,
                            kind,
                            &x.action,
                            x.node_id.as_deref().unwrap_or(""),
                            &x.name,
                            "",
                            &x.span.count.to_string(),
                            "0",
                            &t(x.span.first_micros),
                            &t(x.span.last_micros),
                        ]);
                    }
                }
            }
            for x in &o.other {
                row([
                    &o.org_id,
                    &o.name,
                    "",
                    "",
                    "organization",
                    &x.action,
                    "",
                    "",
                    "",
                    &x.span.count.to_string(),
                    "0",
                    &t(x.span.first_micros),
                    &t(x.span.last_micros),
                ]);
            }
        }
        for u in &self.unaffected {
            row([
                &u.org_id,
                &u.name,
                "",
                "",
                "unaffected",
                "",
                "",
                "",
                "",
                "0",
                "0",
                "",
                "",
            ]);
        }
        out
    }
}

/// One row of the dashboard's "top downloaders".
#[derive(Debug, Clone, Serialize)]
pub struct Downloader {
    pub actor_user_id: String,
    pub files: i64,
    pub bytes: i64,
}

/// Who downloaded most since `since` (an organization's data, or all).
pub async fn top_downloaders(
    db: &Db,
    org: Option<OrgId>,
    since: i64,
    limit: i64,
) -> Result<Vec<Downloader>> {
    crate::audit::settle(db).await?;
    let rows = sqlx::query("SELECT actor_user_id, COUNT(DISTINCT node_id) AS files, COALESCE(SUM(bytes), 0) AS bytes FROM audit_events \
         WHERE ts >= $1 AND ($2 IS NULL OR org_id = $2) AND action IN ('file.download', 'file.preview') AND outcome = 'success' AND actor_user_id IS NOT NULL \
         GROUP BY actor_user_id ORDER BY bytes DESC, files DESC LIMIT $3")
        .bind(since)
        .bind(org.map(|o| o.to_string()))
        .bind(limit.clamp(1, 100))
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Downloader {
                actor_user_id: r.str("actor_user_id")?,
                files: r.int("files")?,
                bytes: r.int("bytes")?,
            })
        })
        .collect()
}

/// A failed sign-in step, for the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct FailedSignIn {
    pub ts: i64,
    pub email: String,
    pub ip: String,
    pub reason: String,
}

pub async fn failed_sign_ins(
    db: &Db,
    org: Option<OrgId>,
    since: i64,
    limit: i64,
) -> Result<Vec<FailedSignIn>> {
    crate::audit::settle(db).await?;
    let rows = sqlx::query("SELECT ts, object_name, ip, action, outcome, detail FROM audit_events \
         WHERE ts >= $1 AND ($2 IS NULL OR org_id = $2) AND action IN ('auth.login', 'auth.mfa', 'auth.step_up') AND outcome <> 'success' \
         ORDER BY id DESC LIMIT $3")
        .bind(since)
        .bind(org.map(|o| o.to_string()))
        .bind(limit.clamp(1, 200))
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            let detail: serde_json::Value = r
                .opt_str("detail")?
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_default();
            Ok(FailedSignIn {
                ts: r.int("ts")?,
                email: r.opt_str("object_name")?.unwrap_or_default(),
                ip: r.opt_str("ip")?.unwrap_or_default(),
                reason: format!(
                    "{} {}",
                    r.str("action")?,
                    detail["reason"].as_str().unwrap_or(&r.str("outcome")?)
                ),
            })
        })
        .collect()
}

/// What `kura audit verify` found last time (shown on the dashboard).
pub async fn record_verification(db: &Db, summary: &serde_json::Value) -> Result<()> {
    let old = crate::settings::get(db, "audit_last_verify").await?;
    if !crate::settings::compare_and_set(
        db,
        "audit_last_verify",
        old.as_deref(),
        &summary.to_string(),
    )
    .await?
    {
        return Err(StoreError::Conflict(
            "verification recorded concurrently".into(),
        ));
    }
    Ok(())
}

pub async fn last_verification(db: &Db) -> Result<Option<serde_json::Value>> {
    Ok(crate::settings::get(db, "audit_last_verify")
        .await?
        .and_then(|v| serde_json::from_str(&v).ok()))
}
