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
use crate::chain::{ChainVerifier, Problem, RecordView, PLATFORM_CHAIN};
use crate::stored_row::{self, WrongValue};
use crate::verify_scan::{open_reader, Unusable};
use rusqlite::types::ValueRef;
use std::path::Path;

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
    // (org_id, chain_seq) serves the trail's part.
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
            let id = row_id(r)?;
            if id <= history_until {
                out.unchained_history += 1;
            } else {
                out.problems.extend(check(&mut v, id, r)?);
            }
        }
    }
    {
        let mut stmt = tx.prepare(&rows_of("IS NOT NULL", "chain_seq, id"))?;
        let mut rows = stmt.query(params.clone())?;
        while let Some(r) = rows.next()? {
            out.events += 1;
            let id = row_id(r)?;
            out.problems.extend(check(&mut v, id, r)?);
        }
    }
    let mut stmt = tx.prepare("SELECT chain, seq, hash FROM audit_chain_heads WHERE chain = ?1")?;
    let mut rows = stmt.query([chain])?;
    if let Some(r) = rows.next()? {
        out.head = Some(stored_row::head(r)?.1);
    }
    Ok((v, out))
}

fn row_id(r: &rusqlite::Row<'_>) -> Result<i64, Unusable> {
    match r.get_ref(stored_row::ID)? {
        ValueRef::Integer(id) => Ok(id),
        _ => Err(Unusable("an event id that is not a number".into())),
    }
}

/// Check one row with `v`. A row holding a value Kura never writes is
/// checked as an event whose hash cannot match, so that its position is
/// still checked first (a gap before it is reported as the gap), and the
/// problem at the event itself names the column.
fn check(
    v: &mut ChainVerifier,
    id: i64,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Option<Problem>> {
    let mut values = [ValueRef::Null; 19];
    for (i, value) in values.iter_mut().enumerate() {
        *value = r.get_ref(i)?;
    }
    let wrong: WrongValue = match stored_row::view(id, |i| values[i]) {
        Ok(view) => return Ok(v.push_view(&view)),
        Err(w) => w,
    };
    let seq = stored_row::int(values[stored_row::CHAIN_SEQ], 0)
        .ok()
        .flatten();
    let unmatchable = RecordView {
        id,
        ts: 0,
        org_id: None,
        actor_user_id: None,
        actor_org_id: None,
        credential: None,
        ip: None,
        user_agent: None,
        request_id: None,
        action: b"",
        outcome: b"",
        project_id: None,
        node_id: None,
        version_id: None,
        object_name: None,
        bytes: None,
        detail: None,
        // A position that is not a number reads as none: "no position".
        chain_seq: seq,
        chain_hash: None,
    };
    Ok(v.push_view(&unmatchable).map(|mut p| {
        if p.event_id == Some(id) {
            p.kind = "modified";
            p.message = wrong.describe(id);
        }
        p
    }))
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
}
