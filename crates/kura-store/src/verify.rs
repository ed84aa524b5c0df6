//! `kura audit verify` on a database: every chain (or one), its head and
//! its signed checkpoints, with what is wrong pinpointed to the first
//! broken event of each chain.
//!
//! On SQLite the one-pass scan (`verify_scan`) checks every chain at once,
//! and each chain where anything looks wrong is walked again in position
//! order (`verify_in_order`); both read the stored values as they are. On
//! PostgreSQL each chain is read in position order through the driver.

use crate::chain::{
    chain_filter, checkpoints, for_each_chained, hash_forms, ChainVerifier, Checkpoint, HashForms,
    Problem, Record, Report, CHECKPOINT_ACTION, PLATFORM_CHAIN,
};
use crate::db::{Db, RowExt};
use crate::error::Result;
use serde::Deserialize;
use std::collections::HashMap;

/// The `detail` of every event that recorded checkpoints (see
/// [`crate::chain::checkpoint_all`]).
async fn checkpoint_details(db: &Db) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT detail FROM audit_events WHERE action = $1 AND org_id IS NULL")
        .bind(CHECKPOINT_ACTION)
        .fetch_all(&db.read)
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.opt_str("detail"))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect())
}

/// The checkpoints of `chain` (or all) that the trail recorded in
/// `details`; a detail that does not parse records none.
fn recorded_checkpoints(details: &[String], chain: Option<&str>) -> Vec<Checkpoint> {
    #[derive(Deserialize)]
    struct Recorded {
        checkpoints: Vec<Checkpoint>,
    }
    details
        .iter()
        .filter_map(|d| serde_json::from_str::<Recorded>(d).ok())
        .flat_map(|rec| rec.checkpoints)
        .filter(|c| chain.is_none_or(|x| x == c.chain))
        .collect()
}

async fn unchained_from_id(db: &Db) -> Result<i64> {
    let r = sqlx::query("SELECT value FROM settings WHERE key = 'audit_chain_from_id'")
        .fetch_optional(&db.read)
        .await?;
    Ok(match r {
        Some(r) => r.str("value")?.parse().unwrap_or(0),
        None => 0,
    })
}

/// Verify every chain in the database (or only `chain`).
pub async fn verify_db(db: &Db, only: Option<&str>, public_key: Option<&str>) -> Result<Report> {
    // Move the tail into the trail. On SQLite every reading below also
    // reads the tail, so a tail that cannot be moved (a row edited in so
    // that it collides with the trail) is left for them to report.
    if let Err(e) = crate::audit::settle(db).await {
        if db.sqlite_file.is_none() {
            return Err(e);
        }
        tracing::warn!(error = %e, "audit verification: the tail could not be moved into the trail");
    }
    let mut report = Report::default();
    let history_until = unchained_from_id(db).await?;
    let forms = hash_forms(db).await?;
    let (mut all_checkpoints, details) = match db.sqlite_file.clone() {
        // SQLite: read as stored, so that an odd value is reported.
        Some(file) => {
            let only = only.map(str::to_string);
            let (signed, details, odd) = crate::verify_in_order::blocking(move || {
                crate::verify_in_order::checkpoint_rows(&file, only.as_deref())
            })
            .await?;
            report.problems.extend(odd);
            (signed, details)
        }
        None => {
            // The records first: a checkpoint is stored before the event
            // that records it, so every checkpoint recorded by then is in
            // the table when it is read next (the other order could report
            // one signed in between as deleted).
            let details = checkpoint_details(db).await?;
            (checkpoints(db, only).await?, details)
        }
    };
    // A checkpoint the trail recorded but the table lost was deleted (one
    // whose row is there but unreadable was reported as such just above).
    let unreadable: Vec<(String, Option<i64>)> = report
        .problems
        .iter()
        .map(|p| (p.chain.clone(), p.seq))
        .collect();
    for c in recorded_checkpoints(&details, only) {
        if !all_checkpoints.contains(&c) {
            if unreadable.contains(&(c.chain.clone(), Some(c.seq))) {
                all_checkpoints.push(c);
                continue;
            }
            report.problems.push(Problem {
                chain: c.chain.clone(),
                seq: Some(c.seq),
                event_id: None,
                kind: "checkpoint",
                message: format!(
                    "the signed checkpoint at position {} recorded in the trail is missing from the checkpoint table (deleted)",
                    c.seq
                ),
            });
            all_checkpoints.push(c);
        }
    }
    report.checkpoints = all_checkpoints.len();
    if let Some(file) = db.sqlite_file.clone() {
        let mut keep: HashMap<String, Vec<i64>> = HashMap::new();
        for c in &all_checkpoints {
            keep.entry(c.chain.clone()).or_default().push(c.seq);
        }
        let only_owned = only.map(str::to_string);
        let scanned = tokio::task::spawn_blocking(move || {
            crate::verify_scan::scan(&file, only_owned.as_deref(), history_until, forms, keep)
        })
        .await;
        match scanned {
            Ok(Ok(mut scan)) => {
                report.problems.append(&mut scan.problems);
                // A chain whose events and head are all gone still has its
                // signed checkpoints: it is checked (and found empty) too.
                for c in &all_checkpoints {
                    if !scan.chains.contains_key(&c.chain) {
                        let v = ChainVerifier::new(&c.chain, forms).keeping([]);
                        scan.chains.insert(c.chain.clone(), v);
                    }
                }
                let mut chains: Vec<String> = scan.chains.keys().cloned().collect();
                chains.sort();
                for chain in chains {
                    report.chains += 1;
                    if scan.suspect.contains(&chain) {
                        // Something is off: find out exactly what, in position order.
                        verify_chain_in_order(
                            db,
                            &chain,
                            (history_until, forms),
                            &all_checkpoints,
                            public_key,
                            &mut report,
                        )
                        .await?;
                        continue;
                    }
                    report.events += scan.events.get(&chain).copied().unwrap_or(0);
                    report.unchained_history +=
                        scan.unchained_history.get(&chain).copied().unwrap_or(0);
                    if let Some(v) = scan.chains.get_mut(&chain) {
                        let head = scan.heads.get(&chain).cloned();
                        report
                            .problems
                            .extend(v.finish(head, &all_checkpoints, public_key));
                    }
                }
                return Ok(report);
            }
            Ok(Err(e)) => {
                tracing::warn!(reason = %e.0, "audit verification: one-pass scan unusable, verifying chain by chain")
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit verification: one-pass scan failed, verifying chain by chain")
            }
        }
    }
    let mut chains = match db.sqlite_file.clone() {
        // SQLite: every chain name as stored, and a problem for each
        // organization id Kura never writes (see verify_in_order).
        Some(file) => {
            let (names, foreign) =
                crate::verify_in_order::blocking(move || crate::verify_in_order::chains(&file))
                    .await?;
            if only.is_none() {
                report.problems.extend(foreign);
            }
            names
        }
        None => chain_names(db).await?,
    };
    // Also a chain whose events and head are all gone, but not its
    // signed checkpoints.
    chains.extend(all_checkpoints.iter().map(|c| c.chain.clone()));
    chains.sort();
    chains.dedup();
    if let Some(c) = only {
        chains.retain(|x| x == c);
    }
    for chain in &chains {
        report.chains += 1;
        verify_chain_in_order(
            db,
            chain,
            (history_until, forms),
            &all_checkpoints,
            public_key,
            &mut report,
        )
        .await?;
    }
    Ok(report)
}

