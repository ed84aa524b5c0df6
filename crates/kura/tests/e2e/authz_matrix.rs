//! The authorization matrix: every operation in the generated OpenAPI
//! document × every kind of actor × (their project / another project of the
//! same organization / a project of another organization / anonymous).
//! Expectations come from one table (`expect`), written from the policy's
//! specification, not from the code; requests are built per operation id,
//! and an operation without a builder fails the test, so no endpoint can be
//! added without appearing here.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Viewer,
    Member,
    Manager,
    Owner,
}

struct ActorSpec {
    label: &'static str,
    client: Option<Client>,
    /// Role in project PA1 (the only project actors are members of).
    role_in_pa1: Option<Role>,
    org: Option<&'static str>,
    org_admin: bool,
    platform_admin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Status(u16),
}

struct Target {
    label: &'static str,
    org: &'static str,
    project: Project,
    owner: Client,
    file: String,
    first_version: String,
    is_pa1: bool,
}

fn min_role(action: &str) -> Role {
    match action {
        "view" | "read" => Role::Viewer,
        "write" => Role::Member,
        "purge" | "manage_members" => Role::Manager,
        "administer" => Role::Owner,
        other => panic!("unknown project action {other}"),
    }
}

/// The one table of expectations.
fn expect(actor: &ActorSpec, auth: &str, target_org: &str, target_is_pa1: bool) -> Expect {
    if actor.client.is_none() {
        return if auth == "public" {
            Expect::Allow
        } else {
            Expect::Status(401)
        };
    }
    if let Some(action) = auth.strip_prefix("project:") {
        let role = if target_is_pa1 {
            actor.role_in_pa1
        } else {
            None
        };
        let org_admin_here = actor.org_admin && actor.org == Some(target_org);
        if role.is_none() && !org_admin_here {
            return Expect::Status(404);
        }
        if role.is_some_and(|r| r >= min_role(action)) {
            return Expect::Allow;
        }
        if org_admin_here && matches!(action, "view" | "manage_members" | "administer") {
            return Expect::Allow;
        }
        return Expect::Status(403);
    }
    if let Some(action) = auth.strip_prefix("org:") {
        let own = actor.org == Some(target_org);
        if !own && !actor.platform_admin {
            return Expect::Status(404);
        }
        let ok = match action {
            "view" => true,
            "create_project" => own,
            "manage_users" | "read_audit" => (own && actor.org_admin) || actor.platform_admin,
            other => panic!("unknown org action {other}"),
        };
        return if ok {
            Expect::Allow
        } else {
            Expect::Status(403)
        };
    }
    match auth {
        "platform" => {
            if actor.platform_admin {
                Expect::Allow
            } else {
                Expect::Status(403)
            }
        }
        "user" | "public" => Expect::Allow,
        other => panic!("unknown auth {other}"),
    }
}

struct Req {
    method: Method,
    path: String,
    body: Option<Value>,
    bytes: Option<Vec<u8>>,
}

