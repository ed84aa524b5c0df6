//! Zero-trust sign-in (issue 4): a stolen password alone opens nothing;
//! codes are single-use; throttling, lockout and identical answers; the
//! organization's allowed networks on every entry point; step-up before
//! sensitive actions; revocation by admins on the next request; NIST
//! password rules; per-address rate limits. Two organizations throughout.

use crate::factors::{fresh_code, now_step, secret_of, totp_at};
use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

async fn raw_login(c: &Client, email: &str, password: &str) -> (StatusCode, Value, bool) {
    let r = c
        .http
        .post(format!("{}/api/auth/login", c.base))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap_or("").starts_with("kura_session="));
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null), cookie)
}

async fn db(server: &TestServer) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = if server.db_url.starts_with("sqlite:") {
        format!("{}?mode=rw", server.db_url)
    } else {
        server.db_url.clone()
    };
    sqlx::AnyConnection::connect(&url).await.unwrap()
}

/// Confirm a fresh factor; the session secret is renewed.
pub(crate) async fn step_up(c: &Client) -> Client {
    let (method, code) = fresh_code(&c.email()).await;
    let r = c
        .request(Method::POST, "/api/auth/step-up")
        .json(&json!({"method": method, "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("kura_session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    let body: Value = r.json().await.unwrap();
    let mut n = c.clone();
    n.session = Some(cookie);
    n.csrf = body["csrf_token"].as_str().map(String::from);
    n
}

async fn audit_count(root: &Client, action: &str) -> usize {
    let (st, v) = root
        .get(&format!("/api/admin/audit?action={action}&limit=1000"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"].as_array().unwrap().len()
}

pub async fn stolen_password_opens_nothing() {
    let server = TestServer::start(ServerOpts::default()).await;
    let root = server.bootstrap().await;
    let org = root.create_org(&unique("agency"), None).await;
    let vendor = root.create_org(&unique("vendor"), None).await;
    let admin = root.create_user(&org, "admin", true).await;
    let u = admin.create_user(&org, "user", false).await;
    let p = u.create_project("Secret plans").await;
    let file = u
        .upload_ok(&p, &p.root, "plan.txt", b"the plan".to_vec())
        .await;
    let anon = root.anonymous();

    // The attacker has the password: a challenge, no cookie, no data.
    let (st, v, cookie) = raw_login(&anon, &u.email(), PASSWORD).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa-required")),
        "{v}"
    );
    assert!(!cookie, "no session before the second factor");
    let challenge = v["challenge"].as_str().unwrap().to_string();
    for (name, req) in [
        (
            "bearer",
            anon.request(Method::GET, "/api/me").bearer_auth(&challenge),
        ),
        (
            "cookie",
            anon.request(Method::GET, "/api/me")
                .header("cookie", format!("kura_session={challenge}")),
        ),
        (
            "download",
            anon.request(
                Method::GET,
                &format!("/api/projects/{}/files/{file}/content", p.id),
            )
            .bearer_auth(&challenge),
        ),
    ] {
        let (st, _) = anon.send(req).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "the challenge is no credential ({name})"
        );
    }
    // The web sign-in with the right password stops at the factor page.
    let form = anon.request(Method::GET, "/login").send().await.unwrap();
    let token_cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("kura_login="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string();
    let web = anon
        .http
        .post(format!("{}/login", anon.base))
        .header("cookie", format!("kura_login={token_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "email={}&password={}&login_token={token_cookie}",
            urlencode(&u.email()),
            urlencode(PASSWORD)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(web.status(), StatusCode::OK);
    assert!(web
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().starts_with("kura_session=")));
    let page = web.text().await.unwrap();
    assert!(
        page.contains("name=\"challenge\"") && page.contains("one-time-code"),
        "the factor page"
    );
    // Wrong codes: refused, audited, counted; the challenge dies after five.
    let before = audit_count(&root, "auth.mfa").await;
    for _ in 0..5 {
        let (st, v) = anon
            .json(
                Method::POST,
                "/api/auth/mfa",
                json!({"challenge": challenge, "method": "totp", "code": "000000"}),
            )
            .await;
        assert_eq!(
            (st, v["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid-code")),
            "{v}"
        );
    }
    assert_eq!(
        audit_count(&root, "auth.mfa").await,
        before + 5,
        "failed factors are audited"
    );
    let (_, code) = fresh_code(&u.email()).await;
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/mfa",
            json!({"challenge": challenge, "method": "totp", "code": code}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("challenge-invalid")),
        "five wrong codes void the challenge"
    );
    // Wrong codes count toward the lock like wrong passwords: the next
    // password attempt must wait. The admin clears the count.
    let (st, _, _) = raw_login(&anon, &u.email(), PASSWORD).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let (st, _) = admin
        .send(admin.request(
            Method::POST,
            &format!("/api/orgs/{org}/users/{}/unlock", u.user_id()),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    // A TOTP code is accepted once.
    let secret = secret_of(&u.email()).unwrap();
    let step = now_step() + 1;
    let code = totp_at(&secret, step);
    let mut accepted = 0;
    for _ in 0..2 {
        let (_, v, _) = raw_login(&anon, &u.email(), PASSWORD).await;
        let (st, _) = anon
            .json(
                Method::POST,
                "/api/auth/mfa",
                json!({"challenge": v["challenge"], "method": "totp", "code": code}),
            )
            .await;
        if st == StatusCode::OK {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "a replayed TOTP code is refused");
    // Malformed and oversized input: clear 4xx, nothing changes.
    let (_, v, _) = raw_login(&anon, &u.email(), PASSWORD).await;
    let ch = v["challenge"].as_str().unwrap();
    let (st, _) = anon
        .json(
            Method::POST,
            "/api/auth/mfa",
            json!({"challenge": ch, "method": "totp", "code": "9".repeat(100)}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/mfa/webauthn",
            json!({"challenge": ch, "credential": {"id": "x", "type": "public-key"}}),
        )
        .await;
    assert!(st.is_client_error(), "{st} {v}");
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/mfa",
            json!({"challenge": "kmfa_forged", "method": "totp", "code": "123456"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("challenge-invalid"))
    );
    let (st, _) = anon
        .json(
            Method::POST,
            "/api/auth/mfa",
            json!({"challenge": "x".repeat(5000), "method": "totp", "code": "123456"}),
        )
        .await;
    assert!(st.is_client_error());

    // Enrolment is only open to new (or admin-reset) accounts: once the
    // window closes, a stolen password cannot enrol the attacker's app.
    let late = admin.create_user(&org, "late", false).await;
    let fresh_email = format!("{}@example.org", unique("never"));
    let (st, _) = admin
        .json(
            Method::POST,
            &format!("/api/orgs/{org}/users"),
            json!({"email": fresh_email, "display_name": "Never", "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let mut c = db(&server).await;
    sqlx::query("UPDATE users SET mfa_enrol_until = 1 WHERE email = $1")
        .bind(&fresh_email)
        .execute(&mut c)
        .await
        .unwrap();
    let (st, v, cookie) = raw_login(&anon, &fresh_email, PASSWORD).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("mfa-enrolment-closed")),
        "{v}"
    );
    assert!(!cookie);

    // Recovery codes: each works once.
    let (st, codes) = late
        .send(late.request(Method::POST, "/api/me/recovery-codes"))
        .await;
    assert_eq!(st, StatusCode::OK);
    let code = codes["recovery_codes"][0].as_str().unwrap().to_string();
    let mut used = 0;
    for _ in 0..2 {
        let (_, v, _) = raw_login(&anon, &late.email(), PASSWORD).await;
        let (st, _) = anon
            .json(Method::POST, "/api/auth/mfa", json!({"challenge": v["challenge"], "method": "recovery", "code": code.to_uppercase()}))
            .await;
        if st == StatusCode::OK {
            used += 1;
        }
    }
    assert_eq!(used, 1, "a recovery code is spent once");

    // Factor management: the last factor stays where MFA is required.
    let (st, f) = late.get("/api/me/factors").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(f["mfa_required"], true);
    let first = f["items"][0]["id"].as_str().unwrap().to_string();
    let (st, v) = late.delete(&format!("/api/me/factors/{first}")).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{v}"
    );
    let (st, add) = late
        .send(
            late.request(Method::POST, "/api/me/factors/totp")
                .json(&json!({"name": "Backup phone"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{add}");
    let secret2 = crate::factors::decode_secret(add["secret"].as_str().unwrap());
    let (st, v) = late
        .json(
            Method::POST,
            &format!(
                "/api/me/factors/totp/{}/confirm",
                add["factor_id"].as_str().unwrap()
            ),
            json!({"code": totp_at(&secret2, now_step())}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = late
        .json(
            Method::PATCH,
            &format!("/api/me/factors/{first}"),
            json!({"name": "Old phone"}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = late.delete(&format!("/api/me/factors/{first}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, f) = late.get("/api/me/factors").await;
    assert_eq!(f["items"].as_array().unwrap().len(), 1);
    assert_eq!(f["items"][0]["name"], "Backup phone");

    // A vendor user from another organization sees none of it.
    let outsider = root.create_user(&vendor, "outsider", false).await;
    let (st, _) = outsider
        .get(&format!("/api/projects/{}/nodes/{file}", p.id))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

pub async fn throttling_lockout_and_identical_answers() {
    let server = TestServer::start(ServerOpts::default()).await;
    let root = server.bootstrap().await;
    let org = root.create_org(&unique("agency"), None).await;
    let other = root.create_org(&unique("vendor"), None).await;
    let admin = root.create_user(&org, "admin", true).await;
    let u = admin.create_user(&org, "user", false).await;
    let v_user = root.create_user(&other, "vendor", false).await;
    let anon = root.anonymous();

    // Wrong password and unknown account: same status, same body, similar time.
    let mut times = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (st1, b1, _) = raw_login(&anon, &v_user.email(), "not the password at all").await;
        times.0.push(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let (st2, b2, _) = raw_login(&anon, "nobody@example.org", "not the password at all").await;
        times.1.push(t.elapsed().as_secs_f64());
        assert_eq!((st1, &b1), (st2, &b2));
        assert_eq!(st1, StatusCode::UNAUTHORIZED);
    }
    times.0.sort_by(f64::total_cmp);
    times.1.sort_by(f64::total_cmp);
    let ratio = times.0[1] / times.1[1];
    assert!((0.33..3.0).contains(&ratio), "comparable timing: {times:?}");
    // After three failures each attempt waits: 429 with Retry-After, for
    // real and unknown accounts alike, and the password is not even tried.
    let r = anon
        .http
        .post(format!("{}/api/auth/login", anon.base))
        .json(&json!({"email": v_user.email(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let (st, v, _) = raw_login(&anon, "nobody@example.org", PASSWORD).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("signin-throttled"))
    );

    // Lock after the organization's threshold; audited; an admin unlocks.
    let (st, _) = admin
        .json(
            Method::PUT,
            &format!("/api/orgs/{org}/policy"),
            json!({"webauthn_for_admins": false, "lockout_threshold": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = raw_login(&anon, &u.email(), "wrong password one").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v, _) = raw_login(&anon, &u.email(), "wrong password two").await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account-locked")),
        "{v}"
    );
    // Anyone who knows the address can cause this lock: it stops new
    // sign-ins, not the owner's open session (an admin's lock does that).
    assert_eq!(
        u.get("/api/me").await.0,
        StatusCode::OK,
        "the owner's session survives a failure lock"
    );
    // ...but takes no confirmations while locked (no guessing with it).
    let (st, v) = u
        .json(
            Method::POST,
            "/api/auth/step-up",
            json!({"method": "totp", "code": "123456"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account-locked")),
        "{v}"
    );
    let (st, v, cookie) = raw_login(&anon, &u.email(), PASSWORD).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account-locked"))
    );
    assert!(!cookie);
    assert!(
        audit_count(&root, "auth.lock").await >= 1,
        "the lock is audited"
    );
    let (_, users) = admin.get(&format!("/api/orgs/{org}/users")).await;
    let row = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["email"] == u.email())
        .unwrap()
        .clone();
    assert_eq!(row["locked"], true);
    // Another organization's admin cannot unlock it.
    let admin_b = root.create_user(&other, "admin-b", true).await;
    let (st, _) = admin_b
        .send(admin_b.request(
            Method::POST,
            &format!(
                "/api/orgs/{org}/users/{}/unlock",
                row["id"].as_str().unwrap()
            ),
        ))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = admin
        .send(admin.request(
            Method::POST,
            &format!(
                "/api/orgs/{org}/users/{}/unlock",
                row["id"].as_str().unwrap()
            ),
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(audit_count(&root, "auth.unlock").await >= 1);
    let again = anon.login(&u.email(), PASSWORD).await;
    assert_eq!(again.get("/api/me").await.0, StatusCode::OK);
}

pub async fn networks_step_up_revocation_and_passwords() {
    let server = TestServer::start(ServerOpts::default()).await;
    let root = server.bootstrap().await;
    let org = root.create_org(&unique("agency"), None).await;
    let vendor = root.create_org(&unique("vendor"), None).await;
    let admin = root.create_user(&org, "admin", true).await;
    let u = admin.create_user(&org, "user", false).await;
    let token = u.with_token(false).await;
    let v_admin = root.create_user(&vendor, "vendor-admin", true).await;
    let v_user = v_admin.create_user(&vendor, "vendor", false).await;
    let p = u.create_project("Joint work").await;
    u.add_member(&p, &v_user.email(), "member").await;
    let f1 = u.upload_ok(&p, &p.root, "a.txt", b"a".to_vec()).await;
    let anon = root.anonymous();

    // Allowed networks: an admin cannot shut out their own address.
    let (st, v) = admin
        .json(
            Method::PUT,
            &format!("/api/orgs/{org}/policy"),
            json!({"webauthn_for_admins": false, "allowed_networks": ["192.0.2.0/24"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // The platform admin restricts the vendor: its session, its token and
    // its password sign-in all stop at once; the restriction lifted, they work.
    let v_token = v_user.with_token(true).await;
    let (st, _) = root
        .json(Method::PUT, &format!("/api/orgs/{vendor}/policy"), json!({"webauthn_for_admins": false, "allowed_networks": ["192.0.2.0/24", "2001:db8::/32"]}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = v_user.get("/api/me").await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("network-not-allowed"))
    );
    assert_eq!(v_token.get("/api/me").await.0, StatusCode::FORBIDDEN);
    let (st, v, cookie) = raw_login(&anon, &v_user.email(), PASSWORD).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("network-not-allowed"))
    );
    assert!(!cookie);
    let page = v_user.request(Method::GET, "/").send().await.unwrap();
    assert_eq!(
        page.status(),
        StatusCode::SEE_OTHER,
        "the web treats it as signed out"
    );
    let (st, _) = root
        .json(
            Method::PUT,
            &format!("/api/orgs/{vendor}/policy"),
            json!({"webauthn_for_admins": false, "allowed_networks": ["127.0.0.0/8", "::1/128"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v_user.get("/api/me").await.0, StatusCode::OK);
    // The project's organization restricts its networks: the vendor member
    // (whose own organization allows them) is refused there, nowhere else.
    let (st, _) = root
        .json(
            Method::PUT,
            &format!("/api/orgs/{org}/policy"),
            json!({"webauthn_for_admins": false, "allowed_networks": ["192.0.2.0/24"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = v_user
        .get(&format!("/api/projects/{}/nodes/{f1}", p.id))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("org-policy")),
        "{v}"
    );
    let (st, _) = root
        .json(
            Method::PUT,
            &format!("/api/orgs/{org}/policy"),
            json!({"webauthn_for_admins": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v_user
            .get(&format!("/api/projects/{}/nodes/{f1}", p.id))
            .await
            .0,
        StatusCode::OK
    );

    // Step-up: a factor older than the window no longer covers sensitive
    // actions; a fresh one renews the session secret.
    let (st, _) = admin
        .json(
            Method::PUT,
            &format!("/api/orgs/{org}/policy"),
            json!({"webauthn_for_admins": false, "bulk_download_files": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let f2 = u.upload_ok(&p, &p.root, "b.txt", b"b".to_vec()).await;
    let f3 = u.upload_ok(&p, &p.root, "c.txt", b"c".to_vec()).await;
    let mut c = db(&server).await;
    sqlx::query("UPDATE sessions SET mfa_at = mfa_at - 3600000000 WHERE mfa_at IS NOT NULL AND (user_id = $1 OR user_id = $2)")
        .bind(u.user_id())
        .bind(admin.user_id())
        .execute(&mut c)
        .await
        .unwrap();
    for f in [&f1, &f2] {
        let r = u
            .download(&format!("/api/projects/{}/files/{f}/content", p.id))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = u
        .download(&format!("/api/projects/{}/files/{f3}/content", p.id))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a bulk download needs step-up"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "step-up-required");
    let (st, v) = u
        .json(Method::POST, "/api/me/tokens", json!({"name": "sync"}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("step-up-required"))
    );
    let (st, v) = admin
        .json(Method::POST, &format!("/api/orgs/{org}/users"), json!({"email": format!("{}@example.org", unique("x")), "display_name": "X", "password": PASSWORD}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("step-up-required")),
        "admin actions need step-up"
    );
    let (st, v) = u
        .json(
            Method::POST,
            &format!("/api/projects/{}/members", p.id),
            json!({"email": admin.email(), "role": "viewer"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("step-up-required")),
        "member changes need step-up"
    );
    // The API token (created under a fresh factor) keeps working for sync.
    assert_eq!(
        token
            .download(&format!("/api/projects/{}/files/{f3}/content", p.id))
            .await
            .status(),
        StatusCode::OK
    );
    let u2 = step_up(&u).await;
    assert_eq!(
        u.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "step-up rotates the session secret"
    );
    assert_eq!(
        u2.download(&format!("/api/projects/{}/files/{f3}/content", p.id))
            .await
            .status(),
        StatusCode::OK
    );
    let (st, _) = u2
        .json(Method::POST, "/api/me/tokens", json!({"name": "sync"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(audit_count(&root, "auth.step_up").await >= 1);
    assert!(audit_count(&root, "download.step_up_required").await >= 1);

    // Revocation by admins takes effect on the very next request.
    let admin = step_up(&admin).await;
    let (st, v) = admin
        .send(admin.request(
            Method::POST,
            &format!("/api/orgs/{org}/users/{}/revoke-sessions", u.user_id()),
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["revoked"].as_u64().unwrap() >= 2);
    assert_eq!(u2.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        token.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "tokens too"
    );
    // Organization-wide: a vendor admin cannot touch the agency; the
    // agency's admin ends every agency session (their own included) and
    // none of the vendor's.
    let u3 = anon.login(&u.email(), PASSWORD).await;
    let (st, _) = v_admin
        .send(v_admin.request(Method::POST, &format!("/api/orgs/{org}/revoke-sessions")))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = u3
        .send(u3.request(Method::POST, &format!("/api/orgs/{org}/revoke-sessions")))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = admin
        .send(
            admin
                .request(Method::POST, &format!("/api/orgs/{org}/revoke-sessions"))
                .json(&json!({"tokens": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(u3.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(admin.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(v_user.get("/api/me").await.0, StatusCode::OK);

    // Passwords (NIST SP 800-63B): common ones are refused; 15 characters
    // where the password is the only factor.
    let (st, _) = root
        .json(
            Method::PUT,
            &format!("/api/orgs/{vendor}/policy"),
            json!({"mfa_required": false, "webauthn_for_admins": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    for (pw, want) in [
        ("password1234", 400),
        ("short pw 12", 400),
        ("correct horse battery", 201),
    ] {
        let (st, v) = v_admin
            .json(Method::POST, &format!("/api/orgs/{vendor}/users"), json!({"email": format!("{}@example.org", unique("pw")), "display_name": "P", "password": pw}))
            .await;
        assert_eq!(st.as_u16(), want, "{pw}: {v}");
    }
    // A password-only session (no factor, no MFA required) steps up with the password.
    let email = format!("{}@example.org", unique("plain"));
    let (st, _) = v_admin
        .json(
            Method::POST,
            &format!("/api/orgs/{vendor}/users"),
            json!({"email": email, "display_name": "Plain", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _, cookie) = raw_login(&anon, &email, "correct horse battery").await;
    assert_eq!(st, StatusCode::OK);
    assert!(cookie);
    let plain = anon.login(&email, "correct horse battery").await;
    let (st, v) = plain
        .json(Method::POST, "/api/me/tokens", json!({"name": "t"}))
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("step-up-required"))
    );
    let (st, _) = plain
        .json(
            Method::POST,
            "/api/auth/step-up",
            json!({"method": "password", "password": "wrong"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = plain
        .json(
            Method::POST,
            "/api/auth/step-up",
            json!({"method": "password", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

pub async fn rate_limits_per_address() {
    let server = TestServer::start(ServerOpts {
        env: vec![
            ("KURA_SIGNIN_RATE_PER_MINUTE".into(), "4".into()),
            ("KURA_ANONYMOUS_RATE_PER_MINUTE".into(), "30".into()),
        ],
        ..Default::default()
    })
    .await;
    let root = server.bootstrap().await;
    let anon = root.anonymous();
    let mut limited = None;
    for i in 0..8 {
        let (st, v, _) = raw_login(
            &anon,
            &format!("flood{i}@example.org"),
            "not the password at all",
        )
        .await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(v);
            break;
        }
    }
    let v = limited.expect("sign-in attempts are rate limited per address");
    assert_eq!(v["code"], "rate-limited");
    // Signed-in requests are not held back by the sign-in flood.
    assert_eq!(root.get("/api/me").await.0, StatusCode::OK);
    let mut anon_limited = false;
    for _ in 0..60 {
        if anon.get("/api/me").await.0 == StatusCode::TOO_MANY_REQUESTS {
            anon_limited = true;
            break;
        }
    }
    assert!(
        anon_limited,
        "requests without a credential are rate limited too"
    );
    assert_eq!(root.get("/api/me").await.0, StatusCode::OK);
}

pub async fn email_reset_and_notices() {
    let smtp = crate::smtp::SmtpSink::start();
    let server = TestServer::start(ServerOpts {
        env: vec![
            ("KURA_SMTP_HOST".into(), "127.0.0.1".into()),
            ("KURA_SMTP_PORT".into(), smtp.port.to_string()),
            ("KURA_SMTP_TLS".into(), "none".into()),
            ("KURA_SMTP_FROM".into(), "Kura <kura@example.org>".into()),
            ("KURA_PUBLIC_URL".into(), "https://kura.example.org".into()),
        ],
        ..Default::default()
    })
    .await;
    let root = server.bootstrap().await;
    let org = root.create_org(&unique("agency"), None).await;
    let admin = root.create_user(&org, "admin", true).await;
    let u = admin.create_user(&org, "user", false).await;
    let anon = root.anonymous();

    // Asking for a reset answers the same for real and unknown accounts.
    let (st1, b1) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset",
            json!({"email": u.email()}),
        )
        .await;
    let (st2, b2) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset",
            json!({"email": "nobody@example.org"}),
        )
        .await;
    assert_eq!((st1, &b1), (StatusCode::ACCEPTED, &b2));
    assert_eq!(st2, StatusCode::ACCEPTED);
    let mail = smtp.wait_for(&u.email(), "reset your password").await;
    assert!(mail.body.contains("パスワード"), "English and Japanese");
    let token = mail
        .body
        .split("https://kura.example.org/reset-password?token=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a reset link")
        .to_string();
    // Password rules apply; a good new password ends every session.
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset/confirm",
            json!({"token": token, "password": "password1234"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let new_pw = "a brand new passphrase";
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset/confirm",
            json!({"token": token, "password": new_pw}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(
        u.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED,
        "sessions end"
    );
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset/confirm",
            json!({"token": token, "password": "another new passphrase"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("reset-token-invalid")),
        "a token works once"
    );
    // The reset opened nothing by itself: the second factor is still due.
    let (st, v, cookie) = raw_login(&anon, &u.email(), new_pw).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("mfa-required"))
    );
    assert!(!cookie);
    // An expired token is refused too.
    let (st, _) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset",
            json!({"email": u.email()}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let mut c = db(&server).await;
    sqlx::query("UPDATE password_resets SET expires_at = 1 WHERE used_at IS NULL")
        .execute(&mut c)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let second = loop {
        let all: Vec<_> = smtp
            .messages()
            .into_iter()
            .filter(|m| m.subject.contains("reset your password"))
            .collect();
        if all.len() >= 2 {
            break all[1].body.clone();
        }
        assert!(std::time::Instant::now() < deadline, "second reset email");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let token2 = second
        .split("reset-password?token=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let (st, v) = anon
        .json(
            Method::POST,
            "/api/auth/password-reset/confirm",
            json!({"token": token2, "password": "yet another passphrase"}),
        )
        .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("reset-token-invalid"))
    );

    // A sign-in from a new device is announced to the account's owner.
    let u2 = anon.login(&u.email(), new_pw).await;
    let other = reqwest::Client::builder()
        .user_agent("Unfamiliar/9.9")
        .build()
        .unwrap();
    let r = other
        .post(format!("{}/api/auth/login", anon.base))
        .json(&json!({"email": u.email(), "password": new_pw}))
        .send()
        .await
        .unwrap();
    let problem: Value = r.json().await.unwrap();
    let r = crate::factors::finish_sign_in(&other, &anon.base, &u.email(), &problem).await;
    assert_eq!(r.status(), StatusCode::OK);
    let notice = smtp.wait_for(&u.email(), "new sign-in").await;
    assert!(notice.body.contains("Unfamiliar/9.9"), "{}", notice.body);
    assert_eq!(u2.get("/api/me").await.0, StatusCode::OK);

    // A lock is announced too.
    let (st, _) = admin
        .json(
            Method::PUT,
            &format!("/api/orgs/{org}/policy"),
            json!({"webauthn_for_admins": false, "lockout_threshold": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = raw_login(&anon, &u.email(), "definitely not it").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    smtp.wait_for(&u.email(), "locked").await;
    // No email was sent for the unknown address.
    assert!(smtp.messages().iter().all(|m| !m.to.contains("nobody@")));
}
