//! One chain of a SQLite trail walked in position order, reading the stored
//! values as they are.
//!
//! The one-pass scan (`verify_scan`) sends every chain where something looks
//! wrong here, to find out exactly what. Reading through rusqlite rather than
//! the async driver matters for an edited trail: the driver refuses text that
//! is not UTF-8 and values of an unexpected type, and that refusal used to
//! stop verification with a decoding error, so one tampered byte hid every
//! other finding. Here such a value is reported as a modification of its
//! event (`stored_row`), and the walk goes on to the head and checkpoints.
//!
//! Events, loose rows and the head are read in one read transaction, from
//! the trail and from the tail that has not been moved into it yet.

use crate::audit::EVENT_COLUMNS;
use crate::chain::{ChainVerifier, Checkpoint, Problem, PLATFORM_CHAIN};
use crate::stored_row;
use crate::verify_scan::{open_reader, Unusable};
use rusqlite::types::ValueRef;
use std::path::Path;

/// Run one of these readings on a blocking thread (they are synchronous
/// SQLite reads), its failure a store error.
pub async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, Unusable> + Send + 'static,
) -> crate::error::Result<T> {
    let fail = |e: String| crate::StoreError::Internal(format!("audit verification: {e}"));
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.0))
}

/// What the walk read.
pub struct Walk {
    pub events: u64,
    pub unchained_history: u64,
    pub problems: Vec<Problem>,
    pub head: Option<(i64, String)>,
}

/// Walk `chain` in the trail at `file` with `v`: first the rows outside any
/// chain (events up to `history_until` predate chaining; later ones were
/// inserted), then the chained rows by position.
pub fn walk(
    file: &Path,
    chain: &str,
    history_until: i64,
    mut v: ChainVerifier,
) -> Result<(ChainVerifier, Walk), Unusable> {
    let mut conn = open_reader(file)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    // Two statements rather than `org_id IS ?1`, so that the index on
    // (org_id, chain_seq) serves the trail's part. A row whose organization
    // id is the text "platform" is not the platform's: it is reported on
    // its own as foreign (by the scan, or by `chains`).
    let (filter, params): (&str, Vec<&str>) = if chain == PLATFORM_CHAIN {
        ("org_id IS NULL", vec![])
    } else {
        ("org_id = ?1", vec![chain])
    };
    let params = rusqlite::params_from_iter(params);
    let rows_of = |chained: &str, order: &str| {
        format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events WHERE {filter} AND chain_seq {chained} \
             UNION ALL SELECT {EVENT_COLUMNS} FROM audit_tail WHERE {filter} AND chain_seq {chained} \
             ORDER BY {order}"
        )
    };
    let mut out = Walk {
        events: 0,
        unchained_history: 0,
        problems: Vec::new(),
        head: None,
    };
    {
        let mut stmt = tx.prepare(&rows_of("IS NULL", "id"))?;
        let mut rows = stmt.query(params.clone())?;
        while let Some(r) = rows.next()? {
            match row_id(r)? {
                Some(id) if stored_row::is_history(id, history_until) => out.unchained_history += 1,
                Some(id) => out.problems.extend(check(&mut v, id, r)?),
                None => out.problems.extend(odd_id(&mut v, r)?),
            }
        }
    }
    {
        let mut stmt = tx.prepare(&rows_of("IS NOT NULL", "chain_seq, id"))?;
        let mut rows = stmt.query(params.clone())?;
        let mut raised = false;
        while let Some(r) = rows.next()? {
            out.events += 1;
            match row_id(r)? {
                Some(id) => {
                    if id <= history_until && !raised {
                        raised = true;
                        let seq = stored_row::int(r.get_ref(stored_row::CHAIN_SEQ)?, 0)
                            .ok()
                            .flatten()
                            .unwrap_or(0);
                        out.problems.push(stored_row::raised_history(
                            chain,
                            seq,
                            id,
                            history_until,
                        ));
                    }
                    out.problems.extend(check(&mut v, id, r)?)
                }
                None => out.problems.extend(odd_id(&mut v, r)?),
            }
        }
    }
    let mut stmt = tx.prepare("SELECT chain, seq, hash FROM audit_chain_heads WHERE chain = ?1")?;
    let mut rows = stmt.query([chain])?;
    if let Some(r) = rows.next()? {
        out.head = Some(stored_row::head(r)?.1);
    }
    Ok((v, out))
}