/// Every chain the heads and the events name (through the driver: on
/// PostgreSQL every stored organization id is valid text).
async fn chain_names(db: &Db) -> Result<Vec<String>> {
    let mut chains: Vec<String> = sqlx::query("SELECT chain FROM audit_chain_heads")
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| r.str("chain"))
        .collect::<Result<_>>()?;
    for r in sqlx::query("SELECT DISTINCT org_id FROM audit_events")
        .fetch_all(&db.read)
        .await?
    {
        let c = r
            .opt_str("org_id")?
            .unwrap_or_else(|| PLATFORM_CHAIN.to_string());
        if !chains.contains(&c) {
            chains.push(c);
        }
    }
    Ok(chains)
}

/// Verify one chain by reading its events in position order, adding what
/// it finds to `report`.
async fn verify_chain_in_order(
    db: &Db,
    chain: &str,
    (history_until, forms): (i64, HashForms),
    all_checkpoints: &[Checkpoint],
    public_key: Option<&str>,
    report: &mut Report,
) -> Result<()> {
    use futures_util::TryStreamExt;
    let mut v = ChainVerifier::new(chain, forms).keeping(
        all_checkpoints
            .iter()
            .filter(|c| c.chain == *chain)
            .map(|c| c.seq),
    );
    if let Some(file) = db.sqlite_file.clone() {
        // SQLite: read the stored values as they are (see verify_in_order).
        let name = chain.to_string();
        let (mut v, walk) = crate::verify_in_order::blocking(move || {
            crate::verify_in_order::walk(&file, &name, history_until, v)
        })
        .await?;
        report.events += walk.events;
        report.unchained_history += walk.unchained_history;
        report.problems.extend(walk.problems);
        report
            .problems
            .extend(v.finish(walk.head, all_checkpoints, public_key));
        return Ok(());
    }
    // Events that reached the tail since the scan: into the trail first.
    crate::audit::settle(db).await?;
    // Rows outside any chain: history from before chaining, or inserted.
    let loose_sql = format!(
        "SELECT * FROM audit_events WHERE {} AND chain_seq IS NULL ORDER BY id",
        chain_filter(chain)
    );
    let mut loose = sqlx::query(&loose_sql).bind(chain).fetch(&db.read);
    while let Some(row) = loose.try_next().await? {
        let rec = Record::from_row(&row)?;
        if crate::stored_row::is_history(rec.id, history_until) {
            report.unchained_history += 1;
        } else if let Some(p) = v.push(&rec) {
            report.problems.push(p);
        }
    }
    drop(loose);
    let (events, problems) = (&mut report.events, &mut report.problems);
    let mut raised = false;
    for_each_chained(db, chain, |r| {
        *events += 1;
        if r.id <= history_until && !raised {
            // Honest ids only grow: the setting bounding the history was
            // raised (see stored_row::raised_history).
            raised = true;
            problems.push(crate::stored_row::raised_history(
                chain,
                r.chain_seq.unwrap_or(0),
                r.id,
                history_until,
            ));
        }
        if let Some(p) = v.push(&r) {
            problems.push(p);
        }
        Ok(())
    })
    .await?;
    let head = sqlx::query("SELECT seq, hash FROM audit_chain_heads WHERE chain = $1")
        .bind(chain)
        .fetch_optional(&db.read)
        .await?;
    let head = match head {
        Some(h) => Some((h.int("seq")?, h.str("hash")?)),
        None => None,
    };
    report
        .problems
        .extend(v.finish(head, all_checkpoints, public_key));
    Ok(())
}
