//! The tamper-evident trail: edit, delete, insert and swap rows directly in
//! the database (as an attacker with database access would, after disabling
//! the append-only triggers) and `kura audit verify` pinpoints each; an
//! export verifies on its own with the public key, without the database.

use crate::files::world;
use crate::harness::*;

/// Direct database access, as an attacker would have it.
async fn attacker(db_url: &str) -> sqlx::AnyConnection {
    let mut c = database(db_url).await;
    let disable = if backend_is_postgres() {
        vec!["ALTER TABLE audit_events DISABLE TRIGGER USER"]
    } else {
        vec![
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ]
    };
    for sql in disable {
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    }
    c
}

async fn event_id(c: &mut sqlx::AnyConnection, org: &str, seq: i64) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT id FROM audit_events WHERE org_id = $1 AND chain_seq = $2")
        .bind(org)
        .bind(seq)
        .fetch_one(&mut *c)
        .await
        .expect("event")
        .try_get::<i64, _>(0)
        .expect("id")
}

fn verify(server: &TestServer, org_slug: Option<&str>) -> (bool, String) {
    let mut args = vec!["audit", "verify"];
    if let Some(s) = org_slug {
        args.extend(["--org", s]);
    }
    let out = server.cli(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// A world with an organization whose chain has a dozen events and a checkpoint.
async fn chained_world() -> (crate::files::World, String, String) {
    // The detection rules are off: an alert they raise (e.g. "off hours",
    // depending on when the tests run) is itself an event in the
    // organization's chain, and one appended after the test's tampering
    // would change which damage `verify` meets first.
    let w = world(
        ServerOpts {
            env: vec![("KURA_DETECTION".into(), "false".into())],
            ..Default::default()
        },
        None,
    )
    .await;
    let (a, p) = (&w.alice, &w.p);
    for i in 0..4 {
        let id = a
            .upload_ok(
                p,
                &p.root,
                &format!("doc-{i}.txt"),
                format!("content {i}").into_bytes(),
            )
            .await;
        let r = a
            .download(&format!("/api/projects/{}/files/{id}/content", p.id))
            .await;
        assert!(r.status().is_success());
    }
    let out = w.server.cli(&["audit", "checkpoint"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org = a.org_id();
    let (_, org_json) = a.get(&format!("/api/orgs/{org}")).await;
    let slug = org_json["slug"].as_str().unwrap().to_string();
    let (ok, text) = verify(&w.server, None);
    assert!(ok, "an untouched trail verifies: {text}");
    assert!(text.contains("OK"), "{text}");
    (w, org, slug)
}

pub async fn verify_pinpoints_edit_delete_insert_swap() {
    // Edit one field of one event.
    let (w, org, slug) = chained_world().await;
    let mut c = attacker(&w.server.db_url).await;
    let id = event_id(&mut c, &org, 5).await;
    sqlx::query("UPDATE audit_events SET object_name = 'innocent.txt' WHERE id = $1")
        .bind(id)
        .execute(&mut c)
        .await
        .unwrap();
    let (ok, text) = verify(&w.server, Some(&slug));
    assert!(!ok, "{text}");
    assert!(
        text.contains("[modified]")
            && text.contains("position 5")
            && text.contains(&format!("event id {id}")),
        "{text}"
    );
    drop(w);

    // Delete one event in the middle, then the newest events.
    let (w, org, slug) = chained_world().await;
    let mut c = attacker(&w.server.db_url).await;
    let id = event_id(&mut c, &org, 4).await;
    sqlx::query("DELETE FROM audit_events WHERE id = $1")
        .bind(id)
        .execute(&mut c)
        .await
        .unwrap();
    let (ok, text) = verify(&w.server, Some(&slug));
    assert!(
        !ok && text.contains("[deleted]") && text.contains("position 4"),
        "{text}"
    );
    drop(w);
    let (w, org, slug) = chained_world().await;
    let mut c = attacker(&w.server.db_url).await;
    sqlx::query("DELETE FROM audit_events WHERE org_id = $1 AND chain_seq > 6")
        .bind(&org)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_chain_heads SET seq = 6 WHERE chain = $1")
        .bind(&org)
        .execute(&mut c)
        .await
        .unwrap();
    let (ok, text) = verify(&w.server, Some(&slug));
    assert!(
        !ok && text.contains("[deleted]") && text.contains("checkpoint"),
        "a truncated tail is caught by the signed checkpoint: {text}"
    );
    // The same, with the checkpoint row deleted as well: the trail itself
    // recorded the checkpoint (and the SIEM has a copy of that record).
    sqlx::query("DELETE FROM audit_checkpoints WHERE chain = $1")
        .bind(&org)
        .execute(&mut c)
        .await
        .unwrap();
    let (ok, text) = verify(&w.server, Some(&slug));
    assert!(
        !ok && text.contains("missing from the checkpoint table"),
        "a deleted checkpoint is found in the trail: {text}"
    );
    drop(w);

    // Insert a forged event: outside the chain, and at a taken position.
    let (w, org, slug) = chained_world().await;
    let mut c = attacker(&w.server.db_url).await;
    sqlx::query("INSERT INTO audit_events (ts, org_id, action, outcome) VALUES (1, $1, 'file.download', 'success')").bind(&org).execute(&mut c).await.unwrap();
    let (ok, text) = verify(&w.server, Some(&slug));
    assert!(!ok && text.contains("[inserted]"), "{text}");
    drop(w);
    let (w, org, slug) = chained_world().await;
    let mut c = attacker(&w.server.db_url).await;
    sqlx::query("INSERT INTO audit_events (ts, org_id, action, outcome, chain_seq, chain_hash) VALUES (1, $1, 'file.download', 'success', 2, 'ff')").bind(&org).execute(&mut c).await.unwrap();
    let (ok, text) = verify(&w.server, Some(&slug));
    assert!(
        !ok && text.contains("[inserted]") && text.contains("position 2"),
        "{text}"
    );
    drop(w);

    // Swap two events (every column but the id, through a temporary copy):
    // the order breaks.
    let (w, org, slug) = chained_world().await;
    let mut c = attacker(&w.server.db_url).await;
    let (a, b) = (
        event_id(&mut c, &org, 5).await,
        event_id(&mut c, &org, 6).await,
    );
    let cols = "ts, org_id, actor_user_id, actor_org_id, credential, ip, user_agent, request_id, action, outcome, project_id, node_id, version_id, object_name, bytes, detail, chain_seq, chain_hash";
    sqlx::query(&format!(
        "INSERT INTO audit_events ({cols}) SELECT {cols} FROM audit_events WHERE id = $1"
    ))
    .bind(a)
    .execute(&mut c)
    .await
    .unwrap();
    let sets = cols
        .split(", ")
        .map(|k| format!("{k} = (SELECT s.{k} FROM audit_events s WHERE s.id = $2)"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!("UPDATE audit_events SET {sets} WHERE id = $1"))
        .bind(a)
        .bind(b)
        .execute(&mut c)
        .await
        .unwrap();
    let copy: i64 = {
        use sqlx::Row;
        sqlx::query("SELECT MAX(id) FROM audit_events")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    };
    sqlx::query(&format!("UPDATE audit_events SET {sets} WHERE id = $1"))
        .bind(b)
        .bind(copy)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE id = $1")
        .bind(copy)
        .execute(&mut c)
        .await
        .unwrap();
    let (ok, text) = verify(&w.server, Some(&slug));
    assert!(
        !ok && text.contains("[reordered]") && text.contains("position 6"),
        "{text}"
    );
}

pub async fn export_verifies_without_the_database() {
    let (w, _org, slug) = chained_world().await;
    let file = w.server.data_dir.join("export.jsonl");
    let out = w.server.cli(&[
        "audit",
        "export",
        "--org",
        &slug,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pk = String::from_utf8_lossy(&w.server.cli(&["audit", "public-key"]).stdout)
        .trim()
        .to_string();
    assert_eq!(pk.len(), 64);
    // Elsewhere: a copy of the file, the public key, no database, no data folder.
    let elsewhere = std::env::temp_dir().join(unique("kura-verify-elsewhere"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let copy = elsewhere.join("export.jsonl");
    std::fs::copy(&file, &copy).unwrap();
    let run = |path: &std::path::Path, key: &str| {
        std::process::Command::new(kura_bin())
            .args(["audit", "verify", "--file"])
            .arg(path)
            .args(["--public-key", key, "--data-dir"])
            .arg(elsewhere.join("no-such-dir"))
            .env("KURA_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .unwrap()
    };
    let ok = run(&copy, &pk);
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // A wrong key fails, and so does an edited line.
    let other_key = "11".repeat(32);
    assert_eq!(run(&copy, &other_key).status.code(), Some(1));
    let text = std::fs::read_to_string(&copy).unwrap();
    let edited = text.replacen("doc-1.txt", "doc-9.txt", 1);
    assert_ne!(edited, text);
    std::fs::write(&copy, edited).unwrap();
    let bad = run(&copy, &pk);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("[modified]"));
    let _ = std::fs::remove_dir_all(&elsewhere);
}
