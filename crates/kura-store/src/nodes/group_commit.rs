//! Group commit for new files.
//!
//! Every upload ends with a small transaction (quota, blob, node, version,
//! audit event) and a sync of the database, and SQLite has one writer: one
//! upload at a time, each waiting for its own sync. Here concurrent uploads
//! hand their commit to one task, which runs all waiting ones in one
//! transaction, each inside its own savepoint, and syncs once. A failing
//! upload (name taken, folder gone, quota full) rolls back to its savepoint
//! and only its caller sees the error; the others commit. Each caller is
//! answered only after the shared commit is durable.

use super::*;
use crate::point_read::bind_numbered;
use tokio::sync::{mpsc, oneshot};

/// Uploads committed together at most.
const MAX_GROUP: usize = 64;

struct NewFile {
    g: ProjectGrant<Write>,
    ctx: AuditCtx,
    parent: NodeId,
    name: FileName,
    blob: BlobMeta,
    done: oneshot::Sender<Result<Node>>,
}

/// The queue of one database's new-file commits (started on first use).
pub struct FileCommits(mpsc::Sender<NewFile>);

impl FileCommits {
    fn start(db: Db) -> Self {
        let (tx, mut rx) = mpsc::channel::<NewFile>(1024);
        tokio::spawn(async move {
            let mut group: Vec<NewFile> = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                match commit_group(&db, &group).await {
                    Ok(results) => {
                        for (job, r) in group.drain(..).zip(results) {
                            let _ = job.done.send(r);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, uploads = group.len(), "upload group commit failed");
                        for job in group.drain(..) {
                            let _ = job
                                .done
                                .send(Err(StoreError::Internal(format!("commit failed: {e}"))));
                        }
                    }
                }
            }
        });
        Self(tx)
    }
}

/// Make an uploaded blob visible as a new file. Only after this commit does
/// the file exist; on failure the caller deletes the blob. Concurrent
/// uploads share one transaction and one sync, through the queue of `db`.
pub async fn commit_new_file(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    parent: NodeId,
    name: &FileName,
    blob: &BlobMeta,
) -> Result<Node> {
    let queue = db
        .file_commits
        .get_or_init(|| FileCommits::start(db.clone()));
    let (done, wait) = oneshot::channel();
    queue
        .0
        .send(NewFile {
            g: g.clone(),
            ctx: ctx.clone(),
            parent,
            name: name.clone(),
            blob: blob.clone(),
            done,
        })
        .await
        .map_err(|_| StoreError::Internal("upload commit queue stopped".into()))?;
    wait.await
        .map_err(|_| StoreError::Internal("upload commit queue stopped".into()))?
}

/// One transaction for the whole group; per upload a savepoint, so that one
/// refusal leaves no trace and does not undo the others (through sqlx, a
/// group of one needs none: its refusal rolls back the transaction). The
/// audit events of the uploads that went in are appended together at the
/// end, so each upload costs its own rows and no more statements.
async fn commit_group(db: &Db, group: &[NewFile]) -> Result<Vec<Result<Node>>> {
    let rows: Vec<NewFileRows> = group
        .iter()
        .map(|j| NewFileRows::new(&j.g, j.parent, &j.name, &j.blob))
        .collect();
    if let Some(writer) = db.tail_writer.clone() {
        let ctxs: Vec<AuditCtx> = group.iter().map(|j| j.ctx.clone()).collect();
        return writer
            .run(db, move |w| {
                let (out, appended) = w.transaction(|tx| commit_group_lite(tx, rows, &ctxs))?;
                audit::note_tail_append(appended);
                Ok(out)
            })
            .await;
    }
    let mut tx = db.write.begin().await?;
    let alone = group.len() == 1;
    let mut out = Vec::with_capacity(group.len());
    let mut events = Vec::with_capacity(group.len());
    for (j, r) in group.iter().zip(rows) {
        if !alone {
            sqlx::query("SAVEPOINT new_file").execute(&mut *tx).await?;
        }
        let done = insert_new_file(&mut tx, &r).await;
        if !alone {
            if done.is_err() {
                sqlx::query("ROLLBACK TO SAVEPOINT new_file")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("RELEASE SAVEPOINT new_file")
                .execute(&mut *tx)
                .await?;
        }
        out.push(done.map(|()| {
            events.push((&j.ctx, r.event));
            r.node
        }));
    }
    if events.is_empty() {
        tx.rollback().await?;
        return Ok(out);
    }
    let items: Vec<(&AuditCtx, &AuditEvent)> = events.iter().map(|(c, e)| (*c, e)).collect();
    audit::append_many(&mut tx, &items).await?;
    tx.commit().await?;
    Ok(out)
}

/// The same on SQLite, in one blocking call on the audit writer's rusqlite
/// connection (`tail_writer`): through sqlx, each of a group's statements
/// was two hand-offs between threads, and on two cores the wake-ups cost
/// more than the statements (bench/RESULTS.md, run 9).
fn commit_group_lite(
    tx: &rusqlite::Transaction<'_>,
    rows: Vec<NewFileRows>,
    ctxs: &[AuditCtx],
) -> Result<(Vec<Result<Node>>, u64)> {
    let lite = |e: rusqlite::Error| StoreError::Internal(format!("upload commit: {e}"));
    let mut out = Vec::with_capacity(rows.len());
    let mut recs = Vec::with_capacity(rows.len());
    let ts = now_micros();
    for (r, ctx) in rows.into_iter().zip(ctxs) {
        tx.execute_batch("SAVEPOINT new_file").map_err(lite)?;
        let done = r.statements.iter().try_for_each(|(sql, params, if_none)| {
            let mut st = tx.prepare_cached(sql).map_err(lite)?;
            bind_numbered(&mut st, params).map_err(lite)?;
            let changed = st.raw_execute().map_err(|e| if_none.error(e.into()))?;
            if_none.check(changed as u64)
        });
        if done.is_err() {
            tx.execute_batch("ROLLBACK TO SAVEPOINT new_file")
                .map_err(lite)?;
        }
        tx.execute_batch("RELEASE SAVEPOINT new_file")
            .map_err(lite)?;
        out.push(done.map(|()| {
            recs.push(audit::record_of(ctx, &r.event, ts));
            r.node
        }));
    }
    if !recs.is_empty() {
        crate::tail_writer::TailWriter::append_in(tx, &mut recs)?;
    }
    Ok((out, recs.len() as u64))
}
