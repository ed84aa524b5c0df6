//! Benchmark of the audit trail on SQLite: appends per second through the
//! group-committing sink (each event hash-chained and durable before its
//! caller goes on, as for a download), then `verify_db` over the result.
//!
//! cargo run --release -p kura-store --example audit_bench -- EVENTS CONCURRENCY ORGS [DIR]
//!
//! Prints one line per phase: events, seconds, events per second.

use kura_core::{NodeId, OrgId, ProjectId, UserId, VersionId};
use kura_store::{AuditCtx, AuditEvent, AuditSink, Db, Outcome};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Res<()> {
    let events = arg(1, 100_000);
    let concurrency = arg(2, 64).max(1);
    let orgs = arg(3, 100).max(1);
    let dir = std::env::args()
        .nth(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("kura-audit-bench-{}", std::process::id()))
        });
    std::fs::create_dir_all(&dir)?;
    let db = Db::connect(&format!("sqlite://{}", dir.join("bench.db").display())).await?;
    db.migrate().await?;
    let sink = AuditSink::start(db.clone());
    let org_ids: Vec<(OrgId, ProjectId)> = (0..orgs)
        .map(|_| (OrgId::new(), ProjectId::new()))
        .collect();
    // EVENTS = 0: only verify the trail already in DIR.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let sink = sink.clone();
        let org_ids = org_ids.clone();
        let n = events / concurrency + usize::from(t < events % concurrency);
        tasks.push(tokio::spawn(async move {
            let ctx = AuditCtx {
                actor_user_id: Some(UserId::new()),
                actor_org_id: Some(org_ids[t % org_ids.len()].0),
                credential: Some(format!("session:{}", uuid::Uuid::now_v7())),
                ip: Some(format!("10.0.{}.{}", t / 256, t % 256)),
                user_agent: Some("audit-bench".into()),
                request_id: None,
            };
            for i in 0..n {
                let (org, project) = org_ids[(t + i) % org_ids.len()];
                let ev = AuditEvent::new("file.download", Outcome::Success)
                    .project(org, project)
                    .node(NodeId::new())
                    .version(VersionId::new())
                    .name(format!("file-{i}.pdf"))
                    .bytes(4096);
                sink.record(&ctx, ev).await?;
            }
            Ok::<_, kura_store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    if events > 0 {
        println!(
        "append\t{events}\t{secs:.2}\t{:.0}\t(concurrency {concurrency}, {orgs} chains, {:.1} events per commit)",
        events as f64 / secs,
        events as f64 / kura_store::audit::batches_total().max(1) as f64
    );
    }
    let started = Instant::now();
    let report = kura_store::chain::verify_db(&db, None, None).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "verify\t{}\t{secs:.2}\t{:.0}\t({} chains, {} problems)",
        report.events,
        report.events as f64 / secs,
        report.chains,
        report.problems.len()
    );
    // KURA_AUDIT_BENCH_VERIFY_ONLY=1: stop here (for profiling verify alone).
    if std::env::var_os("KURA_AUDIT_BENCH_VERIFY_ONLY").is_some() {
        return Ok(());
    }
    // Where verification spends its time: the hashing alone, over events
    // already in memory (the rest is reading them from the database).
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = kura_store::audit::events_after(&db, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        all.extend(page);
    }
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut prev = [0u8; 32];
    for r in &all {
        prev = r.binary_hash(&prev, r.chain_seq.unwrap_or(0), &mut buf);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "hash\t{}\t{secs:.2}\t{:.0}\t(one core, binary form and SHA-256 only; last {})",
        all.len(),
        all.len() as f64 / secs,
        hex::encode(&prev[..4])
    );
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err("the trail did not verify".into())
    }
}
