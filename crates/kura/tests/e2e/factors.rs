//! What the harness knows about second factors: each test user's TOTP
//! secret and recovery codes, so `Client::login` can finish the real
//! two-step sign-in (and enrol the first factor where that is due).

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Known {
    secret: Vec<u8>,
    last_step: u64,
    recovery: Vec<String>,
}

static KNOWN: LazyLock<Mutex<HashMap<String, Known>>> = LazyLock::new(Default::default);

/// The RFC 6238 code of `secret` for time step `step`.
pub fn totp_at(secret: &[u8], step: u64) -> String {
    let t = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret.to_vec(),
        None,
        "t".into(),
    )
    .expect("totp");
    t.generate(step * 30)
}

pub fn now_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 30
}

pub fn decode_secret(b32: &str) -> Vec<u8> {
    totp_rs::Secret::Encoded(b32.to_string())
        .to_bytes()
        .expect("base32 secret")
}

pub fn remember(email: &str, secret: Vec<u8>, recovery: Vec<String>) {
    KNOWN.lock().expect("lock").insert(
        email.to_lowercase(),
        Known {
            secret,
            last_step: 0,
            recovery,
        },
    );
}

pub fn secret_of(email: &str) -> Option<Vec<u8>> {
    KNOWN
        .lock()
        .expect("lock")
        .get(&email.to_lowercase())
        .map(|k| k.secret.clone())
}

/// A code the server has not seen yet: the oldest unused step of the
/// accepted window, else a recovery code, else wait for the next step.
pub async fn fresh_code(email: &str) -> (String, String) {
    for _ in 0..3 {
        {
            let mut map = KNOWN.lock().expect("lock");
            let k = map
                .get_mut(&email.to_lowercase())
                .expect("a factor known to the harness");
            let now = now_step();
            if let Some(step) = [now - 1, now, now + 1]
                .into_iter()
                .find(|s| *s > k.last_step)
            {
                k.last_step = step;
                return ("totp".into(), totp_at(&k.secret, step));
            }
            if let Some(code) = k.recovery.pop() {
                return ("recovery".into(), code);
            }
        }
        tokio::time::sleep(Duration::from_secs(31)).await;
    }
    panic!("no fresh second factor for {email}")
}

/// Finish a sign-in after a 401 with a challenge: present a factor, or
/// enrol an authenticator app. Returns the final response.
pub async fn finish_sign_in(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    problem: &Value,
) -> reqwest::Response {
    let challenge = problem["challenge"]
        .as_str()
        .expect("challenge")
        .to_string();
    match problem["code"].as_str() {
        Some("mfa-required") => {
            let (method, code) = fresh_code(email).await;
            http.post(format!("{base}/api/auth/mfa"))
                .json(&json!({"challenge": challenge, "method": method, "code": code}))
                .send()
                .await
                .expect("mfa")
        }
        Some("mfa-enrolment-required") => {
            let r = http
                .post(format!("{base}/api/auth/enrol/totp"))
                .json(&json!({"challenge": challenge}))
                .send()
                .await
                .expect("enrol");
            assert_eq!(r.status(), StatusCode::OK, "enrol a TOTP app for {email}");
            let e: Value = r.json().await.expect("enrol json");
            let secret = decode_secret(e["secret"].as_str().expect("secret"));
            let step = now_step();
            let resp = http
                .post(format!("{base}/api/auth/enrol/totp/confirm"))
                .json(&json!({"challenge": challenge, "factor_id": e["factor_id"], "code": totp_at(&secret, step)}))
                .send()
                .await
                .expect("confirm");
            remember(email, secret, Vec::new());
            if let Some(k) = KNOWN.lock().expect("lock").get_mut(&email.to_lowercase()) {
                k.last_step = step;
            }
            resp
        }
        other => panic!("unexpected sign-in answer {other:?}: {problem}"),
    }
}

/// Keep the recovery codes a sign-in response showed.
pub fn keep_recovery(email: &str, body: &Value) {
    if let Some(codes) = body["recovery_codes"].as_array() {
        if let Some(k) = KNOWN.lock().expect("lock").get_mut(&email.to_lowercase()) {
            k.recovery = codes
                .iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect();
        }
    }
}
