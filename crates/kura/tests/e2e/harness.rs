//! Test harness: starts the real `kura` binary on a free loopback port with a
//! fresh data folder and a fresh database (SQLite, or PostgreSQL when
//! KURA_TEST_DB=postgres), and talks HTTP to it.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const ADMIN_EMAIL: &str = "root@platform.example";
pub const PASSWORD: &str = "a long enough password";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A name unique within the test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn backend_is_postgres() -> bool {
    std::env::var("KURA_TEST_DB").is_ok_and(|v| v == "postgres")
}

fn pg_base() -> String {
    std::env::var("KURA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh database URL for one server.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    if backend_is_postgres() {
        use sqlx::Connection;
        let name = format!(
            "kura_t_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base()))
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("create database");
        format!("{}/{name}", pg_base())
    } else {
        format!("sqlite://{}", dir.join("kura.db").display())
    }
}

#[derive(Default)]
pub struct ServerOpts {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

pub struct TestServer {
    child: Option<Child>,
    pub base: String,
    pub admin_base: Option<String>,
    pub data_dir: PathBuf,
    pub db_url: String,
    pub bootstrap_token: Option<String>,
    stdout: Option<std::thread::JoinHandle<()>>,
}

pub fn kura_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kura")
}

impl TestServer {
    pub async fn start(opts: ServerOpts) -> TestServer {
        let dir = std::env::temp_dir().join(unique("kura-e2e"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db_url = fresh_database(&dir).await;
        Self::start_on(dir, db_url, opts)
    }

    /// Start (or restart) a server on an existing data folder and database.
    pub fn start_on(dir: PathBuf, db_url: String, opts: ServerOpts) -> TestServer {
        let mut cmd = Command::new(kura_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&dir);
        cmd.args(&opts.args);
        cmd.env("KURA_DATABASE_URL", &db_url)
            .env("KURA_LOG", "warn")
            // Tests sign in far more often than people; the limits have their own test.
            .env("KURA_SIGNIN_RATE_PER_MINUTE", "100000")
            .env("KURA_ANONYMOUS_RATE_PER_MINUTE", "100000")
            .env("KURA_PASSWORD_CHECKS_PER_SECOND", "100000")
            .env("KURA_SHUTDOWN_GRACE_SECS", "10");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn kura");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut base = None;
        let mut admin_base = None;
        let mut token = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while base.is_none()
            || (opts.args.iter().any(|a| a == "--admin-listen") && admin_base.is_none())
        {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("kura did not start (data dir {})", dir.display()));
            if let Some(t) = line.strip_prefix("kura: bootstrap-token ") {
                token = Some(t.trim().to_string());
            } else if let Some(a) = line.strip_prefix("kura: admin listening on ") {
                admin_base = Some(a.trim().to_string());
            } else if let Some(a) = line.strip_prefix("kura: listening on ") {
                base = Some(a.trim().to_string());
            }
        }
        TestServer {
            child: Some(child),
            base: base.unwrap_or_default(),
            admin_base,
            data_dir: dir,
            db_url,
            bootstrap_token: token,
            stdout: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Stop the server (SIGTERM, then wait) and keep the data for a restart.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                if let Some(h) = self.stdout.take() {
                    let _ = h.join();
                }
                return st;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    /// Create the platform administrator with the bootstrap token and sign in.
    pub async fn bootstrap(&self) -> Client {
        let c = self.client();
        let (st, body) = c
            .json(Method::POST, "/api/bootstrap", json!({"token": self.bootstrap_token.clone().expect("token printed"), "email": ADMIN_EMAIL, "display_name": "Root", "password": PASSWORD}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        // Tests that are not about passkeys sign administrators in with
        // TOTP; the WebAuthn rule for admins has its own tests.
        let out = self.cli(&[
            "admin",
            "set-policy",
            "--org",
            "platform",
            "--json",
            r#"{"webauthn_for_admins": false}"#,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.login(ADMIN_EMAIL, PASSWORD).await
    }

    /// Run `kura <args>` against this server's data folder and database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(kura_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("KURA_DATABASE_URL", &self.db_url)
            .env("KURA_LOG", "warn")
            .output()
            .expect("run kura cli")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An HTTP client with an optional session (cookie + CSRF) or bearer token.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub session: Option<String>,
    pub csrf: Option<String>,
    pub bearer: Option<String>,
    pub user: Value,
}

impl Client {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            http,
            base: base.to_string(),
            session: None,
            csrf: None,
            bearer: None,
            user: Value::Null,
        }
    }

    /// The same credentials on a new connection pool: for a request whose
    /// connection the server will close (a body refused half-way), so later
    /// requests do not race with that close.
    pub fn fresh_connection(&self) -> Self {
        let mut c = self.clone();
        c.http = Self::new(&self.base).http;
        c
    }

    pub fn anonymous(&self) -> Self {
        Self::new(&self.base)
    }

    pub fn user_id(&self) -> String {
        self.user["id"].as_str().expect("user id").to_string()
    }

    pub fn org_id(&self) -> String {
        self.user["org_id"].as_str().expect("org id").to_string()
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(s) = &self.session {
            r = r.header("cookie", format!("kura_session={s}"));
            if method != Method::GET && method != Method::HEAD {
                if let Some(c) = &self.csrf {
                    r = r.header("x-csrf-token", c);
                }
            }
        }
        if let Some(b) = &self.bearer {
            r = r.header("authorization", format!("Bearer {b}"));
        }
        r
    }

    pub async fn send(&self, r: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = r.send().await.expect("request");
        let st = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes().await.unwrap_or_default();
        // 507 is the quota answer the API promises, 503 the kill switches'
        // (read-only, suspended); every other 5xx is a bug.
        let kill_switch = st == StatusCode::SERVICE_UNAVAILABLE
            && serde_json::from_slice::<Value>(&bytes)
                .is_ok_and(|v| v["code"] == "read-only" || v["code"] == "platform-suspended");
        assert!(
            st.as_u16() < 500 || st == StatusCode::INSUFFICIENT_STORAGE || kill_switch,
            "server error {st}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if !st.is_success() && !bytes.is_empty() {
            assert_eq!(
                ct,
                "application/problem+json",
                "errors are problem documents: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (st, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn json(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.request(method, path).json(&body)).await
    }

    pub async fn bytes(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        self.send(self.request(method, path).body(body)).await
    }

    pub async fn download(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path)
            .send()
            .await
            .expect("download")
    }

    /// Sign in the way a client does: password, then the second factor
    /// the harness holds for the user (enrolling one where that is due).
    pub async fn login(&self, email: &str, password: &str) -> Client {
        let mut resp = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login");
        if resp.status() == StatusCode::UNAUTHORIZED {
            let problem: Value = resp.json().await.expect("problem");
            resp = crate::factors::finish_sign_in(&self.http, &self.base, email, &problem).await;
        }
        assert_eq!(resp.status(), StatusCode::OK, "login as {email}");
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("kura_session="))
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_string();
        let body: Value = resp.json().await.expect("login json");
        crate::factors::keep_recovery(email, &body);
        let mut c = Self::new(&self.base);
        c.session = Some(cookie);
        c.csrf = body["csrf_token"].as_str().map(String::from);
        c.user = body["user"].clone();
        c
    }

    /// A client using a fresh API token of this user.
    pub async fn with_token(&self, read_only: bool) -> Client {
        let (st, v) = self
            .json(
                Method::POST,
                "/api/me/tokens",
                json!({"name": unique("tok"), "read_only": read_only}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let mut c = Self::new(&self.base);
        c.bearer = v["secret"].as_str().map(String::from);
        c.user = self.user.clone();
        c
    }

    // ---- setup helpers ----

    pub async fn create_org(&self, slug: &str, quota: Option<i64>) -> String {
        let mut body = json!({"name": format!("Org {slug}"), "slug": slug});
        if let Some(q) = quota {
            body["quota_bytes"] = json!(q);
        }
        let (st, v) = self.json(Method::POST, "/api/admin/orgs", body).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let id = v["id"].as_str().expect("org id").to_string();
        let (st, v) = self
            .json(
                Method::PUT,
                &format!("/api/orgs/{id}/policy"),
                json!({"webauthn_for_admins": false}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        id
    }

    /// Create a user in `org` (as an admin of it) and return them signed in.
    pub async fn create_user(&self, org: &str, name: &str, org_admin: bool) -> Client {
        let email = format!("{}@example.org", unique(name));
        let (st, v) = self
            .json(Method::POST, &format!("/api/orgs/{org}/users"), json!({"email": email, "display_name": name, "password": PASSWORD, "org_admin": org_admin}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        self.login(&email, PASSWORD).await
    }

    pub async fn create_project(&self, name: &str) -> Project {
        let (st, v) = self
            .json(Method::POST, "/api/projects", json!({"name": name}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        Project {
            id: v["id"].as_str().expect("id").into(),
            root: v["root_folder_id"].as_str().expect("root").into(),
        }
    }

    pub async fn add_member(&self, p: &Project, email: &str, role: &str) {
        let (st, v) = self
            .json(
                Method::POST,
                &format!("/api/projects/{}/members", p.id),
                json!({"email": email, "role": role}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }

    pub async fn upload(
        &self,
        p: &Project,
        folder: &str,
        name: &str,
        data: Vec<u8>,
    ) -> (StatusCode, Value) {
        let path = format!(
            "/api/projects/{}/folders/{folder}/files?name={}",
            p.id,
            urlencode(name)
        );
        self.bytes(Method::POST, &path, data).await
    }

    pub async fn upload_ok(&self, p: &Project, folder: &str, name: &str, data: Vec<u8>) -> String {
        let (st, v) = self.upload(p, folder, name, data).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    pub async fn mkdir(&self, p: &Project, parent: &str, name: &str) -> String {
        let (st, v) = self
            .json(
                Method::POST,
                &format!("/api/projects/{}/folders/{parent}/folders", p.id),
                json!({"name": name}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_string()
    }

    pub fn email(&self) -> String {
        self.user["email"].as_str().expect("email").to_string()
    }
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: String,
    pub root: String,
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// A direct connection to a test server's database, as an operator (or an
/// attacker with database access) would have it: for checks the API does
/// not expose.
pub async fn database(db_url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = if db_url.starts_with("sqlite:") {
        format!("{db_url}?mode=rw")
    } else {
        db_url.to_string()
    };
    sqlx::AnyConnection::connect(&url)
        .await
        .expect("connect to the database")
}
