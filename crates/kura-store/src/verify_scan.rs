//! Verification of every chain of a SQLite trail in one sequential pass.
//!
//! Reading each chain in position order through the (org_id, chain_seq)
//! index visits the table's pages at random, and handing rows over through
//! the async driver costs more than hashing them. This pass instead reads
//! the table in id order, straight from SQLite's row buffers, inside one
//! read transaction that also covers the chain heads and the unindexed tail,
//! so heads and events are one consistent snapshot.
//!
//! An honest chain's ids grow with its positions (a chain's head is advanced
//! under the writer's lock before its rows are inserted), so in id order each
//! chain's events arrive in position order. A chain where anything looks
//! wrong, including an order that merely differs, is handed back as
//! "suspect" and verified again in position order by `chain::verify_db`,
//! which then reports exactly what it finds.

use crate::audit::EVENT_COLUMNS;
use crate::chain::{ChainVerifier, RecordView, PLATFORM_CHAIN};
use rusqlite::types::ValueRef;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// What the pass learnt about each chain.
pub struct Scan {
    /// Every chain seen in the heads or the events, with its verifier.
    pub chains: HashMap<String, ChainVerifier>,
    /// Head (position, hash) per chain, from the same snapshot.
    pub heads: HashMap<String, (i64, String)>,
    /// Chained events read per chain.
    pub events: HashMap<String, u64>,
    /// Chains to verify again in position order.
    pub suspect: HashSet<String>,
    /// Events from before chaining existed, per chain.
    pub unchained_history: HashMap<String, u64>,
}

/// Why the pass gave up (the caller then verifies everything the slow way).
#[derive(Debug)]
pub struct Unusable(pub String);

impl From<rusqlite::Error> for Unusable {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

fn text<'a>(v: ValueRef<'a>) -> Result<Option<&'a str>, Unusable> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(b) => std::str::from_utf8(b)
            .map(Some)
            .map_err(|_| Unusable("text that is not UTF-8".into())),
        _ => Err(Unusable("a text column holds another type".into())),
    }
}

fn int(v: ValueRef<'_>) -> Result<Option<i64>, Unusable> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i)),
        _ => Err(Unusable("an integer column holds another type".into())),
    }
}

fn required<T>(v: Option<T>) -> Result<T, Unusable> {
    v.ok_or_else(|| Unusable("a required column is empty".into()))
}

/// A read-only connection for one long sequential read of the trail at
/// `file` (verification, scope reports): a 64 MiB page cache and the file
/// memory-mapped, so pages are read without copying.
pub(crate) fn open_reader(file: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "mmap_size", 1i64 << 34)?;
    Ok(conn)
}

