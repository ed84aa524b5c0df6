//! Folders, files, trash and versions (metadata operations; bytes move in
//! `transfer`).

use super::{json_ok, json_ok_sized, op, Api, ApiJson, ApiPath, ApiQuery};
use crate::auth::Authed;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kura_core::policy::{Purge, Read, Write};
use kura_core::{FileName, NodeId, ProjectId, VersionId};
use kura_store::nodes::{self, SortKey, SortOrder};
use kura_store::{AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::json;

pub fn routes(api: Api) -> Api {
    let api = op!(api, get "/api/projects/{project_id}/nodes/{node_id}", "get_node", "files", "project:read", "none", "A file or folder, with its path from the root", get_node);
    let api = op!(api, patch "/api/projects/{project_id}/nodes/{node_id}", "update_node", "files", "project:write", "json", "Rename and/or move a file or folder", update_node);
    let api = op!(api, delete "/api/projects/{project_id}/nodes/{node_id}", "trash_node", "files", "project:write", "none", "Move a file or folder to the trash", trash_node);
    let api = op!(api, post "/api/projects/{project_id}/nodes/{node_id}/copy", "copy_node", "files", "project:write", "json", "Copy a file or folder tree", copy_node);
    let api = op!(api, get "/api/projects/{project_id}/folders/{node_id}/children", "list_children", "files", "project:read", "none", "List a folder (cursor pagination; sort by name, modified or size)", list_children);
    let api = op!(api, post "/api/projects/{project_id}/folders/{node_id}/folders", "create_folder", "files", "project:write", "json", "Create a folder", create_folder);
    let api = op!(api, get "/api/projects/{project_id}/trash", "list_trash", "trash", "project:read", "none", "Items in the project's trash", list_trash);
    let api = op!(api, post "/api/projects/{project_id}/trash/{node_id}/restore", "restore_node", "trash", "project:write", "json-optional", "Restore an item from the trash", restore_node);
    let api = op!(api, delete "/api/projects/{project_id}/trash/{node_id}", "purge_node", "trash", "project:purge", "none", "Permanently delete an item from the trash", purge_node);
    let api = op!(api, get "/api/projects/{project_id}/files/{node_id}/versions", "list_versions", "versions", "project:read", "none", "A file's versions, newest first", list_versions);
    op!(api, post "/api/projects/{project_id}/files/{node_id}/versions/{version_id}/restore", "restore_version", "versions", "project:write", "none", "Make an old version current (as a new version)", restore_version)
}

async fn get_node(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Read>(&a.actor, &a.ctx, p).await?;
    let node = nodes::get(&s.store.db, &g, id).await?;
    let path = nodes::path(&s.store.db, &g, id).await?;
    s.record(
        &a.ctx,
        AuditEvent::new("node.view", Outcome::Success)
            .project(g.org_id(), p)
            .node(id)
            .name(node.name.clone()),
    )
    .await?;
    let path: Vec<_> = path
        .iter()
        .map(|n| json!({"id": n.id, "name": n.name}))
        .collect();
    json_ok(StatusCode::OK, &json!({"node": node, "path": path}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateReq {
    name: Option<String>,
    parent_id: Option<NodeId>,
}

async fn update_node(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
    ApiJson(req): ApiJson<UpdateReq>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Write>(&a.actor, &a.ctx, p).await?;
    let name = req
        .name
        .as_deref()
        .map(FileName::parse)
        .transpose()
        .map_err(kura_store::StoreError::from)?;
    let node =
        nodes::rename_move(&s.store.db, &g, &a.ctx, id, name.as_ref(), req.parent_id).await?;
    json_ok(StatusCode::OK, &node)
}

async fn trash_node(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Write>(&a.actor, &a.ctx, p).await?;
    nodes::trash(&s.store.db, &g, &a.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyReq {
    target_folder_id: NodeId,
    name: Option<String>,
}

async fn copy_node(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
    ApiJson(req): ApiJson<CopyReq>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Write>(&a.actor, &a.ctx, p).await?;
    let name = req
        .name
        .as_deref()
        .map(FileName::parse)
        .transpose()
        .map_err(kura_store::StoreError::from)?;
    let node = nodes::copy(
        &s.store.db,
        &g,
        &a.ctx,
        id,
        req.target_folder_id,
        name.as_ref(),
    )
    .await?;
    json_ok(StatusCode::CREATED, &node)
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    sort: SortKey,
    #[serde(default)]
    order: SortOrder,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_children(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Read>(&a.actor, &a.ctx, p).await?;
    if q.cursor.as_ref().is_some_and(|c| c.len() > 2048) {
        return Err(crate::error::ApiError::bad_request("cursor too long"));
    }
    let page = nodes::list_children(
        &s.store.db,
        &g,
        id,
        q.sort,
        q.order,
        q.cursor.as_deref(),
        q.limit.unwrap_or(200),
    )
    .await?;
    s.record(
        &a.ctx,
        AuditEvent::new("folder.list", Outcome::Success)
            .project(g.org_id(), p)
            .node(id)
            .detail(json!({"count": page.items.len()})),
    )
    .await?;
    // About 500 bytes an entry (ids, names, two times).
    json_ok_sized(StatusCode::OK, &page, 256 + page.items.len() * 640)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameReq {
    name: String,
}

async fn create_folder(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
    ApiJson(req): ApiJson<NameReq>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Write>(&a.actor, &a.ctx, p).await?;
    let name = FileName::parse(&req.name).map_err(kura_store::StoreError::from)?;
    json_ok(
        StatusCode::CREATED,
        &nodes::create_folder(&s.store.db, &g, &a.ctx, id, &name).await?,
    )
}

async fn list_trash(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(p): ApiPath<ProjectId>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Read>(&a.actor, &a.ctx, p).await?;
    let items = nodes::list_trash(&s.store.db, &g).await?;
    s.record(
        &a.ctx,
        AuditEvent::new("trash.list", Outcome::Success).project(g.org_id(), p),
    )
    .await?;
    json_ok(StatusCode::OK, &json!({ "items": items }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestoreReq {
    name: Option<String>,
}

async fn restore_node(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let g = s.project_grant::<Write>(&a.actor, &a.ctx, p).await?;
    // The body is optional here: empty means "restore under the old name".
    let req: RestoreReq = if body.iter().all(u8::is_ascii_whitespace) {
        RestoreReq::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            crate::error::ApiError::new(StatusCode::BAD_REQUEST, "invalid-json", e.to_string())
        })?
    };
    let name = req
        .name
        .as_deref()
        .map(FileName::parse)
        .transpose()
        .map_err(kura_store::StoreError::from)?;
    json_ok(
        StatusCode::OK,
        &nodes::restore(&s.store.db, &g, &a.ctx, id, name.as_ref()).await?,
    )
}

async fn purge_node(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Purge>(&a.actor, &a.ctx, p).await?;
    let freed = nodes::purge(&s.store.db, &g, &a.ctx, id).await?;
    for b in freed {
        // A failure leaves an orphan that the next sweep removes.
        if let Err(e) = s.store.blobs.delete(b).await {
            tracing::warn!(blob = %b, error = %e, "could not delete purged blob; fsck will sweep it");
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_versions(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id)): ApiPath<(ProjectId, NodeId)>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Read>(&a.actor, &a.ctx, p).await?;
    let items = nodes::versions(&s.store.db, &g, id).await?;
    s.record(
        &a.ctx,
        AuditEvent::new("file.versions", Outcome::Success)
            .project(g.org_id(), p)
            .node(id),
    )
    .await?;
    json_ok(StatusCode::OK, &json!({ "items": items }))
}

async fn restore_version(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, id, v)): ApiPath<(ProjectId, NodeId, VersionId)>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Write>(&a.actor, &a.ctx, p).await?;
    json_ok(
        StatusCode::OK,
        &nodes::restore_version(&s.store.db, &g, &a.ctx, id, v).await?,
    )
}
