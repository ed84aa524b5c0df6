//! Sign-in, sessions, CSRF, API tokens, and revocation that takes effect on
//! the very next request.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

pub async fn sessions_tokens_csrf_and_revocation() {
    let server = TestServer::start(ServerOpts::default()).await;
    let root = server.bootstrap().await;
    let org = root.create_org(&unique("org"), None).await;
    let other = root.create_org(&unique("other"), None).await;
    let admin = root.create_user(&org, "admin", true).await;
    let u = admin.create_user(&org, "user", false).await;
    let anon = root.anonymous();

    // Wrong password and unknown account: the same answer.
    let wrong = anon
        .http
        .post(format!("{}/api/auth/login", anon.base))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": u.email(), "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    let unknown = anon
        .http
        .post(format!("{}/api/auth/login", anon.base))
        .json(&json!({"email": "nobody@example.org", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.text().await.unwrap(), unknown.text().await.unwrap());

    // The web sign-in form needs its double-submit token: a forged
    // cross-site sign-in (login CSRF) is refused even with a right password.
    let forged = anon
        .http
        .post(format!("{}/login", anon.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "null")
        .body(format!(
            "email={}&password={}",
            urlencode(&u.email()),
            urlencode(PASSWORD)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged
        .headers()
        .get("set-cookie")
        .is_none_or(|c| !c.to_str().unwrap().starts_with("kura_session=")));
    let foreign = anon
        .http
        .post(format!("{}/projects", anon.base))
        .header(
            "cookie",
            format!("kura_session={}", u.session.clone().unwrap()),
        )
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_csrf={}&name=evil", u.csrf.clone().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        foreign.status(),
        StatusCode::FORBIDDEN,
        "a foreign Origin is refused even with the token"
    );

    // A correct password alone opens nothing: a challenge, no cookie.
    let r = anon
        .http
        .post(format!("{}/api/auth/login", anon.base))
        .json(&json!({"email": u.email(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "mfa-required");
    // Cookie attributes, once the second factor is in.
    let r = crate::factors::finish_sign_in(&anon.http, &anon.base, &u.email(), &problem).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    for h in [
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
        "x-frame-options",
        "x-request-id",
    ] {
        assert!(r.headers().contains_key(h), "missing {h}");
    }

    // CSRF: a cookie-authenticated change without the token is refused and changes nothing.
    let mut no_csrf = u.clone();
    no_csrf.csrf = None;
    let (st, v) = no_csrf
        .json(Method::POST, "/api/projects", json!({"name": "sneaky"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(v["code"], "csrf");
    let (_, rej) = root.get("/api/admin/audit?action=auth.reject").await;
    assert_eq!(
        rej["items"][0]["detail"]["reason"], "csrf",
        "CSRF refusals are audited"
    );
    let mut bad_csrf = u.clone();
    bad_csrf.csrf = Some("kcsrf_forged".into());
    let (st, _) = bad_csrf
        .json(Method::POST, "/api/projects", json!({"name": "sneaky"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, list) = u.get("/api/projects").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    // Two sessions; revoking one ends it on the next request; the other lives.
    let u2 = u.login(&u.email(), PASSWORD).await;
    let (_, s) = u.get("/api/me/sessions").await;
    assert_eq!(s["items"].as_array().unwrap().len(), 3);
    let sid2 = {
        let (_, me2) = u2.get("/api/me/sessions").await;
        me2["current_session_id"].as_str().unwrap().to_string()
    };
    let (st, _) = u.delete(&format!("/api/me/sessions/{sid2}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(u2.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    // The web pages treat the revoked cookie as signed out, and the refusal is audited.
    let before = root
        .get("/api/admin/audit?action=auth.reject&limit=1000")
        .await
        .1["items"]
        .as_array()
        .unwrap()
        .len();
    let page = u2.request(Method::GET, "/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert!(page.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login"));
    let after = root
        .get("/api/admin/audit?action=auth.reject&limit=1000")
        .await
        .1["items"]
        .as_array()
        .unwrap()
        .len();
    assert!(after > before, "web refusal audited");
    assert_eq!(u.get("/api/me").await.0, StatusCode::OK);
    // Another user's session id is not found.
    let (_, rs) = root.get("/api/me/sessions").await;
    let root_sid = rs["current_session_id"].as_str().unwrap();
    assert_eq!(
        u.delete(&format!("/api/me/sessions/{root_sid}")).await.0,
        StatusCode::NOT_FOUND
    );

    // API tokens: read-only cannot write; revoked stops at once; tokens cannot mint tokens.
    let ro = u.with_token(true).await;
    let rw = u.with_token(false).await;
    assert_eq!(ro.get("/api/me").await.0, StatusCode::OK);
    assert_eq!(
        ro.json(Method::POST, "/api/projects", json!({"name": "ro"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (st, p) = rw
        .json(Method::POST, "/api/projects", json!({"name": "via token"}))
        .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "bearer requests need no CSRF token: {p}"
    );
    assert_eq!(
        rw.json(Method::POST, "/api/me/tokens", json!({"name": "x"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, toks) = u.get("/api/me/tokens").await;
    let ro_id = toks["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["read_only"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        toks.to_string().find("kura_").is_none(),
        "secrets are never listed"
    );
    assert_eq!(
        u.delete(&format!("/api/me/tokens/{ro_id}")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(ro.get("/api/me").await.0, StatusCode::UNAUTHORIZED);

    // Disabling the account ends its sessions and tokens on the next request.
    let (st, _) = admin
        .json(
            Method::PATCH,
            &format!("/api/orgs/{org}/users/{}", u.user_id()),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(u.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(rw.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    let r = anon
        .http
        .post(format!("{}/api/auth/login", anon.base))
        .json(&json!({"email": u.email(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    admin
        .json(
            Method::PATCH,
            &format!("/api/orgs/{org}/users/{}", u.user_id()),
            json!({"disabled": false}),
        )
        .await;

    // Password change ends every session and API token; the new password works.
    let u = u.login(&u.email(), PASSWORD).await;
    let other_session = u.login(&u.email(), PASSWORD).await;
    let token_before = u.with_token(false).await;
    let ro_before = u.with_token(true).await;
    let (st, _) = ro_before
        .json(
            Method::POST,
            "/api/me/password",
            json!({"current_password": PASSWORD, "new_password": "x long password"}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "read-only tokens cannot change the account"
    );
    let (st, _) = u
        .json(
            Method::POST,
            "/api/me/password",
            json!({"current_password": "not it", "new_password": "another long password"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = u
        .json(
            Method::POST,
            "/api/me/password",
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = u
        .json(
            Method::POST,
            "/api/me/password",
            json!({"current_password": PASSWORD, "new_password": "another long password"}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        other_session.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_before.get("/api/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    let u = u.login(&u.email(), "another long password").await;

    // Suspending the organization ends access on the next request.
    let (st, _) = root
        .json(
            Method::PATCH,
            &format!("/api/admin/orgs/{org}"),
            json!({"suspended": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(u.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(admin.get("/api/me").await.0, StatusCode::UNAUTHORIZED);
    root.json(
        Method::PATCH,
        &format!("/api/admin/orgs/{org}"),
        json!({"suspended": false}),
    )
    .await;

    // Logout revokes the session server-side.
    let u = u.login(&u.email(), "another long password").await;
    let stolen = u.clone();
    assert_eq!(
        u.json(Method::POST, "/api/auth/logout", json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(stolen.get("/api/me").await.0, StatusCode::UNAUTHORIZED);

    // Org admins manage only their own organization.
    assert_eq!(
        admin.get(&format!("/api/orgs/{other}/users")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(admin.get("/api/admin/orgs").await.0, StatusCode::FORBIDDEN);

    // The trail shows the failed and successful sign-ins with IP and user agent.
    let (st, v) = admin
        .get(&format!(
            "/api/orgs/{org}/audit?action=auth.login&outcome=failure"
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|e| e["ip"] == "127.0.0.1"),
        "X-Forwarded-For is not trusted without a proxy"
    );
    assert!(
        items.iter().all(|e| e["org_id"] == org.as_str()),
        "only this organization's events"
    );
}
