//! Breach readiness end to end: a scripted attacker with a valid session
//! downloads a whole project and is detected and contained while a normal
//! user is not flagged; a canary read alerts at once, by email (aiosmtpd)
//! and by signed webhook (a receiver on loopback); the scope report lists
//! exactly what the attacker touched and names the untouched organizations;
//! every kill switch takes effect on the next request.

use crate::harness::*;
use crate::smtp::SmtpSink;
use crate::zero_trust::step_up;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One webhook delivery as received.
#[derive(Clone, Debug)]
struct Delivery {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A minimal HTTP receiver on loopback that answers 200 to every POST and
/// keeps what it got.
fn webhook_receiver() -> (u16, Arc<Mutex<Vec<Delivery>>>) {
    webhook_receiver_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
}

/// [`webhook_receiver`] on a listener the caller bound.
fn webhook_receiver_on(listener: std::net::TcpListener) -> (u16, Arc<Mutex<Vec<Delivery>>>) {
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(100) {
            let Ok(mut conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line); // request line
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.insert(k.trim().to_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
                .min(1 << 20);
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            keep.lock().unwrap().push(Delivery { headers, body });
        }
    });
    (port, got)
}

fn hmac_hex(secret: &[u8], msg: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

async fn wait_alert(admin: &Client, org: &str, rule: &str, subject: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (st, v) = admin.get(&format!("/api/orgs/{org}/alerts")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if let Some(a) = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == rule && a["actor_user_id"] == subject)
        {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {rule} alert for {subject}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn detection(webhook: &str, files: u32) -> Value {
    json!({
        "bulk_download": {"enabled": true, "files": files, "bytes": 1u64 << 30, "minutes": 10, "contain": "end_sessions"},
        "new_project_bulk": {"enabled": false, "files": 30, "bytes": 1u64 << 30, "minutes": 10, "contain": "step_up"},
        "enumeration": {"enabled": true, "count": 200, "minutes": 5, "contain": "none"},
        // Working hours all day, every day: the test may run at any hour.
        "off_hours": {"enabled": true, "time_zone": "Asia/Tokyo", "start_hour": 0, "end_hour": 24, "weekdays_only": false, "contain": "none"},
        "notify_emails": ["soc@agency.example"],
        "webhook_url": webhook,
    })
}

pub async fn detect_contain_notify_and_scope() {
    let smtp = SmtpSink::start();
    let (hook_port, hooks) = webhook_receiver();
    let server = TestServer::start(ServerOpts {
        env: vec![
            ("KURA_SMTP_HOST".into(), "127.0.0.1".into()),
            ("KURA_SMTP_PORT".into(), smtp.port.to_string()),
            ("KURA_SMTP_TLS".into(), "none".into()),
            ("KURA_SMTP_FROM".into(), "Kura <kura@example.org>".into()),
            // The webhook receiver is on loopback.
            ("KURA_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()),
        ],
        ..ServerOpts::default()
    })
    .await;
    let root = server.bootstrap().await;
    let agency = root.create_org(&unique("agency"), None).await;
    let vendor = root.create_org(&unique("vendor"), None).await;
    let other = root.create_org(&unique("other"), None).await;
    // The vendor's step-up guard for bulk downloads is set high: this
    // attacker holds a valid session with a fresh factor.
    let (st, v) = root
        .json(
            Method::PUT,
            &format!("/api/orgs/{vendor}/policy"),
            json!({"webauthn_for_admins": false, "bulk_download_files": 10000}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let admin_a = root.create_user(&agency, "agency-admin", true).await;
    let admin_v = root.create_user(&vendor, "vendor-admin", true).await;
    let admin_c = root.create_user(&other, "other-admin", true).await;
    let (st, v) = admin_a
        .json(
            Method::PUT,
            &format!("/api/orgs/{agency}/detection"),
            detection(&format!("http://127.0.0.1:{hook_port}/hook"), 15),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let secret = v["webhook_secret"]
        .as_str()
        .expect("secret shown once")
        .to_string();
    let (_, again) = admin_a.get(&format!("/api/orgs/{agency}/detection")).await;
    assert!(
        again.get("webhook_secret").is_none(),
        "the secret is not shown again"
    );
    // Bad rules are refused with a clear error.
    let (st, v) = admin_a
        .json(
            Method::PUT,
            &format!("/api/orgs/{agency}/detection"),
            json!({"webhook_url": "http://203.0.113.9/x"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Days off count as outside working hours; they are kept sorted, once,
    // and a date that does not exist is refused.
    let mut rules = detection(&format!("http://127.0.0.1:{hook_port}/hook"), 15);
    rules["off_hours"]["holidays"] = json!(["2001-05-03", "2001-01-01", "2001-05-03"]);
    let (st, v) = admin_a
        .json(
            Method::PUT,
            &format!("/api/orgs/{agency}/detection"),
            rules.clone(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, saved) = admin_a.get(&format!("/api/orgs/{agency}/detection")).await;
    assert_eq!(
        saved["off_hours"]["holidays"],
        json!(["2001-01-01", "2001-05-03"])
    );
    rules["off_hours"]["holidays"] = json!(["2001-02-30"]);
    let (st, v) = admin_a
        .json(Method::PUT, &format!("/api/orgs/{agency}/detection"), rules)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // The agency's project: 80 files in two folders, and a canary.
    let p = admin_a.create_project("Procurement 2027").await;
    let f1 = admin_a.mkdir(&p, &p.root, "specs").await;
    let f2 = admin_a.mkdir(&p, &p.root, "contracts").await;
    let mut files = Vec::new();
    for i in 0..80 {
        let folder = if i % 2 == 0 { &f1 } else { &f2 };
        let id = admin_a
            .upload_ok(
                &p,
                folder,
                &format!("doc-{i:02}.txt"),
                format!("content {i}").into_bytes(),
            )
            .await;
        files.push(id);
    }
    let canary = admin_a
        .upload_ok(&p, &p.root, "budget-master.xlsx", b"bait".to_vec())
        .await;
    let st = admin_a
        .send(admin_a.request(
            Method::PUT,
            &format!("/api/projects/{}/files/{canary}/canary", p.id),
        ))
        .await
        .0;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // Only the owning organization's admins mark canaries.
    let st = admin_v
        .send(admin_v.request(
            Method::PUT,
            &format!("/api/projects/{}/files/{canary}/canary", p.id),
        ))
        .await
        .0;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let normal = admin_a.create_user(&agency, "clerk", false).await;
    let attacker = admin_v.create_user(&vendor, "vendor-engineer", false).await;
    admin_a.add_member(&p, &normal.email(), "member").await;
    admin_a.add_member(&p, &attacker.email(), "viewer").await;

    // Normal work: a few listings and downloads.
    for f in [&p.root, &f1, &f2] {
        let (st, _) = normal
            .get(&format!("/api/projects/{}/folders/{f}/children", p.id))
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    for id in files.iter().take(5) {
        let r = normal
            .download(&format!("/api/projects/{}/files/{id}/content", p.id))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    // The scripted attacker: list, then fetch everything at a steady pace.
    let (st, _) = attacker
        .get(&format!(
            "/api/projects/{}/folders/{}/children",
            p.id, p.root
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut fetched: BTreeSet<String> = BTreeSet::new();
    let mut stopped = None;
    for (i, id) in files.iter().enumerate() {
        let r = attacker
            .download(&format!("/api/projects/{}/files/{id}/content", p.id))
            .await;
        if r.status() == StatusCode::OK {
            fetched.insert(id.clone());
        } else {
            stopped = Some((i, r.status()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (at, status) = stopped.expect("the attacker was cut off before the end");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session was ended");
    assert!(
        fetched.len() > 15 && at < files.len(),
        "{at} files before containment"
    );
    let alert = wait_alert(&admin_a, &agency, "bulk_download", &attacker.user_id()).await;
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["containment"], "end_sessions");
    assert_eq!(alert["status"], "open");
    // The normal user was not flagged.
    let (_, all) = admin_a.get(&format!("/api/orgs/{agency}/alerts")).await;
    assert!(
        !all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["actor_user_id"] == normal.user_id().as_str()),
        "normal work raised no alert: {all}"
    );
    // Other organizations do not see the agency's alerts.
    let (st, _) = admin_c.get(&format!("/api/orgs/{agency}/alerts")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, c_alerts) = admin_c.get(&format!("/api/orgs/{other}/alerts")).await;
    assert!(c_alerts["items"].as_array().unwrap().is_empty());

    // Alert delivered by email and by signed webhook.
    smtp.wait_for("soc@agency.example", "bulk_download").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let delivery = loop {
        if let Some(d) = hooks.lock().unwrap().iter().find(|d| {
            serde_json::from_slice::<Value>(&d.body).is_ok_and(|v| v["alert"]["id"] == alert["id"])
        }) {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "no webhook delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sig = delivery.headers.get("kura-signature").expect("signed");
    let (t, v1) = sig.split_once(",v1=").unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(&delivery.body);
    assert_eq!(
        v1,
        hmac_hex(secret.as_bytes(), &msg),
        "HMAC signature verifies"
    );
    assert_ne!(v1, hmac_hex(b"wrong", &msg));

    // Canary: one read by the clerk is a critical alert at once, and the
    // clerk's session must step up before anything else.
    let r = normal
        .download(&format!("/api/projects/{}/files/{canary}/content", p.id))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let started = Instant::now();
    let c_alert = wait_alert(&admin_a, &agency, "canary", &normal.user_id()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "canary alert took {:?}",
        started.elapsed()
    );
    assert_eq!(c_alert["severity"], "critical");
    smtp.wait_for("soc@agency.example", "canary").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !hooks.lock().unwrap().iter().any(|d| {
        serde_json::from_slice::<Value>(&d.body).is_ok_and(|v| v["alert"]["id"] == c_alert["id"])
    }) {
        assert!(Instant::now() < deadline, "no canary webhook");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = normal
        .download(&format!(
            "/api/projects/{}/files/{}/content",
            p.id, files[0]
        ))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "contained: step-up first"
    );
    let (st, v) = normal.get("/api/projects").await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("step-up-required")),
        "not even the project names"
    );
    let normal = step_up(&normal).await;
    let r = normal
        .download(&format!(
            "/api/projects/{}/files/{}/content",
            p.id, files[0]
        ))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "after step-up the clerk works on"
    );
    // Acknowledge and close.
    let (st, v) = admin_a
        .json(
            Method::POST,
            &format!(
                "/api/orgs/{agency}/alerts/{}/status",
                c_alert["id"].as_str().unwrap()
            ),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "closed");
    let (st, _) = admin_c
        .json(
            Method::POST,
            &format!(
                "/api/orgs/{other}/alerts/{}/status",
                c_alert["id"].as_str().unwrap()
            ),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another organization's alert");

    // Responses are audited.
    let (_, ev) = root
        .get("/api/admin/audit?action=alert.contain&limit=100")
        .await;
    assert!(ev["items"].as_array().unwrap().len() >= 2, "{ev}");
    let (_, ev) = root
        .get("/api/admin/audit?action=alert.notify&limit=100")
        .await;
    assert!(
        ev["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"]["response"]["channel"] == "webhook" && e["outcome"] == "success"),
        "{ev}"
    );

    // Scope report: exactly the files the attacker fetched, per organization.
    let (st, rep) = root
        .get(&format!(
            "/api/admin/incident/scope?actor={}",
            attacker.user_id()
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{rep}");
    let aff = rep["affected"].as_array().unwrap();
    let a = aff
        .iter()
        .find(|o| o["org_id"] == agency.as_str())
        .expect("agency affected");
    let reported: BTreeSet<String> = a["projects"][0]["files_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["node_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reported, fetched,
        "the report lists exactly the files the script fetched"
    );
    let bytes: i64 = a["projects"][0]["files_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["bytes_served"].as_i64().unwrap())
        .sum();
    assert!(bytes > 0);
    assert!(a["projects"][0]["listed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["action"] == "folder.list"));
    assert!(
        rep["unaffected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["org_id"] == other.as_str()),
        "{rep}"
    );
    assert!(!rep["unaffected"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["org_id"] == agency.as_str()));
    // By the attacker's address and session, too.
    let (st, by_ip) = root.get("/api/admin/incident/scope?ip=127.0.0.0/8").await;
    assert_eq!(st, StatusCode::OK, "{by_ip}");
    assert!(by_ip["events_matched"].as_u64().unwrap() > 0);
    // An organization admin sees only their organization.
    let (st, mine) = admin_c
        .get(&format!(
            "/api/orgs/{other}/incident/scope?actor={}",
            attacker.user_id()
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    assert!(mine["affected"].as_array().unwrap().is_empty());
    assert_eq!(mine["unaffected"].as_array().unwrap().len(), 1);
    let (st, _) = admin_c
        .get(&format!(
            "/api/orgs/{agency}/incident/scope?actor={}",
            attacker.user_id()
        ))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = root
        .get("/api/admin/incident/scope?actor=x&ip=1.2.3.4")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // CSV and HTML.
    let r = root
        .download(&format!(
            "/api/admin/incident/scope?actor={}&format=csv",
            attacker.user_id()
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let csv = r.text().await.unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.contains("\"read\"")).count(),
        fetched.len(),
        "{csv}"
    );
    assert!(csv.contains("\"unaffected\""));
    let r = root
        .download(&format!(
            "/api/admin/incident/scope?actor={}&format=html",
            attacker.user_id()
        ))
        .await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("doc-") && html.contains("Organizations with no access"),
        "{html}"
    );
    // The CLI writes the same report.
    let out = server.cli(&[
        "incident",
        "scope",
        "--actor",
        &attacker.email(),
        "--format",
        "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        cli_csv.lines().filter(|l| l.contains("\"read\"")).count(),
        fetched.len()
    );

    // The account's owner gets it back: forced reset, email link, new factor.
    let (st, v) = admin_v
        .json(
            Method::POST,
            &format!(
                "/api/orgs/{vendor}/users/{}/force-reset",
                attacker.user_id()
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let anon = server.client();
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/login",
            json!({"email": attacker.email(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["code"], "password-reset-required");
    let (st, _) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset",
            json!({"email": attacker.email()}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let mail = smtp
        .wait_for(&attacker.email(), "reset your password")
        .await;
    let token = mail
        .body
        .split("token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_string();
    let new_pw = "a fresh passphrase nobody stole";
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset/confirm",
            json!({"token": token, "password": new_pw}),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let back = anon.login(&attacker.email(), new_pw).await;
    let (st, _) = back.get("/api/me").await;
    assert_eq!(st, StatusCode::OK, "re-enrolled and signed in");
}

pub async fn kill_switches_take_effect_on_the_next_request() {
    let server = TestServer::start(ServerOpts {
        // A proxy in front: X-Forwarded-For says who is not on the host.
        env: vec![("KURA_BEHIND_TLS_PROXY".into(), "true".into())],
        ..ServerOpts::default()
    })
    .await;
    let root = server.bootstrap().await;
    let slug = unique("ks");
    let org = root.create_org(&slug, None).await;
    let admin = root.create_user(&org, "ks-admin", true).await;
    let u = admin.create_user(&org, "ks-user", false).await;
    let p = u.create_project("Kill switches").await;
    let f = u.upload_ok(&p, &p.root, "a.txt", b"a".to_vec()).await;
    let content = format!("/api/projects/{}/files/{f}/content", p.id);

    // Platform read-only, from the CLI.
    let out = server.cli(&["admin", "platform-mode", "read-only"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, v) = u.upload(&p, &p.root, "b.txt", b"b".to_vec()).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "read-only");
    assert_eq!(
        u.download(&content).await.status(),
        StatusCode::OK,
        "reads go on"
    );
    let out = server.cli(&["admin", "platform-mode", "normal"]);
    assert!(out.status.success());
    u.upload_ok(&p, &p.root, "b.txt", b"b".to_vec()).await;

    // Platform suspension, from the API: every session ends at once.
    let (st, v) = root
        .json(
            Method::PUT,
            "/api/admin/platform/mode",
            json!({"mode": "suspended"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        u.download(&content).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        root.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "the admin's session too"
    );
    let anon = server.client();
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/login",
            json!({"email": u.email(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "platform-suspended");
    // Off the host: the maintenance page, health checks still answer.
    let far = |path: &str| {
        anon.request(Method::GET, path)
            .header("x-forwarded-for", "203.0.113.9")
            .header("accept", "text/html")
    };
    let r = far("/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("maintenance"));
    assert_eq!(
        far("/healthz").send().await.unwrap().status(),
        StatusCode::OK
    );
    // Break-glass: the platform administrator on the host signs in.
    let root = server.client().login(ADMIN_EMAIL, PASSWORD).await;
    let (st, v) = root
        .json(
            Method::PUT,
            "/api/admin/platform/mode",
            json!({"mode": "normal"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let u = server.client().login(&u.email(), PASSWORD).await;
    assert_eq!(u.download(&content).await.status(), StatusCode::OK);
    let (_, ev) = root
        .get("/api/admin/audit?action=platform.mode&limit=10")
        .await;
    assert_eq!(ev["items"].as_array().unwrap().len(), 4, "{ev}");

    // Organization suspension, from the CLI.
    let out = server.cli(&["admin", "suspend-org", "--org", &slug]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        u.download(&content).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let out = server.cli(&["admin", "reinstate-org", "--org", &slug]);
    assert!(out.status.success());
    assert_eq!(u.download(&content).await.status(), StatusCode::OK);

    // Account lock, from the CLI.
    let out = server.cli(&["admin", "lock", "--email", &u.email()]);
    assert!(out.status.success());
    assert_eq!(
        u.download(&content).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let out = server.cli(&["admin", "unlock", "--email", &u.email()]);
    assert!(out.status.success());

    // Forced password reset and re-enrolment for the whole organization
    // (the suspension above ended the admin's session too).
    let u = server.client().login(&u.email(), PASSWORD).await;
    let admin = server.client().login(&admin.email(), PASSWORD).await;
    let (st, v) = admin
        .json(
            Method::POST,
            &format!("/api/orgs/{org}/force-reset"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["users"], 1, "everyone but the admin who threw the switch");
    assert_eq!(
        u.download(&content).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/login",
            json!({"email": u.email(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("password-reset-required"))
    );
    // The CLI does the same for one user, and reports it.
    let out = server.cli(&["admin", "force-reset", "--email", &admin.email()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(admin.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
}

/// (tries so far, state, µs until its next try) of the alert's webhook notice.
async fn webhook_notice(db_url: &str, alert_id: &str) -> Option<(i64, String, i64)> {
    use sqlx::Row;
    let mut c = database(db_url).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    sqlx::query(
        "SELECT attempts, state, next_at FROM alert_deliveries WHERE alert_id = $1 AND channel = 'webhook'",
    )
    .bind(alert_id)
    .fetch_optional(&mut c)
    .await
    .expect("notice")
    .map(|r| {
        (
            r.try_get::<i64, _>(0).unwrap(),
            r.try_get::<String, _>(1).unwrap(),
            r.try_get::<i64, _>(2).unwrap() - now,
        )
    })
}

/// An alert's webhook is kept while the receiver is down, across a restart
/// of the server, and delivered (signed) once the receiver is up; the trail
/// records the delivery with the number of tries.
pub async fn alert_notices_wait_for_the_receiver_across_a_restart() {
    // A port with nothing listening yet: every try is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = || ServerOpts {
        env: vec![
            ("KURA_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()),
            ("KURA_ALERT_RETRY_SECONDS".into(), "1".into()),
        ],
        ..ServerOpts::default()
    };
    let mut server = TestServer::start(opts()).await;
    let root = server.bootstrap().await;
    let org = root.create_org(&unique("agency"), None).await;
    let admin = root.create_user(&org, "agency-admin", true).await;
    let (st, v) = admin
        .json(
            Method::PUT,
            &format!("/api/orgs/{org}/detection"),
            detection(&format!("http://127.0.0.1:{port}/hook"), 1000),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let p = admin.create_project("Bait").await;
    let canary = admin
        .upload_ok(&p, &p.root, "budget-master.xlsx", b"bait".to_vec())
        .await;
    let st = admin
        .send(admin.request(
            Method::PUT,
            &format!("/api/projects/{}/files/{canary}/canary", p.id),
        ))
        .await
        .0;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let r = admin
        .download(&format!("/api/projects/{}/files/{canary}/content", p.id))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let alert = wait_alert(&root, &org, "canary", &admin.user_id()).await;
    let alert_id = alert["id"].as_str().unwrap().to_string();
    // The receiver is down: the notice waits in the database, tried again.
    // Stop between two tries (not while a node holds it: a claim lasts
    // minutes), i.e. when its next try is due in a moment, not yet.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match webhook_notice(&server.db_url, &alert_id).await {
            Some((tries, state, due_in))
                if tries >= 1 && (300_000..60_000_000).contains(&due_in) =>
            {
                assert_eq!(state, "pending");
                break;
            }
            other => assert!(Instant::now() < deadline, "no failed try yet: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop();
    // The receiver comes up while the server is down; the restarted
    // server finds the notice and delivers it.
    let (_, hooks) = webhook_receiver_on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    let restarted = TestServer::start_on(server.data_dir.clone(), server.db_url.clone(), opts());
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let got = hooks.lock().unwrap().iter().find_map(|d| {
            let v: Value = serde_json::from_slice(&d.body).ok()?;
            (v["alert"]["id"] == alert_id.as_str()).then(|| d.headers.clone())
        });
        if let Some(headers) = got {
            assert!(
                headers
                    .get("kura-signature")
                    .is_some_and(|s| s.starts_with("t=") && s.contains(",v1=")),
                "{headers:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the webhook never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (tries, state, _) = webhook_notice(&restarted.db_url, &alert_id)
            .await
            .expect("notice");
        if state == "sent" {
            assert!(tries >= 2, "{tries}");
            break;
        }
        assert!(Instant::now() < deadline, "still {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The trail says it was delivered, and after how many tries (on SQLite
    // a fresh event may still be in the tail).
    use sqlx::Row;
    let sql = if backend_is_postgres() {
        "SELECT detail FROM audit_events WHERE action = 'alert.notify' AND outcome = 'success'"
    } else {
        "SELECT detail FROM audit_events WHERE action = 'alert.notify' AND outcome = 'success' \
         UNION ALL SELECT detail FROM audit_tail WHERE action = 'alert.notify' AND outcome = 'success'"
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = database(&restarted.db_url).await;
        let details: Vec<String> = sqlx::query(sql)
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>(0).unwrap())
            .collect();
        if details
            .iter()
            .any(|d| d.contains("webhook") && d.contains("\"tries\""))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{details:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(restarted);
}

/// Move every event up to the last download `micros` into the past,
/// wherever it waits: the burst, and all that came before it, happened
/// then (the append-only triggers are lifted for it: this test edits the
/// trail on purpose, and does not verify it).
async fn backdate_downloads(db_url: &str, micros: i64) {
    let mut c = database(db_url).await;
    let last = "(SELECT MAX(id) FROM audit_events WHERE action = 'file.download')";
    let last_anywhere =
        "(SELECT MAX(id) FROM (SELECT id FROM audit_events WHERE action = 'file.download' \
         UNION ALL SELECT id FROM audit_tail WHERE action = 'file.download') d)";
    let statements: Vec<String> = if backend_is_postgres() {
        vec![
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update".into(),
            format!("UPDATE audit_events SET ts = ts - $1 WHERE id <= {last}"),
            "ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update".into(),
        ]
    } else {
        vec![
            "DROP TRIGGER audit_events_no_update".into(),
            "DROP TRIGGER audit_tail_no_update".into(),
            format!("UPDATE audit_events SET ts = ts - $1 WHERE id <= {last_anywhere}"),
            format!("UPDATE audit_tail SET ts = ts - $1 WHERE id <= {last_anywhere}"),
        ]
    };
    for sql in &statements {
        let q = sqlx::query(sql);
        let q = if sql.contains("$1") {
            q.bind(micros)
        } else {
            q
        };
        q.execute(&mut c).await.expect(sql);
    }
}

/// A burst of downloads that straddles a restart is counted whole: the
/// detector rebuilds its windows from the recent trail when it starts, as
/// far back as the longest window a rule looks over (here three hours, with
/// half of the burst two hours before the restart).
pub async fn detection_windows_survive_a_restart() {
    let mut server = TestServer::start(ServerOpts::default()).await;
    let root = server.bootstrap().await;
    let org = root.create_org(&unique("agency"), None).await;
    let admin = root.create_user(&org, "agency-admin", true).await;
    let mut rules = detection("", 10);
    rules.as_object_mut().unwrap().remove("webhook_url");
    rules["bulk_download"]["minutes"] = json!(180);
    let (st, v) = admin
        .json(Method::PUT, &format!("/api/orgs/{org}/detection"), rules)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let p = admin.create_project("Archive").await;
    let mut files = Vec::new();
    for i in 0..12 {
        let id = admin
            .upload_ok(
                &p,
                &p.root,
                &format!("f-{i:02}.txt"),
                format!("{i}").into_bytes(),
            )
            .await;
        files.push(id);
    }
    let fetch = |c: Client, id: String, project: String| async move {
        let r = c
            .download(&format!("/api/projects/{project}/files/{id}/content"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    };
    // Six files (under the threshold of ten), then the detector's cursor
    // moves past them (it is stored every 2 s) and the server stops.
    for id in &files[..6] {
        fetch(admin.clone(), id.clone(), p.id.clone()).await;
    }
    // The cursor is stored with the first batch evaluated 2 s after the
    // last store: a later event (a listing) gives it one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (st, _) = admin
        .get(&format!(
            "/api/projects/{}/folders/{}/children",
            p.id, p.root
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    // The replay is what this test is about: the cursor must be past the
    // six downloads, or the restarted node would simply evaluate them again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        use sqlx::Row;
        let mut c = database(&server.db_url).await;
        let cursor: i64 = sqlx::query("SELECT value FROM settings WHERE key = 'detector_cursor'")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .try_get::<String, _>(0)
            .unwrap()
            .parse()
            .unwrap();
        let sql = if backend_is_postgres() {
            "SELECT MAX(id) FROM audit_events WHERE action = 'file.download'"
        } else {
            "SELECT MAX(id) FROM (SELECT id FROM audit_events WHERE action = 'file.download' \
             UNION ALL SELECT id FROM audit_tail WHERE action = 'file.download')"
        };
        let last: i64 = sqlx::query(sql)
            .fetch_one(&mut c)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        if cursor > last {
            break;
        }
        assert!(Instant::now() < deadline, "cursor {cursor} not past {last}");
        let _ = admin
            .get(&format!(
                "/api/projects/{}/folders/{}/children",
                p.id, p.root
            ))
            .await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let (_, v) = root.get(&format!("/api/orgs/{org}/alerts")).await;
    assert!(
        !v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "bulk_download"),
        "{v}"
    );
    server.stop();
    // While it is down, the first six downloads move two hours back: more
    // than the hour replayed by default, within the rule's three hours.
    backdate_downloads(&server.db_url, 2 * 3600 * 1_000_000).await;
    let restarted = TestServer::start_on(
        server.data_dir.clone(),
        server.db_url.clone(),
        ServerOpts::default(),
    );
    let (mut admin2, mut root2) = (admin.clone(), root.clone());
    admin2.base = restarted.base.clone();
    root2.base = restarted.base.clone();
    // Six more after the restart: twelve in the window, over ten.
    for id in &files[6..] {
        fetch(admin2.clone(), id.clone(), p.id.clone()).await;
    }
    // The restarted node evaluates once the stopped one's lease has run
    // out (at most 15 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    let a = loop {
        let (_, v) = root2.get(&format!("/api/orgs/{org}/alerts")).await;
        if let Some(a) = v["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|a| a["rule"] == "bulk_download" && a["actor_user_id"] == admin.user_id())
                .cloned()
        }) {
            break a;
        }
        assert!(Instant::now() < deadline, "no bulk_download alert: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Only six came after the restart: the window holds the six before it.
    assert!(a["detail"]["files"].as_u64().unwrap_or(0) > 10, "{a}");
    drop(restarted);
}