/// Build a request for `op_id` against `t`, creating fresh objects where the
/// operation consumes them. `None`: the operation is covered elsewhere.
async fn build(
    op_id: &str,
    path: &str,
    method: &str,
    t: &Target,
    orgs: &HashMap<&str, String>,
    extra: &HashMap<&str, Client>,
) -> Option<Req> {
    let p = &t.project;
    let o = &t.owner;
    let org_id = orgs[t.org].clone();
    let extra_user = &extra[t.org];
    let fresh_file = || async {
        o.upload_ok(p, &p.root, &unique("f"), b"fresh".to_vec())
            .await
    };
    let fresh_trashed = || async {
        let id = o
            .upload_ok(p, &p.root, &unique("t"), b"trash me".to_vec())
            .await;
        let (st, _) = o
            .delete(&format!("/api/projects/{}/nodes/{id}", p.id))
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        id
    };
    let mut node = t.file.clone();
    let mut body = None;
    let mut bytes = None;
    let mut user = extra_user.user_id();
    match op_id {
        // account and public operations: only anonymous access is tested here
        "bootstrap"
        | "login"
        | "logout"
        | "me"
        | "change_password"
        | "list_sessions"
        | "revoke_session"
        | "list_tokens"
        | "create_token"
        | "revoke_token"
        | "list_projects"
        | "login_factor"
        | "login_webauthn_options"
        | "login_webauthn"
        | "enrol_totp"
        | "enrol_totp_confirm"
        | "enrol_webauthn_options"
        | "enrol_webauthn"
        | "step_up"
        | "step_up_webauthn_options"
        | "step_up_webauthn"
        | "list_factors"
        | "add_totp"
        | "confirm_totp"
        | "add_webauthn_options"
        | "add_webauthn"
        | "rename_factor"
        | "remove_factor"
        | "new_recovery_codes"
        | "request_password_reset"
        | "confirm_password_reset" => return None,
        // Ends every session of the organization, the matrix's actors
        // included: its authorization is tested in zero_trust (and breach).
        "revoke_org_sessions" | "force_reset_org" => return None,
        // Need an alert of the target organization; breach tests them,
        // including another organization's 404.
        "set_alert_status" | "platform_alert_status" => return None,
        "org_alerts" | "platform_alerts" | "get_detection" | "list_canaries"
        | "get_platform_mode" | "org_scope" | "platform_scope" | "force_reset_user" => {}
        "set_detection" => body = Some(json!({})),
        "set_platform_mode" => body = Some(json!({"mode": "normal"})),
        // A canary of its own: reads of the shared file must not alert.
        "mark_canary" | "unmark_canary" => node = fresh_file().await,
        "get_policy"
        | "list_user_sessions"
        | "lock_user"
        | "unlock_user"
        | "reset_mfa"
        | "revoke_user_sessions"
        | "get_sso"
        | "delete_sso" => {}
        "set_policy" => body = Some(json!({"webauthn_for_admins": false})),
        "set_sso" => {
            body = Some(
                json!({"issuer": "https://idp.example.org", "client_id": "kura", "client_secret": "s3cret"}),
            )
        }
        "get_project" | "list_members" | "get_node" | "list_children" | "list_trash"
        | "list_versions" | "download_file" => {
            if op_id == "list_children" {
                node = p.root.clone();
            }
        }
        "update_project" => body = Some(json!({"name": unique("renamed")})),
        "add_member" => body = Some(json!({"email": extra_user.email(), "role": "viewer"})),
        "set_member" => body = Some(json!({"role": "viewer"})),
        "remove_member" => o.add_member(p, &extra_user.email(), "viewer").await,
        "update_node" => {
            node = fresh_file().await;
            body = Some(json!({"name": unique("renamed")}));
        }
        "trash_node" => node = fresh_file().await,
        "copy_node" => body = Some(json!({"target_folder_id": p.root, "name": unique("copy")})),
        "create_folder" => {
            node = p.root.clone();
            body = Some(json!({"name": unique("dir")}));
        }
        "restore_node" | "purge_node" => node = fresh_trashed().await,
        "restore_version" => {}
        "upload_file" => {
            node = p.root.clone();
            bytes = Some(b"new file".to_vec());
        }
        "upload_version" => bytes = Some(b"new version".to_vec()),
        "create_project" => body = Some(json!({"name": unique("proj"), "org_id": org_id})),
        "org_audit" | "get_org" | "list_users" => {}
        "create_user" => {
            body = Some(
                json!({"email": format!("{}@example.org", unique("new")), "display_name": "New", "password": PASSWORD}),
            )
        }
        "update_user" => body = Some(json!({"display_name": unique("name")})),
        "reset_password" => body = Some(json!({"password": PASSWORD})),
        "list_orgs" | "platform_audit" => {}
        "create_org" => body = Some(json!({"name": "Matrix org", "slug": unique("mx")})),
        "update_org" => body = Some(json!({"name": "Renamed org"})),
        other => {
            panic!("no request builder for operation {other}: add it to the authorization matrix")
        }
    }
    if op_id == "remove_member" || op_id == "set_member" {
        user = extra_user.user_id();
    }
    let path = path
        .replace("{project_id}", &p.id)
        .replace("{node_id}", &node)
        .replace("{version_id}", &t.first_version)
        .replace("{org_id}", &org_id)
        .replace("{user_id}", &user);
    let query = if op_id == "upload_file" {
        format!("?name={}", unique("up"))
    } else if op_id.ends_with("_scope") {
        format!("?actor={user}")
    } else {
        String::new()
    };
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    Some(Req {
        method,
        path: format!("{path}{query}"),
        body,
        bytes,
    })
}