/// The row's id; None when it is not a number (only possible in a table
/// rebuilt outside Kura: ids are rowids).
fn row_id(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<i64>> {
    Ok(match r.get_ref(stored_row::ID)? {
        ValueRef::Integer(id) => Some(id),
        _ => None,
    })
}

/// A row whose id is not a number: a modification at its position.
fn odd_id(v: &mut ChainVerifier, r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Problem>> {
    let seq = stored_row::int(r.get_ref(stored_row::CHAIN_SEQ)?, 0)
        .ok()
        .flatten();
    let id = stored_row::lossy(r.get_ref(stored_row::ID)?);
    Ok(v.unreadable(
        seq,
        None,
        format!(
            "an event with the id {:?}, which is not a number, holds this position (modified)",
            stored_row::shortened(&id)
        ),
    ))
}

/// Every chain name the trail at `file` mentions (heads, events, tail),
/// for verifying chain by chain when the one-pass scan cannot be used; and
/// a problem for each organization id Kura never writes (not UTF-8 text,
/// or the text "platform"), whose events belong to no chain.
pub fn chains(file: &Path) -> Result<(Vec<String>, Vec<Problem>), Unusable> {
    let mut conn = open_reader(file)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let mut names = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    let mut stmt = tx.prepare("SELECT chain FROM audit_chain_heads")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        names.insert(stored_row::lossy(r.get_ref(0)?));
    }
    let mut stmt = tx.prepare(
        "SELECT org_id, MIN(id) FROM (SELECT org_id, id FROM audit_events \
         UNION ALL SELECT org_id, id FROM audit_tail) GROUP BY org_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let first = match r.get_ref(1)? {
            ValueRef::Integer(i) => Some(i),
            _ => None,
        };
        match r.get_ref(0)? {
            ValueRef::Null => {
                names.insert(PLATFORM_CHAIN.to_string());
            }
            ValueRef::Text(b) if b == PLATFORM_CHAIN.as_bytes() => {
                problems.push(stored_row::foreign(
                    first,
                    None,
                    b,
                    "the platform's chain name",
                ));
            }
            ValueRef::Text(b) => {
                if let Ok(name) = std::str::from_utf8(b) {
                    names.insert(name.to_string());
                    continue;
                }
                problems.push(stored_row::foreign(
                    first,
                    None,
                    b,
                    "text that is not UTF-8",
                ));
            }
            other => {
                let raw = stored_row::lossy(other);
                problems.push(stored_row::foreign(
                    first,
                    None,
                    raw.as_bytes(),
                    "not an id",
                ));
            }
        }
    }
    Ok((names.into_iter().collect(), problems))
}

