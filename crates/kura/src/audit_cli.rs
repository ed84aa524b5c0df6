//! `kura audit …`: verify the tamper-evident trail, export an organization's
//! chain for independent verification, sign checkpoints, show the public key.

use crate::config::Config;
use crate::open;
use anyhow::{bail, Context, Result};
use kura_crypto::AuditSigner;
use kura_store::chain::{self, Report};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Check every chain (or one organization's); with --file, check an export
    /// with only the platform's public key. Exits 1 when anything is wrong.
    Verify {
        /// Organization slug (default: every chain)
        #[arg(long)]
        org: Option<String>,
        /// An export made by `kura audit export`; needs no database
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// The platform's public key (hex) for --file (see `kura audit public-key`)
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write one organization's events and signed checkpoints as JSON Lines
    Export {
        #[arg(long)]
        org: String,
        /// Output file (default: standard output)
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Sign a checkpoint of every chain now
    Checkpoint,
    /// Print the public key that verifies checkpoints
    PublicKey,
}

fn print_report(r: &Report, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!(
            "checked {} chain(s), {} event(s), {} checkpoint(s){}",
            r.chains,
            r.events,
            r.checkpoints,
            if r.unchained_history > 0 {
                format!(", {} event(s) from before chaining", r.unchained_history)
            } else {
                String::new()
            }
        );
        for p in &r.problems {
            let at = p
                .seq
                .map(|s| format!(" at position {s}"))
                .unwrap_or_default();
            println!("TAMPERED [{}] chain {}{at}: {}", p.kind, p.chain, p.message);
        }
        if r.problems.is_empty() {
            println!("OK: the audit trail is intact");
        }
    }
    Ok(if r.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub async fn run(c: Config, cmd: AuditCmd) -> Result<ExitCode> {
    if let AuditCmd::Verify {
        file: Some(path),
        public_key,
        json,
        ..
    } = &cmd
    {
        let Some(pk) = public_key else {
            bail!("--file needs --public-key (the platform's key, from `kura audit public-key`)")
        };
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let report = chain::verify_export(&mut std::io::BufReader::new(f), pk)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        return print_report(&report, *json);
    }
    let signer = AuditSigner::load(&c.audit_key_path())?;
    if let AuditCmd::PublicKey = cmd {
        println!("{}", signer.public_key_hex());
        return Ok(ExitCode::SUCCESS);
    }
    let store = open::store(&c, false).await?;
    let chain_of = |slug: &str| {
        let db = store.db.clone();
        let slug = slug.to_string();
        async move {
            let org = kura_store::orgs::by_slug(&db, &slug)
                .await
                .with_context(|| format!("no organization with slug '{slug}'"))?;
            Ok::<_, anyhow::Error>(org.id.to_string())
        }
    };
    match cmd {
        AuditCmd::Verify { org, json, .. } => {
            let only = match &org {
                Some(slug) => Some(chain_of(slug).await?),
                None => None,
            };
            let report =
                chain::verify_db(&store.db, only.as_deref(), Some(&signer.public_key_hex()))
                    .await?;
            // The security dashboard shows when the trail was last proven intact.
            let summary = serde_json::json!({
                "at_micros": kura_store::time::now_micros(), "org": org, "healthy": report.problems.is_empty(),
                "events": report.events, "chains": report.chains, "checkpoints": report.checkpoints,
                "problems": report.problems.len(),
            });
            if let Err(e) = kura_store::incident::record_verification(&store.db, &summary).await {
                eprintln!("note: could not record the verification: {e}");
            }
            print_report(&report, json)
        }
        AuditCmd::Export { org, out } => {
            let id = chain_of(&org).await?;
            let n = match out {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(&path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    );
                    chain::export(&store.db, &id, Some(signer.public_key_hex()), &mut f).await?
                }
                None => {
                    chain::export(
                        &store.db,
                        &id,
                        Some(signer.public_key_hex()),
                        &mut std::io::stdout().lock(),
                    )
                    .await?
                }
            };
            eprintln!("exported {n} event(s) of {org}");
            let ev = kura_store::AuditEvent::new("audit.export", kura_store::Outcome::Success)
                .org(id.parse().map_err(|_| anyhow::anyhow!("bad org id"))?)
                .detail(serde_json::json!({"events": n, "via": "cli"}));
            store.audit.record(&kura_store::AuditCtx::cli(), ev).await?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Checkpoint => {
            let n = chain::checkpoint_all(&store.db, &signer).await?;
            println!("signed {n} checkpoint(s)");
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::PublicKey => Ok(ExitCode::SUCCESS),
    }
}
