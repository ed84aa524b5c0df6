//! Operations: bootstrap, health, metrics, OpenAPI, the separate admin
//! listener, fsck detecting corruption, master key rotation, the plain-HTTP
//! rule and graceful shutdown with an upload in flight.

use crate::files::world;
use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::Write;

pub async fn bootstrap_health_metrics_openapi() {
    let server = TestServer::start(ServerOpts::default()).await;
    let anon = server.client();
    assert_eq!(
        anon.http
            .get(format!("{}/healthz", anon.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        anon.http
            .get(format!("{}/readyz", anon.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // A wrong token is refused, the right one works once.
    let (st, _) = anon.json(Method::POST, "/api/bootstrap", json!({"token": "kboot_wrong", "email": "x@example.org", "display_name": "X", "password": PASSWORD})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let root = server.bootstrap().await;
    let (st, _) = anon.json(Method::POST, "/api/bootstrap", json!({"token": server.bootstrap_token.clone().unwrap(), "email": "y@example.org", "display_name": "Y", "password": PASSWORD})).await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "the bootstrap token is single-use"
    );
    let (st, me) = root.get("/api/me").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["user"]["platform_admin"], true);
    let m = anon
        .http
        .get(format!("{}/metrics", anon.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("kura_http_requests_total"), "{m}");
    assert!(m.contains("kura_audit_events_total"));
    let (st, doc) = anon.get("/api/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(
        doc["paths"]["/api/projects/{project_id}/files/{node_id}/content"]["get"]["operationId"]
            == "download_file"
    );
}

pub async fn separate_admin_listener() {
    let server = TestServer::start(ServerOpts {
        env: vec![],
        args: vec!["--admin-listen".into(), "127.0.0.1:0".into()],
    })
    .await;
    let root = server.bootstrap().await;
    let (st, _) = root.get("/api/admin/orgs").await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "platform administration is not on the public listener"
    );
    let mut on_admin = root.clone();
    on_admin.base = server.admin_base.clone().unwrap();
    let (st, v) = on_admin.get("/api/admin/orgs").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let public_metrics = root
        .http
        .get(format!("{}/metrics", root.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public_metrics.status(),
        StatusCode::NOT_FOUND,
        "metrics only on the admin listener"
    );
    let admin_metrics = root
        .http
        .get(format!("{}/metrics", on_admin.base))
        .send()
        .await
        .unwrap();
    assert_eq!(admin_metrics.status(), StatusCode::OK);
    let (st, _) = root.get("/api/me").await;
    assert_eq!(st, StatusCode::OK);
}

pub fn plain_http_refused_off_loopback() {
    let out = std::process::Command::new(kura_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(std::env::temp_dir().join(unique("never")))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing plain HTTP"));
}

pub async fn fsck_detects_corruption_and_rotation_keeps_data() {
    let mut w = world(ServerOpts::default(), None).await;
    let (a, p) = (w.alice.clone(), w.p.clone());
    let good = a
        .upload_ok(&p, &p.root, "good.txt", b"fine content".to_vec())
        .await;
    let data = random_bytes(3_000_000);
    let bad = a.upload_ok(&p, &p.root, "bad.bin", data).await;
    let out = w.server.cli(&["fsck", "--sweep-min-age-secs", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Flip one byte in the middle of the second blob on disk.
    let mut blobs: Vec<_> = Vec::new();
    for d in std::fs::read_dir(w.server.data_dir.join("blobs"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            blobs.push(f.path());
        }
    }
    let target = blobs
        .iter()
        .find(|b| std::fs::metadata(b).unwrap().len() > 100_000)
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(&target).unwrap();
    // Past the first 1 MiB batch, so a full download starts and is then cut off.
    bytes[2_600_000] ^= 0x01;
    std::fs::write(&target, bytes).unwrap();

    let out = w.server.cli(&["fsck", "--sweep-min-age-secs", "0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("CORRUPT") && text.contains("1 corrupt"),
        "{text}"
    );

    // The corrupt range is never served; the intact first chunk still is.
    let r = a
        .request(
            Method::GET,
            &format!("/api/projects/{}/files/{bad}/content", p.id),
        )
        .header("range", "bytes=2590000-2590100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let r = a
        .request(
            Method::GET,
            &format!("/api/projects/{}/files/{bad}/content", p.id),
        )
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    // The transfer starts (the first batch is intact) and is cut off at the
    // damaged chunk: the client never gets the content.
    let full = a
        .request(
            Method::GET,
            &format!("/api/projects/{}/files/{bad}/content", p.id),
        )
        .send()
        .await;
    let completed = match full {
        Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
        Err(_) => false,
    };
    assert!(
        !completed,
        "a full download of a corrupt blob is cut off, never completed"
    );
    let (_, ev) = w.root.get("/api/admin/audit?action=blob.corrupt").await;
    assert!(
        !ev["items"].as_array().unwrap().is_empty(),
        "corruption is audited"
    );

    // Deleting a blob is reported as missing.
    std::fs::remove_file(&target).unwrap();
    let out = w.server.cli(&["fsck", "--sweep-min-age-secs", "0"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISSING"));

    // Rotate the master key with the server stopped; data stays readable.
    w.server.stop();
    let key_path = w.server.data_dir.join("master.key");
    let before = std::fs::read(&key_path).unwrap();
    let out = w.server.cli(&["admin", "rotate-master-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(before, std::fs::read(&key_path).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let restarted = TestServer::start_on(
        w.server.data_dir.clone(),
        w.server.db_url.clone(),
        ServerOpts::default(),
    );
    let a2 = restarted.client().login(&a.email(), PASSWORD).await;
    let r = a2
        .download(&format!("/api/projects/{}/files/{good}/content", p.id))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"fine content");
    // An old key no longer opens the data.
    drop(restarted);
}

pub async fn cli_admin_commands() {
    let server = TestServer::start(ServerOpts::default()).await;
    let _root = server.bootstrap().await;
    let out = server.cli(&[
        "admin",
        "create-org",
        "--name",
        "CLI Org",
        "--slug",
        "cli-org",
        "--quota-bytes",
        "1000000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli(&[
        "admin",
        "create-user",
        "--org",
        "cli-org",
        "--email",
        "cli@example.org",
        "--name",
        "CLI User",
        "--org-admin",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let pw = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_string();
    // New organizations require a passkey or security key of their admins:
    // the password step offers only WebAuthn enrolment, and TOTP is refused.
    let anon = server.client();
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/login",
            json!({"email": "cli@example.org", "password": pw}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["code"], "mfa-enrolment-required");
    assert_eq!(v["methods"], json!(["webauthn"]));
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/enrol/totp",
            json!({"challenge": v["challenge"]}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "webauthn-required");
    let out = server.cli(&["admin", "show-policy", "--org", "cli-org"]);
    let policy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(policy["mfa_required"], true, "MFA is on by default");
    assert_eq!(policy["webauthn_for_admins"], true);
    let out = server.cli(&[
        "admin",
        "set-policy",
        "--org",
        "cli-org",
        "--json",
        r#"{"webauthn_for_admins": false, "lockout_threshold": 500}"#,
    ]);
    assert!(
        !out.status.success(),
        "a lockout threshold over 100 is refused"
    );
    let out = server.cli(&[
        "admin",
        "set-policy",
        "--org",
        "cli-org",
        "--json",
        r#"{"webauthn_for_admins": false}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = server.client().login("cli@example.org", &pw).await;
    // Lock, unlock, reset factors and revoke from the command line.
    let out = server.cli(&["admin", "lock", "--email", "cli@example.org"]);
    assert!(out.status.success());
    assert_eq!(
        c.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "a lock ends sessions"
    );
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/login",
            json!({"email": "cli@example.org", "password": pw}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account-locked"))
    );
    let out = server.cli(&["admin", "unlock", "--email", "cli@example.org"]);
    assert!(out.status.success());
    let out = server.cli(&["admin", "reset-mfa", "--email", "cli@example.org"]);
    assert!(out.status.success());
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/login",
            json!({"email": "cli@example.org", "password": pw}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa-enrolment-required")),
        "{v}"
    );
    let c = server.client().login("cli@example.org", &pw).await;
    let out = server.cli(&["admin", "revoke-sessions", "--org", "cli-org"]);
    assert!(out.status.success());
    assert_eq!(
        c.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "revoke-sessions ends them"
    );
    let c = server.client().login("cli@example.org", &pw).await;
    let out = server.cli(&[
        "admin",
        "set-role",
        "--email",
        "cli@example.org",
        "--org-admin",
        "false",
    ]);
    assert!(out.status.success());
    assert_eq!(
        c.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "a role change ends sessions"
    );
    let out = server.cli(&["admin", "list-users", "--org", "cli-org"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli@example.org"));
    let out = server.cli(&["admin", "list-orgs", "--json"]);
    let orgs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(orgs
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["slug"] == "cli-org"));
    let out = server.cli(&[
        "admin",
        "reset-password",
        "--email",
        "cli@example.org",
        "--password-stdin",
    ]);
    assert!(!out.status.success(), "empty stdin is not a valid password");
    let mut child = std::process::Command::new(kura_bin())
        .args([
            "admin",
            "reset-password",
            "--email",
            "cli@example.org",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .env("KURA_DATABASE_URL", &server.db_url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a brand new password\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    server
        .client()
        .login("cli@example.org", "a brand new password")
        .await;
    let (st, v) = _root.get("/api/admin/audit?action=user.set_role").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"][0]["credential"], "cli");
}

pub async fn graceful_shutdown_finishes_uploads() {
    let mut w = world(ServerOpts::default(), None).await;
    let (a, p) = (w.alice.clone(), w.p.clone());
    let addr = w.server.base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let path = format!(
        "/api/projects/{}/folders/{}/files?name=late.bin",
        p.id, p.root
    );
    let total = 2_000_000;
    let head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: kura_session={}\r\nX-CSRF-Token: {}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n", a.session.clone().unwrap(), a.csrf.clone().unwrap());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![3u8; total / 2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(w.server.pid().to_string())
        .status();
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.write_all(&vec![3u8; total / 2]).unwrap();
    let mut resp = String::new();
    use std::io::Read;
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let status = w.server.stop();
    assert!(status.success());
    let restarted = TestServer::start_on(
        w.server.data_dir.clone(),
        w.server.db_url.clone(),
        ServerOpts::default(),
    );
    let a2 = restarted.client().login(&a.email(), PASSWORD).await;
    let (_, kids) = a2
        .get(&format!(
            "/api/projects/{}/folders/{}/children",
            p.id, p.root
        ))
        .await;
    assert_eq!(kids["items"][0]["name"], "late.bin");
    assert_eq!(kids["items"][0]["size"], total);
}

/// HTTPS with rustls: a self-signed certificate made by openssl, checked
/// with curl (the test client here speaks plain HTTP only).
pub async fn tls_listener_serves_https_with_hsts() {
    let dir = std::env::temp_dir().join(unique("kura-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = TestServer::start(ServerOpts {
        env: vec![],
        args: vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ],
    })
    .await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let out = std::process::Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null"])
        .arg(format!("{}/healthz", server.base))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.starts_with("http/2 200") || head.starts_with("http/1.1 200"),
        "{head}"
    );
    assert!(head.contains("strict-transport-security"), "{head}");
    // Plain HTTP to the TLS port gets no answer.
    let plain = std::process::Command::new("curl")
        .args(["-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "{}/healthz",
            server.base.replace("https://", "http://")
        ))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each blob records SHA-256 (the digest clients see) and BLAKE3 (the one
/// reads check). A whole-file read whose digest does not match is refused
/// and audited; a blob stored before BLAKE3 was recorded is checked against
/// SHA-256; fsck checks both.
pub async fn digests_are_checked_on_read() {
    use sqlx::Connection;
    let w = world(ServerOpts::default(), None).await;
    let (a, p) = (&w.alice, &w.p);
    let id = a
        .upload_ok(p, &p.root, "digest.txt", b"digest me".to_vec())
        .await;
    let url = format!("/api/projects/{}/files/{id}/content", p.id);
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&w.server.db_url)
        .await
        .expect("connect to the database");
    let row: (String, String, Option<String>) = sqlx::query_as(
        "SELECT b.id, b.sha256, b.blake3 FROM blobs b JOIN file_versions v ON v.blob_id = b.id WHERE v.node_id = $1",
    )
    .bind(&id)
    .fetch_one(&mut db)
    .await
    .expect("the file's blob");
    let (blob, sha256, blake3) = (row.0, row.1, row.2.expect("BLAKE3 is recorded"));
    assert_eq!((sha256.len(), blake3.len()), (64, 64));
    assert_ne!(sha256, blake3);
    assert_eq!(a.download(&url).await.status(), StatusCode::OK);
    for (col, value, expect) in [
        // A wrong BLAKE3: refused.
        (
            "blake3",
            Some("0".repeat(64)),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        // None recorded (a blob from before): checked against SHA-256.
        ("blake3", None, StatusCode::OK),
        // ... and then a wrong SHA-256 is refused.
        (
            "sha256",
            Some("1".repeat(64)),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        // With BLAKE3 back, reads pass again (they check BLAKE3 only).
        ("blake3", Some(blake3.clone()), StatusCode::OK),
    ] {
        sqlx::query(&format!("UPDATE blobs SET {col} = $1 WHERE id = $2"))
            .bind(value)
            .bind(&blob)
            .execute(&mut db)
            .await
            .expect("update");
        assert_eq!(
            a.download(&url).await.status(),
            expect,
            "after setting {col}"
        );
    }
    let (_, ev) = w.root.get("/api/admin/audit?action=blob.corrupt").await;
    assert_eq!(ev["items"].as_array().unwrap().len(), 2, "{ev}");
    // fsck still finds the wrong SHA-256.
    let out = w.server.cli(&["fsck", "--sweep-min-age-secs", "0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("SHA-256"), "{text}");
}
