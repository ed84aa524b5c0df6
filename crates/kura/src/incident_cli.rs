//! `kura incident scope`: what one account, address, session or token
//! touched, per organization, and which organizations it did not touch.
//! The operator CLI sees every organization (`--org` narrows to one).

use crate::config::Config;
use crate::open;
use anyhow::{bail, Context, Result};
use kura_store::incident::{self, ScopeView, Subject};
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum IncidentCmd {
    /// Build a scope report (JSON, CSV or HTML)
    Scope {
        /// A user's email or id
        #[arg(long, group = "subject")]
        actor: Option<String>,
        /// An address or CIDR range
        #[arg(long, group = "subject")]
        ip: Option<String>,
        /// A session id (from the audit trail's credential field)
        #[arg(long, group = "subject")]
        session: Option<String>,
        /// An API token id
        #[arg(long, group = "subject")]
        token: Option<String>,
        /// RFC 3339 start time (inclusive)
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 end time (exclusive)
        #[arg(long)]
        to: Option<String>,
        /// Only this organization (slug)
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value = "json", value_parser = ["json", "csv", "html"])]
        format: String,
        /// Output file (default: standard output)
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn time(s: &Option<String>) -> Result<Option<i64>> {
    s.as_deref()
        .map(|t| {
            let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("'{t}' is not an RFC 3339 time"))?;
            Ok(i64::try_from(t.unix_timestamp_nanos() / 1000)?)
        })
        .transpose()
}

pub async fn run(c: Config, cmd: IncidentCmd) -> Result<ExitCode> {
    let IncidentCmd::Scope {
        actor,
        ip,
        session,
        token,
        from,
        to,
        org,
        format,
        out,
    } = cmd;
    let store = open::store(&c, false).await?;
    let db = &store.db;
    let subject = match (actor, ip, session, token) {
        (Some(a), None, None, None) => Subject::Actor(if a.contains('@') {
            kura_store::users::by_email(db, &a)
                .await?
                .with_context(|| format!("no user with email {a}"))?
                .0
                .id
        } else {
            a.parse().context("--actor takes an email or a user id")?
        }),
        (None, Some(i), None, None) => Subject::Ip(Subject::parse_ip(&i)?),
        (None, None, Some(s), None) => Subject::Session(s),
        (None, None, None, Some(t)) => Subject::Token(t),
        _ => bail!("give exactly one of --actor, --ip, --session or --token"),
    };
    let (from, to) = (time(&from)?, time(&to)?);
    let platform = kura_core::cli_platform_grant();
    let mut report =
        incident::scope(db, ScopeView::Platform(&platform), &subject, from, to).await?;
    if let Some(slug) = &org {
        let o = kura_store::orgs::by_slug(db, slug)
            .await
            .with_context(|| format!("no organization with slug '{slug}'"))?;
        let id = o.id.to_string();
        report.affected.retain(|a| a.org_id == id);
        report.unaffected.retain(|a| a.org_id == id);
    }
    // JSON is written as it is serialized: a report over millions of events
    // can run to tens of megabytes.
    {
        let file_or_stdout: Box<dyn Write> = match &out {
            Some(p) => Box::new(
                std::fs::File::create(p).with_context(|| format!("writing {}", p.display()))?,
            ),
            None => Box::new(std::io::stdout().lock()),
        };
        let mut sink = std::io::BufWriter::with_capacity(1 << 20, file_or_stdout);
        match format.as_str() {
            "csv" => sink.write_all(report.to_csv().as_bytes())?,
            "html" => sink.write_all(kura_server::web::scope_html(&report).as_bytes())?,
            _ => serde_json::to_writer_pretty(&mut sink, &report)?,
        }
        sink.flush()?;
    } // the file is closed (and stdout unlocked) before the report is audited
    let ev = kura_store::AuditEvent::new("incident.scope", kura_store::Outcome::Success).detail(
        serde_json::json!({"subject": report.subject, "events": report.events_matched, "format": format}),
    );
    kura_store::audit::record_now(db, &kura_store::AuditCtx::cli(), &ev).await?;
    eprintln!(
        "{}: {} event(s); {} organization(s) affected, {} not",
        report.subject,
        report.events_matched,
        report.affected.len(),
        report.unaffected.len()
    );
    Ok(ExitCode::SUCCESS)
}