/// Scan the trail at `file`. `keep` lists, per chain, the positions whose
/// hashes the signed checkpoints will be compared with; `only` limits the
/// pass to one chain; events with ids up to `history_until` predate chaining.
pub fn scan(
    file: &Path,
    only: Option<&str>,
    history_until: i64,
    keep: &HashMap<String, Vec<i64>>,
) -> Result<Scan, Unusable> {
    let mut conn = open_reader(file)?;
    // One read transaction: the heads and both tables as of one instant.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let mut out = Scan {
        chains: HashMap::new(),
        heads: HashMap::new(),
        events: HashMap::new(),
        suspect: HashSet::new(),
        unchained_history: HashMap::new(),
    };
    // Per chain, its verifier and the chained events read: one lookup per
    // event, by the borrowed name.
    let mut tallies: hashbrown::HashMap<String, (ChainVerifier, u64)> = Default::default();
    let verifier = |chain: &str| {
        let v = ChainVerifier::new(chain);
        match keep.get(chain) {
            Some(seqs) => v.keeping(seqs.iter().copied()),
            None => v.keeping([]),
        }
    };
    {
        let mut heads = tx.prepare("SELECT chain, seq, hash FROM audit_chain_heads")?;
        let mut rows = heads.query([])?;
        while let Some(r) = rows.next()? {
            let chain: String = r.get(0)?;
            if only.is_some_and(|o| o != chain) {
                continue;
            }
            out.heads.insert(chain.clone(), (r.get(1)?, r.get(2)?));
            let v = verifier(&chain);
            tallies.insert(chain, (v, 0));
        }
    }
    // The tail's ids all follow the trail's (one counter, drained in order).
    for table in ["audit_events", "audit_tail"] {
        let mut stmt = tx.prepare(&format!("SELECT {EVENT_COLUMNS} FROM {table} ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let org_id = text(r.get_ref(2)?)?;
            let chain = org_id.unwrap_or(PLATFORM_CHAIN);
            if only.is_some_and(|o| o != chain) {
                continue;
            }
            let id = required(int(r.get_ref(0)?)?)?;
            let chain_seq = int(r.get_ref(17)?)?;
            let (v, events) = tallies
                .entry_ref(chain)
                .or_insert_with(|| (verifier(chain), 0));
            if chain_seq.is_none() {
                if id <= history_until {
                    *out.unchained_history.entry(chain.to_string()).or_default() += 1;
                } else {
                    out.suspect.insert(chain.to_string());
                }
                continue;
            }
            *events += 1;
            if v.is_broken() {
                continue;
            }
            let view = RecordView {
                id,
                ts: required(int(r.get_ref(1)?)?)?,
                org_id,
                actor_user_id: text(r.get_ref(3)?)?,
                actor_org_id: text(r.get_ref(4)?)?,
                credential: text(r.get_ref(5)?)?,
                ip: text(r.get_ref(6)?)?,
                user_agent: text(r.get_ref(7)?)?,
                request_id: text(r.get_ref(8)?)?,
                action: required(text(r.get_ref(9)?)?)?,
                outcome: required(text(r.get_ref(10)?)?)?,
                project_id: text(r.get_ref(11)?)?,
                node_id: text(r.get_ref(12)?)?,
                version_id: text(r.get_ref(13)?)?,
                object_name: text(r.get_ref(14)?)?,
                bytes: int(r.get_ref(15)?)?,
                detail: text(r.get_ref(16)?)?,
                chain_seq,
                chain_hash: text(r.get_ref(18)?)?,
            };
            if v.push_view(view).is_some() {
                out.suspect.insert(chain.to_string());
            }
        }
    }
    for (chain, (v, events)) in tallies {
        out.events.insert(chain.clone(), events);
        out.chains.insert(chain, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::audit::{append_many, AuditCtx, AuditEvent, Outcome};
    use crate::chain::verify_db;
    use crate::db::Db;
    use kura_core::{OrgId, ProjectId};

    async fn trail(name: &str) -> (Db, Vec<OrgId>) {
        let (db, _) = crate::db::test_db(&format!("scan-{name}")).await;
        let orgs: Vec<OrgId> = (0..3).map(|_| OrgId::new()).collect();
        let ctx = AuditCtx::cli();
        // Two transactions of interleaved chains, plus platform events.
        for round in 0..2 {
            let evs: Vec<AuditEvent> = (0..30)
                .map(|i| {
                    let ev = AuditEvent::new("file.download", Outcome::Success)
                        .name(format!("r{round}-f{i}.txt"))
                        .bytes(i);
                    match i % 4 {
                        3 => ev,
                        k => ev.project(orgs[k as usize], ProjectId::new()),
                    }
                })
                .collect();
            let items: Vec<(&AuditCtx, &AuditEvent)> = evs.iter().map(|e| (&ctx, e)).collect();
            let mut tx = db.write.begin().await.expect("begin");
            append_many(&mut tx, &items).await.expect("append");
            tx.commit().await.expect("commit");
        }
        (db, orgs)
    }

    /// The same database verified chain by chain, without the one-pass scan.
    fn in_order(db: &Db) -> Db {
        let mut slow = db.clone();
        slow.sqlite_file = None;
        slow
    }

    async fn count(db: &Db, table: &str) -> i64 {
        use crate::db::RowExt;
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&db.read)
            .await
            .expect("count")
            .int("n")
            .expect("n")
    }

    #[tokio::test]
    async fn one_pass_matches_chain_by_chain_and_reads_the_tail() {
        let (db, _) = trail("clean").await;
        // Nothing drained yet: all 60 events wait in the tail, and the scan
        // reads them there.
        assert_eq!(count(&db, "audit_tail").await, 60);
        let file = db.sqlite_file.clone().expect("a file");
        let scan = super::scan(&file, None, 0, &Default::default()).expect("usable");
        assert!(scan.suspect.is_empty());
        assert_eq!(scan.events.values().sum::<u64>(), 60);
        let fast = verify_db(&db, None, None).await.expect("verify");
        assert!(fast.problems.is_empty(), "{:?}", fast.problems);
        assert_eq!((fast.events, fast.chains), (60, 4));
        // Verification drained the tail into the indexed trail, ids kept.
        assert_eq!(count(&db, "audit_tail").await, 0);
        assert_eq!(count(&db, "audit_events").await, 60);
        let slow = verify_db(&in_order(&db), None, None).await.expect("verify");
        assert_eq!((slow.events, slow.chains), (60, 4));
        assert!(slow.problems.is_empty());
        let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
    }

    #[tokio::test]
    async fn the_sinks_own_writer_links_the_same_chains() {
        // Events from the sink (rusqlite, `tail_writer`) and from changes
        // (sqlx, `append_many`) interleave in the same chains; the trail
        // verifies, and each chain's positions are 1..=n without a gap.
        let (db, orgs) = trail("sink").await;
        assert!(db.tail_writer.is_some());
        let sink = crate::audit::AuditSink::start(db.clone());
        let ctx = AuditCtx::cli();
        for round in 0..3 {
            let mut waits = Vec::new();
            for i in 0..40 {
                let (sink, ctx) = (sink.clone(), ctx.clone());
                let ev = AuditEvent::new("file.download", Outcome::Success)
                    .project(orgs[i % 3], ProjectId::new())
                    .name(format!("sink-{round}-{i}.txt"))
                    .bytes(i as u64);
                waits.push(tokio::spawn(async move { sink.record(&ctx, ev).await }));
            }
            for w in waits {
                w.await.expect("join").expect("recorded");
            }
            let ev =
                AuditEvent::new("file.upload", Outcome::Success).project(orgs[0], ProjectId::new());
            let mut tx = db.write.begin().await.expect("begin");
            append_many(&mut tx, &[(&ctx, &ev)]).await.expect("append");
            tx.commit().await.expect("commit");
        }
        let report = verify_db(&db, None, None).await.expect("verify");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.events, 60 + 3 * 41);
        for org in &orgs {
            let (n, max) = {
                use crate::db::RowExt;
                let r = sqlx::query(
                    "SELECT COUNT(*) AS n, MAX(chain_seq) AS m FROM audit_events WHERE org_id = $1",
                )
                .bind(org.to_string())
                .fetch_one(&db.read)
                .await
                .expect("count");
                (r.int("n").expect("n"), r.int("m").expect("m"))
            };
            assert_eq!(max, n, "chain of {org} has gaps");
        }
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }

    #[tokio::test]
    async fn followers_read_the_tail_without_draining_it() {
        let (db, orgs) = trail("follow").await;
        crate::audit::settle(&db).await.expect("settle");
        let ctx = AuditCtx::cli();
        let evs: Vec<AuditEvent> = (0..30)
            .map(|i| {
                AuditEvent::new("file.download", Outcome::Success)
                    .project(orgs[i % 3], ProjectId::new())
                    .name(format!("late-{i}.txt"))
            })
            .collect();
        let items: Vec<(&AuditCtx, &AuditEvent)> = evs.iter().map(|e| (&ctx, e)).collect();
        let mut tx = db.write.begin().await.expect("begin");
        append_many(&mut tx, &items).await.expect("append");
        tx.commit().await.expect("commit");
        assert_eq!(count(&db, "audit_tail").await, 30);
        let all = crate::audit::events_after(&db, 0, 1_000)
            .await
            .expect("follow");
        let ids: Vec<i64> = all.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 90);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let names: Vec<&str> = all[60..]
            .iter()
            .filter_map(|r| r.object_name.as_deref())
            .collect();
        assert_eq!(names.first(), Some(&"late-0.txt"));
        assert_eq!(names.len(), 30);
        // Following wrote nothing: the late events are still in the tail.
        assert_eq!(count(&db, "audit_tail").await, 30);
        // Read by position (`Record::from_lite`), the events are exactly
        // what reading them by column name gives.
        let by_name: Vec<crate::chain::Record> = db
            .point_reads
            .as_ref()
            .expect("a SQLite file")
            .fetch_all(
                &format!(
                    "SELECT {} FROM audit_tail ORDER BY id",
                    crate::audit::EVENT_COLUMNS
                ),
                &[],
                1_000,
            )
            .expect("read")
            .iter()
            .map(crate::chain::Record::from_row)
            .collect::<crate::error::Result<_>>()
            .expect("records");
        let by_position: Vec<crate::chain::Record> =
            all[60..].iter().map(|r| (**r).clone()).collect();
        assert_eq!(by_position, by_name);
        let after = crate::audit::events_after(&db, ids[59], 1_000)
            .await
            .expect("follow");
        assert_eq!(after.len(), 30);
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }

    #[tokio::test]
    async fn tampering_is_reported_as_chain_by_chain_would() {
        let (db, orgs) = trail("tampered").await;
        crate::audit::settle(&db).await.expect("settle");
        let org = orgs[1].to_string();
        for sql in [
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ] {
            sqlx::query(sql).execute(&db.write).await.expect(sql);
        }
        // Edit position 3 of one chain; delete position 5 of another.
        sqlx::query("UPDATE audit_events SET object_name = 'innocent.txt' WHERE org_id = $1 AND chain_seq = 3")
            .bind(&org)
            .execute(&db.write)
            .await
            .expect("edit");
        sqlx::query("DELETE FROM audit_events WHERE org_id = $1 AND chain_seq = 5")
            .bind(orgs[2].to_string())
            .execute(&db.write)
            .await
            .expect("delete");
        // Swap the contents of two rows of the platform chain (same
        // positions stay, ids reversed): only an in-order reading can say
        // what happened, so the one-pass scan must defer to it.
        let ids: Vec<i64> =
            sqlx::query("SELECT id FROM audit_events WHERE org_id IS NULL ORDER BY id LIMIT 2")
                .fetch_all(&db.read)
                .await
                .expect("ids")
                .iter()
                .map(|r| crate::db::RowExt::int(r, "id").expect("id"))
                .collect();
        sqlx::query("UPDATE audit_events SET id = -1 WHERE id = $1")
            .bind(ids[0])
            .execute(&db.write)
            .await
            .expect("swap");
        sqlx::query("UPDATE audit_events SET id = $1 WHERE id = $2")
            .bind(ids[0])
            .bind(ids[1])
            .execute(&db.write)
            .await
            .expect("swap");
        sqlx::query("UPDATE audit_events SET id = $1 WHERE id = -1")
            .bind(ids[1])
            .execute(&db.write)
            .await
            .expect("swap");
        let fast = verify_db(&db, None, None).await.expect("verify");
        let slow = verify_db(&in_order(&db), None, None).await.expect("verify");
        let kinds = |r: &crate::chain::Report| {
            let mut v: Vec<(String, Option<i64>, Option<i64>, &str)> = r
                .problems
                .iter()
                .map(|p| (p.chain.clone(), p.seq, p.event_id, p.kind))
                .collect();
            v.sort();
            v
        };
        assert_eq!(kinds(&fast), kinds(&slow));
        let found = kinds(&fast);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.0 == org && p.1 == Some(3) && p.3 == "modified"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.0 == orgs[2].to_string() && p.1 == Some(5) && p.3 == "deleted"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.0 == "platform" && p.3 == "reordered"),
            "{found:?}"
        );
    }
}
