//! The trash: delete, restore, purge.

use super::*;

// ---- trash ----

pub async fn trash(db: &Db, g: &ProjectGrant<Write>, ctx: &AuditCtx, id: NodeId) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let n = load(&mut *tx, g.project_id(), id, true).await?;
    if n.parent_id.is_none() {
        return Err(StoreError::Invalid(
            "the project's root folder cannot be deleted".into(),
        ));
    }
    let batch = NodeId::new().to_string();
    let now = now_micros();
    sqlx::query("WITH RECURSIVE sub(id) AS (SELECT id FROM nodes WHERE id = $1 UNION ALL SELECT n.id FROM nodes n JOIN sub ON n.parent_id = sub.id WHERE n.trashed_at IS NULL) \
        UPDATE nodes SET trashed_at = $2, trashed_by = $3, trash_batch = $4 WHERE id IN (SELECT id FROM sub) AND trashed_at IS NULL")
        .bind(id.to_string())
        .bind(now)
        .bind(g.user_id().to_string())
        .bind(&batch)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE nodes SET trash_root = 1 WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("node.trash", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .name(n.name);
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn list_trash(db: &Db, g: &ProjectGrant<Read>) -> Result<Vec<Node>> {
    let rows = sqlx::query(&format!("SELECT {NODE_COLS} FROM nodes n LEFT JOIN users u ON u.id = n.modified_by WHERE n.project_id = $1 AND n.trash_root = 1 AND n.trashed_at IS NOT NULL ORDER BY n.trashed_at DESC LIMIT 10000"))
        .bind(g.project_id().to_string())
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(node_from_row).collect()
}

pub(super) async fn trashed_root(
    tx: &mut Transaction<'_, Any>,
    project: ProjectId,
    id: NodeId,
) -> Result<(Node, String)> {
    let n = load(&mut **tx, project, id, false).await?;
    let r = sqlx::query("SELECT trash_root, trash_batch FROM nodes WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&mut **tx)
        .await?;
    if n.trashed_at.is_none() || !r.flag("trash_root")? {
        return Err(StoreError::NotFound);
    }
    Ok((n, r.opt_str("trash_batch")?.unwrap_or_default()))
}

/// Restore a trashed item to where it was (or the root, if that folder is
/// gone), optionally under a new name when the old one is taken.
pub async fn restore(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    id: NodeId,
    new_name: Option<&FileName>,
) -> Result<Node> {
    let mut tx = db.write.begin().await?;
    let (n, batch) = trashed_root(&mut tx, g.project_id(), id).await?;
    let parent_live = match n.parent_id {
        Some(p) => load(&mut *tx, g.project_id(), p, true).await.is_ok(),
        None => false,
    };
    let parent = if parent_live {
        n.parent_id.ok_or(StoreError::NotFound)?
    } else {
        let r = sqlx::query("SELECT root_node_id FROM projects WHERE id = $1")
            .bind(g.project_id().to_string())
            .fetch_one(&mut *tx)
            .await?;
        r.id("root_node_id")?
    };
    let name = new_name
        .map(|x| x.as_str().to_string())
        .unwrap_or(n.name.clone());
    // While trashed the item holds no name in its folder; the second
    // statement makes it live and is where a name collision shows.
    sqlx::query("UPDATE nodes SET trash_root = 0, parent_id = $1, name = $2 WHERE id = $3")
        .bind(parent.to_string())
        .bind(&name)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE nodes SET trashed_at = NULL, trashed_by = NULL, trash_batch = NULL WHERE trash_batch = $1 AND project_id = $2")
        .bind(&batch)
        .bind(g.project_id().to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from(e).conflict_on_unique(
                "an item with this name already exists where it would be restored; give a new name",
            )
        })?;
    let ev = AuditEvent::new("node.restore", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .name(name);
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    load(&db.read, g.project_id(), id, true).await
}

/// Permanently delete a trashed item. Returns blobs no longer referenced,
/// which the caller deletes from the blob store after the commit.
pub async fn purge(
    db: &Db,
    g: &ProjectGrant<Purge>,
    ctx: &AuditCtx,
    id: NodeId,
) -> Result<Vec<BlobId>> {
    let mut tx = db.write.begin().await?;
    let (n, _) = trashed_root(&mut tx, g.project_id(), id).await?;
    let rows = sqlx::query("WITH RECURSIVE sub(id, depth) AS (SELECT id, 0 FROM nodes WHERE id = $1 UNION ALL SELECT n.id, sub.depth + 1 FROM nodes n JOIN sub ON n.parent_id = sub.id) SELECT id, depth FROM sub ORDER BY depth DESC")
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    let mut freed_bytes = 0i64;
    let mut blobs: Vec<String> = Vec::new();
    for r in &rows {
        let nid = r.str("id")?;
        let vs = sqlx::query("SELECT blob_id, size FROM file_versions WHERE node_id = $1")
            .bind(&nid)
            .fetch_all(&mut *tx)
            .await?;
        for v in &vs {
            freed_bytes += v.int("size")?;
            blobs.push(v.str("blob_id")?);
        }
        sqlx::query("DELETE FROM file_versions WHERE node_id = $1")
            .bind(&nid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(&nid)
            .execute(&mut *tx)
            .await?;
    }
    blobs.sort();
    blobs.dedup();
    let mut unreferenced = Vec::new();
    for b in blobs {
        let c = sqlx::query("SELECT COUNT(*) AS c FROM file_versions WHERE blob_id = $1")
            .bind(&b)
            .fetch_one(&mut *tx)
            .await?;
        if c.int("c")? == 0 {
            sqlx::query("DELETE FROM blobs WHERE id = $1")
                .bind(&b)
                .execute(&mut *tx)
                .await?;
            if let Ok(id) = b.parse() {
                unreferenced.push(id);
            }
        }
    }
    release_quota(&mut tx, g.org_id(), freed_bytes).await?;
    let ev = AuditEvent::new("node.purge", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .name(n.name)
        .bytes(freed_bytes as u64)
        .detail(serde_json::json!({"nodes": rows.len()}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(unreferenced)
}