/// Check one row with `v`. A row holding a value Kura never writes has no
/// hash to check: its position still is, and the problem at the event
/// names the column.
fn check(
    v: &mut ChainVerifier,
    id: i64,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Option<Problem>> {
    let mut values = [ValueRef::Null; 19];
    for (i, value) in values.iter_mut().enumerate() {
        *value = r.get_ref(i)?;
    }
    let wrong = match stored_row::view(id, |i| values[i]) {
        Ok(view) => return Ok(v.push_view(&view)),
        Err(w) => w.describe(id),
    };
    Ok(
        match stored_row::int(values[stored_row::CHAIN_SEQ], stored_row::CHAIN_SEQ) {
            // None: a loose row, whose position checks report it.
            Ok(seq) => v.push_unreadable(id, seq, wrong),
            // The position itself is the odd value.
            Err(_) => v.unreadable(None, Some(id), wrong),
        },
    )
}

/// Signed checkpoints as stored, the recorded checkpoint details, and a
/// problem for each stored checkpoint that cannot be read.
pub type StoredCheckpoints = (Vec<Checkpoint>, Vec<String>, Vec<Problem>);

/// The signed checkpoints stored beside the trail at `file` (all, or
/// `only`'s chain), and the `detail` of every event that recorded
/// checkpoints, read as stored. A checkpoint row holding a value Kura never
/// writes is reported and left out (it vouches for nothing); a recorded
/// detail that is not UTF-8 text is left out (its event's hash reports it).
pub fn checkpoint_rows(file: &Path, only: Option<&str>) -> Result<StoredCheckpoints, Unusable> {
    let mut conn = open_reader(file)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let (sql, params): (&str, Vec<&str>) = match only {
        Some(chain) => (
            "SELECT chain, seq, hash, ts, public_key, signature FROM audit_checkpoints \
             WHERE chain = ?1 ORDER BY seq",
            vec![chain],
        ),
        None => (
            "SELECT chain, seq, hash, ts, public_key, signature FROM audit_checkpoints \
             ORDER BY chain, seq",
            vec![],
        ),
    };
    let (mut signed, mut problems) = (Vec::new(), Vec::new());
    let mut stmt = tx.prepare(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    while let Some(r) = rows.next()? {
        let text = |i: usize| -> rusqlite::Result<Option<String>> {
            Ok(match r.get_ref(i)? {
                ValueRef::Text(b) => std::str::from_utf8(b).ok().map(str::to_string),
                _ => None,
            })
        };
        let int = |i: usize| -> rusqlite::Result<Option<i64>> {
            Ok(match r.get_ref(i)? {
                ValueRef::Integer(n) => Some(n),
                _ => None,
            })
        };
        match (text(0)?, int(1)?, text(2)?, int(3)?, text(4)?, text(5)?) {
            (Some(chain), Some(seq), Some(hash), Some(ts), Some(public_key), Some(signature)) => {
                signed.push(Checkpoint {
                    chain,
                    seq,
                    hash,
                    ts,
                    public_key,
                    signature,
                })
            }
            (_, seq, ..) => problems.push(Problem {
                chain: stored_row::shortened(&stored_row::lossy(r.get_ref(0)?)),
                seq,
                event_id: None,
                kind: "checkpoint",
                message: "a stored checkpoint holds a value Kura never writes (modified)".into(),
            }),
        }
    }
    let mut recorded = Vec::new();
    let mut stmt = tx.prepare(
        "SELECT detail FROM audit_events WHERE action = ?1 AND org_id IS NULL \
         UNION ALL SELECT detail FROM audit_tail WHERE action = ?1 AND org_id IS NULL",
    )?;
    let mut rows = stmt.query([crate::chain::CHECKPOINT_ACTION])?;
    while let Some(r) = rows.next()? {
        if let ValueRef::Text(b) = r.get_ref(0)? {
            if let Ok(detail) = std::str::from_utf8(b) {
                recorded.push(detail.to_string());
            }
        }
    }
    Ok((signed, recorded, problems))
}

#[cfg(test)]
mod tests {
    use crate::chain::{verify_db, Report};
    use crate::verify_scan::tests::trail;

    async fn run(db: &crate::db::Db, sql: &str) {
        sqlx::query(sql).execute(&db.write).await.expect(sql);
    }

    fn found(r: &Report) -> Vec<(String, Option<i64>, &str, String)> {
        let mut v: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.chain.clone(), p.seq, p.kind, p.message.clone()))
            .collect();
        v.sort();
        v
    }

    /// Values Kura never writes (text that is not UTF-8, a blob, a number
    /// stored as text) are each reported at their event, in every chain,
    /// instead of one of them stopping verification with a decoding error.
    #[tokio::test]
    async fn values_kura_never_writes_are_reported_where_they_are() {
        let (db, orgs) = trail("never-written").await;
        crate::audit::settle(&db).await.expect("settle");
        let [a, b, c] = [0, 1, 2].map(|i| orgs[i].to_string());
        run(&db, "DROP TRIGGER audit_events_no_update").await;
        for (sql, org) in [
            // Position 3 of A: a file name with a byte that is not UTF-8.
            ("UPDATE audit_events SET object_name = CAST(X'66FF6C65' AS TEXT) WHERE org_id = $1 AND chain_seq = 3", &a),
            // Position 2 of B: the detail as a blob.
            ("UPDATE audit_events SET detail = X'7B7D' WHERE org_id = $1 AND chain_seq = 2", &b),
            // Position 4 of C: moved to an organization id that is not UTF-8.
            ("UPDATE audit_events SET org_id = CAST(X'FF' AS TEXT) WHERE org_id = $1 AND chain_seq = 4", &c),
        ] {
            sqlx::query(sql).bind(org).execute(&db.write).await.expect(sql);
        }
        // Position 6 of the platform's chain: a number that is text.
        run(
            &db,
            "UPDATE audit_events SET bytes = 'many' WHERE org_id IS NULL AND chain_seq = 6",
        )
        .await;
        let report = verify_db(&db, None, None)
            .await
            .expect("verify runs to the end");
        let got = found(&report);
        let at = |chain: &str, seq: i64| {
            got.iter()
                .find(|p| p.0 == chain && p.1 == Some(seq))
                .unwrap_or_else(|| panic!("nothing at {chain} {seq}: {got:?}"))
        };
        assert_eq!(at(&a, 3).2, "modified");
        let blob = at(&b, 2);
        assert_eq!(blob.2, "modified");
        assert!(blob.3.contains("detail"), "{blob:?}");
        assert_eq!(at(&c, 4).2, "deleted", "C lost its position 4");
        let moved = at("\u{fffd}", 4);
        assert_eq!(moved.2, "modified");
        assert!(moved.3.contains("organization id"), "{moved:?}");
        let text = at("platform", 6);
        assert!(text.3.contains("bytes"), "{text:?}");
        assert_eq!(got.len(), 5, "{got:?}");
        // One chain at a time gives the same findings for that chain.
        let only_b = crate::chain::verify_db(&db, Some(&b), None)
            .await
            .expect("verify one");
        assert_eq!(found(&only_b), vec![blob.clone()]);
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }

    /// An edited chain head that is not what Kura writes is compared and
    /// reported, not a reason to stop.
    #[tokio::test]
    async fn an_unreadable_head_is_reported() {
        let (db, orgs) = trail("odd-head").await;
        crate::audit::settle(&db).await.expect("settle");
        let a = orgs[0].to_string();
        sqlx::query(
            "UPDATE audit_chain_heads SET seq = 'x', hash = CAST(X'FF' AS TEXT) WHERE chain = $1",
        )
        .bind(&a)
        .execute(&db.write)
        .await
        .expect("edit head");
        let report = verify_db(&db, None, None)
            .await
            .expect("verify runs to the end");
        let got = found(&report);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0.as_str(), got[0].2), (a.as_str(), "deleted"));
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }

    /// Positions that are not numbers, organization ids that are blobs or
    /// the platform's name: each pinpointed, each foreign id once.
    #[tokio::test]
    async fn odd_positions_and_organization_ids_are_pinpointed() {
        let (db, orgs) = trail("odd-ids").await;
        crate::audit::settle(&db).await.expect("settle");
        let [a, b, c] = [0, 1, 2].map(|i| orgs[i].to_string());
        run(&db, "DROP TRIGGER audit_events_no_update").await;
        for (sql, org) in [
            (
                "UPDATE audit_events SET chain_seq = 'x' WHERE org_id = $1 AND chain_seq = 5",
                &a,
            ),
            (
                "UPDATE audit_events SET org_id = X'01' WHERE org_id = $1 AND chain_seq IN (2, 4)",
                &b,
            ),
            (
                "UPDATE audit_events SET org_id = 'platform' WHERE org_id = $1 AND chain_seq = 3",
                &c,
            ),
        ] {
            sqlx::query(sql)
                .bind(org)
                .execute(&db.write)
                .await
                .expect(sql);
        }
        let report = verify_db(&db, None, None)
            .await
            .expect("verify runs to the end");
        let got = found(&report);
        let kinds: Vec<(&str, Option<i64>, &str)> =
            got.iter().map(|p| (p.0.as_str(), p.1, p.2)).collect();
        // The text position sorts after every number: position 5 is missing.
        assert!(kinds.contains(&(a.as_str(), Some(5), "deleted")), "{got:?}");
        assert!(kinds.contains(&(b.as_str(), Some(2), "deleted")), "{got:?}");
        assert!(kinds.contains(&(c.as_str(), Some(3), "deleted")), "{got:?}");
        assert!(kinds.contains(&("\u{1}", Some(2), "modified")), "{got:?}");
        assert!(
            kinds.contains(&("platform", Some(3), "modified")),
            "{got:?}"
        );
        assert_eq!(got.len(), 5, "the blob id is reported once: {got:?}");
        // Listing chains for the chain-by-chain path sees the same ids.
        let file = db.sqlite_file.clone().expect("file");
        let (names, foreign) = super::chains(&file).expect("chains");
        assert_eq!(names.len(), 4, "{names:?}");
        let mut odd: Vec<&str> = foreign.iter().map(|p| p.chain.as_str()).collect();
        odd.sort();
        assert_eq!(odd, vec!["\u{1}", "platform"]);
        let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
    }

    /// The walk reads events still in the tail, in one snapshot with the
    /// trail, and the chain's head as stored.
    #[tokio::test]
    async fn the_walk_reads_the_tail_and_an_odd_head() {
        let (db, orgs) = trail("walk-tail").await;
        let file = db.sqlite_file.clone().expect("file");
        let forms = crate::chain::hash_forms(&db).await.expect("forms");
        let [a, b] = [0, 1].map(|i| orgs[i].to_string());
        let walk = |chain: &str| {
            let v = crate::chain::ChainVerifier::new(chain, forms).keeping([]);
            super::walk(&file, chain, 0, v).expect("walk")
        };
        // Nothing drained: all 16 of A's events are in the tail.
        let (mut v, clean) = walk(&a);
        assert_eq!(clean.events, 16);
        assert!(clean.problems.is_empty());
        assert!(v.finish(clean.head, &[], None).is_empty());
        run(&db, "DROP TRIGGER audit_tail_no_update").await;
        sqlx::query(
            "UPDATE audit_tail SET object_name = 'other' WHERE org_id = $1 AND chain_seq = 7",
        )
        .bind(&a)
        .execute(&db.write)
        .await
        .expect("edit the tail");
        let (_, edited) = walk(&a);
        let at: Vec<(Option<i64>, &str)> =
            edited.problems.iter().map(|p| (p.seq, p.kind)).collect();
        assert_eq!(at, vec![(Some(7), "modified")]);
        sqlx::query("UPDATE audit_chain_heads SET seq = 'x', hash = X'00' WHERE chain = $1")
            .bind(&b)
            .execute(&db.write)
            .await
            .expect("edit head");
        let (mut v, odd_head) = walk(&b);
        assert!(odd_head.problems.is_empty());
        let head = v.finish(odd_head.head, &[], None);
        assert_eq!(head.len(), 1, "{head:?}");
        assert_eq!(head[0].kind, "deleted");
        let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
    }

    /// A stored checkpoint holding a value Kura never writes is reported,
    /// and verification goes on.
    #[tokio::test]
    async fn an_odd_checkpoint_is_reported() {
        let (db, orgs) = trail("odd-checkpoint").await;
        let a = orgs[0].to_string();
        sqlx::query(
            "INSERT INTO audit_checkpoints (chain, seq, hash, ts, public_key, signature) \
             VALUES ($1, 3, 'h', 0, 'k', X'00')",
        )
        .bind(&a)
        .execute(&db.write)
        .await
        .expect("odd checkpoint");
        let report = verify_db(&db, None, None)
            .await
            .expect("verify runs to the end");
        let got = found(&report);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].0.as_str(), got[0].1, got[0].2),
            (a.as_str(), Some(3), "checkpoint")
        );
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }

    /// A chain deleted whole (events and head) is still checked against
    /// its signed checkpoints; a raised history bound and an inserted row
    /// with an id no counter gives are reported; both ways of verifying agree.
    #[tokio::test]
    async fn a_deleted_chain_a_raised_history_and_odd_ids_are_reported() {
        use crate::verify_scan::tests::in_order;
        let (db, orgs) = trail("gone").await;
        crate::audit::settle(&db).await.expect("settle");
        let [a, b] = [0, 1].map(|i| orgs[i].to_string());
        // A checkpoint of A at position 3 (signatures are not checked here).
        sqlx::query(
            "INSERT INTO audit_checkpoints (chain, seq, hash, ts, public_key, signature) \
             SELECT org_id, chain_seq, chain_hash, 0, 'k', 's' FROM audit_events \
             WHERE org_id = $1 AND chain_seq = 3",
        )
        .bind(&a)
        .execute(&db.write)
        .await
        .expect("checkpoint");
        run(&db, "DROP TRIGGER audit_events_no_delete").await;
        for sql in [
            "DELETE FROM audit_events WHERE org_id = $1",
            "DELETE FROM audit_chain_heads WHERE chain = $1",
        ] {
            sqlx::query(sql)
                .bind(&a)
                .execute(&db.write)
                .await
                .expect(sql);
        }
        // An event of B without a position, with an id no counter gives.
        sqlx::query(
            "INSERT INTO audit_events (id, ts, org_id, action, outcome) VALUES (-5, 0, $1, 'file.download', 'success')",
        )
        .bind(&b)
        .execute(&db.write)
        .await
        .expect("insert");
        for check in [db.clone(), in_order(&db)] {
            let report = verify_db(&check, None, None).await.expect("verify");
            let got = found(&report);
            let kinds: Vec<(&str, Option<i64>, &str)> =
                got.iter().map(|p| (p.0.as_str(), p.1, p.2)).collect();
            assert!(kinds.contains(&(a.as_str(), Some(3), "deleted")), "{got:?}");
            assert!(kinds.contains(&(b.as_str(), None, "inserted")), "{got:?}");
            assert_eq!(got.len(), 2, "{got:?}");
        }
        // Every event below the history bound: the bound was raised.
        run(
            &db,
            "UPDATE settings SET value = '1000000' WHERE key = 'audit_chain_from_id'",
        )
        .await;
        for check in [db.clone(), in_order(&db)] {
            let report = verify_db(&check, None, None).await.expect("verify");
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.kind == "modified" && p.message.contains("audit_chain_from_id")),
                "{:?}",
                report.problems
            );
        }
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }
}