pub async fn run() {
    let server = TestServer::start(ServerOpts::default()).await;
    let root = server.bootstrap().await;
    let org_a = root.create_org(&unique("agency-a"), None).await;
    let org_b = root.create_org(&unique("vendor-b"), None).await;
    let admin_a = root.create_user(&org_a, "admin-a", true).await;
    let admin_b = root.create_user(&org_b, "admin-b", true).await;
    let owner = admin_a.create_user(&org_a, "owner", false).await;
    let manager = admin_a.create_user(&org_a, "manager", false).await;
    let viewer = admin_a.create_user(&org_a, "viewer", false).await;
    let vendor_member = admin_b.create_user(&org_b, "vendor", false).await;
    let other_a = admin_a.create_user(&org_a, "other-a", false).await;
    let owner_b = admin_b.create_user(&org_b, "owner-b", false).await;
    let extra_a = admin_a.create_user(&org_a, "extra-a", false).await;
    let extra_b = admin_b.create_user(&org_b, "extra-b", false).await;

    let pa1 = owner.create_project("PA1").await;
    owner.add_member(&pa1, &manager.email(), "manager").await;
    owner.add_member(&pa1, &viewer.email(), "viewer").await;
    owner
        .add_member(&pa1, &vendor_member.email(), "member")
        .await;
    let pa2 = other_a.create_project("PA2").await;
    let pb = owner_b.create_project("PB").await;

    let mut targets = Vec::new();
    for (label, org, project, c, is_pa1) in [
        ("PA1", "A", pa1, owner.clone(), true),
        ("PA2", "A", pa2, other_a.clone(), false),
        ("PB", "B", pb, owner_b.clone(), false),
    ] {
        let file = c
            .upload_ok(
                &project,
                &project.root,
                "shared.txt",
                b"shared content".to_vec(),
            )
            .await;
        let (st, v) = c
            .get(&format!(
                "/api/projects/{}/files/{file}/versions",
                project.id
            ))
            .await;
        assert_eq!(st, StatusCode::OK);
        let first_version = v["items"][0]["id"].as_str().expect("version").to_string();
        targets.push(Target {
            label,
            org,
            project,
            owner: c,
            file,
            first_version,
            is_pa1,
        });
    }
    let orgs: HashMap<&str, String> = [("A", org_a.clone()), ("B", org_b.clone())].into();
    let extra: HashMap<&str, Client> = [("A", extra_a), ("B", extra_b)].into();

    let actors = vec![
        ActorSpec {
            label: "viewer",
            client: Some(viewer),
            role_in_pa1: Some(Role::Viewer),
            org: Some("A"),
            org_admin: false,
            platform_admin: false,
        },
        ActorSpec {
            label: "member (vendor org B)",
            client: Some(vendor_member),
            role_in_pa1: Some(Role::Member),
            org: Some("B"),
            org_admin: false,
            platform_admin: false,
        },
        ActorSpec {
            label: "manager",
            client: Some(manager),
            role_in_pa1: Some(Role::Manager),
            org: Some("A"),
            org_admin: false,
            platform_admin: false,
        },
        ActorSpec {
            label: "owner",
            client: Some(owner.clone()),
            role_in_pa1: Some(Role::Owner),
            org: Some("A"),
            org_admin: false,
            platform_admin: false,
        },
        ActorSpec {
            label: "org admin A",
            client: Some(admin_a),
            role_in_pa1: None,
            org: Some("A"),
            org_admin: true,
            platform_admin: false,
        },
        ActorSpec {
            label: "org admin B",
            client: Some(admin_b),
            role_in_pa1: None,
            org: Some("B"),
            org_admin: true,
            platform_admin: false,
        },
        ActorSpec {
            label: "platform admin",
            client: Some(root.clone()),
            role_in_pa1: None,
            org: None,
            org_admin: false,
            platform_admin: true,
        },
        ActorSpec {
            label: "anonymous",
            client: None,
            role_in_pa1: None,
            org: None,
            org_admin: false,
            platform_admin: false,
        },
    ];

    let (st, doc) = root.get("/api/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    let mut ops = Vec::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for (method, op) in methods.as_object().expect("methods") {
            ops.push((
                path.clone(),
                method.clone(),
                op["operationId"].as_str().expect("id").to_string(),
                op["x-kura-auth"].as_str().expect("auth").to_string(),
            ));
        }
    }
    assert!(
        ops.len() >= 35,
        "expected the whole API in the document, got {}",
        ops.len()
    );

    let anon = root.anonymous();
    let mut failures = Vec::new();
    let mut cells = 0;
    for (path, method, op_id, auth) in &ops {
        for t in &targets {
            let Some(req) = build(op_id, path, method, t, &orgs, &extra).await else {
                // Still check that anonymous callers are refused.
                if auth != "public" {
                    let concrete = path
                        .replace("{session_id}", &uuid::Uuid::new_v4().to_string())
                        .replace("{token_id}", &uuid::Uuid::new_v4().to_string())
                        .replace("{factor_id}", &uuid::Uuid::new_v4().to_string())
                        .replace("{org_id}", &uuid::Uuid::new_v4().to_string());
                    let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                    let (st, _) = anon.send(anon.request(m, &concrete).json(&json!({}))).await;
                    cells += 1;
                    if st != StatusCode::UNAUTHORIZED {
                        failures.push(format!("{op_id} anonymous: got {st}, want 401"));
                    }
                }
                break;
            };
            for a in &actors {
                // Requests that consume objects need fresh ones per actor.
                let req = if a.label == "viewer" {
                    req_clone(&req)
                } else {
                    build(op_id, path, method, t, &orgs, &extra)
                        .await
                        .expect("builder")
                };
                let client = a.client.clone().unwrap_or_else(|| anon.clone());
                let mut rb = client.request(req.method.clone(), &req.path);
                if let Some(b) = &req.body {
                    rb = rb.json(b);
                }
                if let Some(b) = &req.bytes {
                    rb = rb.body(b.clone());
                }
                let (st, body) = client.send(rb).await;
                let want = expect(a, auth, t.org, t.is_pa1);
                cells += 1;
                let ok = match want {
                    Expect::Allow => st.is_success(),
                    Expect::Status(s) => st.as_u16() == s,
                };
                if !ok {
                    failures.push(format!(
                        "{op_id} [{auth}] as {} on {}: got {st} {body}, want {want:?}",
                        a.label, t.label
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} authorization cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cells > 500, "only {cells} cells ran");
    eprintln!("authorization matrix: {cells} cells passed");

    // Every denial was audited.
    let (st, v) = root
        .get("/api/admin/audit?action=authz.deny&limit=1000")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        v["items"].as_array().expect("items").len() >= 100,
        "denials are audited"
    );
}

fn req_clone(r: &Req) -> Req {
    Req {
        method: r.method.clone(),
        path: r.path.clone(),
        body: r.body.clone(),
        bytes: r.bytes.clone(),
    }
}
