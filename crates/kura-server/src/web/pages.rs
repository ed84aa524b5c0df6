//! Home: the user's organization and projects, and recent activity in them.

use super::{html, see_other, Layout, OrWeb, Web, WebError, WebForm};
use crate::state::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use kura_core::OrgAction;
use serde::Deserialize;
use std::collections::HashMap;

pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub org_name: String,
}

pub struct ActivityRow {
    pub when: String,
    pub who: String,
    pub what: String,
    pub object: String,
    pub project_id: String,
    pub project_name: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    l: Layout,
    org_name: String,
    projects: Vec<ProjectRow>,
    activity: Vec<ActivityRow>,
}

pub async fn home(State(s): State<AppState>, w: Web) -> Result<Response, WebError> {
    let me = w.me()?;
    let db = &s.store.db;
    let projects = kura_store::projects::list_for(db, &me.actor)
        .await
        .web(&w)?;
    let ev = kura_store::AuditEvent::new("project.list", kura_store::Outcome::Success)
        .org(me.actor.org_id)
        .detail(serde_json::json!({"count": projects.len(), "via": "web"}));
    s.record(&w.ctx, ev).await.web(&w)?;
    let mut org_names: HashMap<String, String> = HashMap::new();
    let mut rows = Vec::new();
    for p in &projects {
        let org_key = p.org_id.to_string();
        if !org_names.contains_key(&org_key) {
            let name = kura_store::orgs::get_any(db, p.org_id)
                .await
                .map(|o| o.name)
                .unwrap_or_default();
            org_names.insert(org_key.clone(), name);
        }
        rows.push(ProjectRow {
            id: p.id.to_string(),
            name: p.name.clone(),
            role: p
                .my_role
                .map(|r| w.t.t(&format!("role.{}", r.as_str())).to_string())
                .unwrap_or_else(|| w.t.t("role.org_admin").to_string()),
            org_name: org_names.get(&org_key).cloned().unwrap_or_default(),
        });
    }
    let names: HashMap<String, String> = projects
        .iter()
        .map(|p| (p.id.to_string(), p.name.clone()))
        .collect();
    let events = kura_store::audit::recent_activity(db, me.actor.user_id, 20)
        .await
        .web(&w)?;
    let mut people: HashMap<String, String> = HashMap::new();
    let mut activity = Vec::new();
    for e in events {
        let who_id = e.actor_user_id.clone().unwrap_or_default();
        if !people.contains_key(&who_id) {
            let name = match who_id.parse() {
                Ok(id) => kura_store::users::get_any(db, id)
                    .await
                    .map(|u| u.display_name)
                    .unwrap_or_default(),
                Err(_) => String::new(),
            };
            people.insert(who_id.clone(), name);
        }
        let pid = e.project_id.clone().unwrap_or_default();
        activity.push(ActivityRow {
            when: w.time(e.ts_micros),
            who: people.get(&who_id).cloned().unwrap_or_default(),
            what: w.t.t(&format!("activity.{}", e.action)).to_string(),
            object: e.object_name.clone().unwrap_or_default(),
            project_name: names.get(&pid).cloned().unwrap_or_default(),
            project_id: pid,
        });
    }
    let page = HomePage {
        l: w.layout(w.t.t("home.title").into()),
        org_name: me.org.name.clone(),
        projects: rows,
        activity,
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
pub struct NewProject {
    name: String,
}

pub async fn create_project(
    State(s): State<AppState>,
    w: Web,
    WebForm(f): WebForm<NewProject>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let g = s
        .org_grant(&me.actor, &w.ctx, me.actor.org_id, OrgAction::CreateProject)
        .await
        .web(&w)?;
    let p = kura_store::projects::create(&s.store.db, &g, &w.ctx, me.actor.user_id, &f.name)
        .await
        .web(&w)?;
    Ok(see_other(&format!("/projects/{}", p.id)))
}
