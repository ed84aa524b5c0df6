//! An organization's chain as a file (`kura audit export`), and its
//! verification elsewhere with only the platform's public key (`kura audit
//! verify --file`).

use crate::chain::{
    checkpoints, for_each_chained, hash_forms, ChainVerifier, Checkpoint, HashForms, Problem,
    Record, Report,
};
use crate::db::Db;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// One line of an export file (JSON Lines).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExportLine {
    Header {
        format: String,
        chain: String,
        public_key: Option<String>,
        exported_at: i64,
        /// Events with a greater id are hashed in the binary form (absent
        /// in files written before it existed: every event in JSON form).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        binary_hash_after_id: Option<i64>,
    },
    Event(Box<Record>),
    Checkpoint(Checkpoint),
}

/// The export file's format: v2 files say which events use the binary hash
/// form; v1 files (every event in the JSON form) are still read.
const EXPORT_FORMAT: &str = "kura-audit-export-v2";
const EXPORT_FORMATS_READ: [&str; 2] = ["kura-audit-export-v1", EXPORT_FORMAT];

/// Write one organization's chain and its checkpoints as JSON Lines.
pub async fn export(
    db: &Db,
    chain: &str,
    public_key: Option<String>,
    out: &mut dyn std::io::Write,
) -> Result<u64> {
    crate::audit::settle(db).await?;
    let io = |e: std::io::Error| crate::StoreError::Internal(format!("export: {e}"));
    let line = |l: &ExportLine| {
        serde_json::to_string(l).map_err(|e| crate::StoreError::Internal(e.to_string()))
    };
    let header = ExportLine::Header {
        format: EXPORT_FORMAT.into(),
        chain: chain.into(),
        public_key,
        exported_at: crate::time::now_micros(),
        binary_hash_after_id: Some(hash_forms(db).await?.binary_after_id),
    };
    writeln!(out, "{}", line(&header)?).map_err(io)?;
    let mut n = 0;
    for_each_chained(db, chain, |r| {
        writeln!(out, "{}", line(&ExportLine::Event(Box::new(r)))?).map_err(io)?;
        n += 1;
        Ok(())
    })
    .await?;
    for c in checkpoints(db, Some(chain)).await? {
        writeln!(out, "{}", line(&ExportLine::Checkpoint(c))?).map_err(io)?;
    }
    Ok(n)
}

/// Verify an export with nothing but the file and the platform's public key.
pub fn verify_export(
    input: &mut dyn std::io::BufRead,
    public_key: &str,
) -> std::result::Result<Report, String> {
    let mut report = Report::default();
    let mut verifier: Option<ChainVerifier> = None;
    let mut cps = Vec::new();
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ExportLine>(&line).map_err(|e| format!("line {n}: {e}"))? {
            ExportLine::Header {
                chain,
                format,
                binary_hash_after_id,
                ..
            } => {
                if !EXPORT_FORMATS_READ.contains(&format.as_str()) {
                    return Err(format!("line {n}: unknown export format {format:?}"));
                }
                if verifier.is_some() {
                    return Err(format!("line {n}: a second header line"));
                }
                report.chains += 1;
                let forms = binary_hash_after_id
                    .map(|id| HashForms {
                        binary_after_id: id,
                    })
                    .unwrap_or(HashForms::ALL_JSON);
                verifier = Some(ChainVerifier::new(&chain, forms));
            }
            ExportLine::Event(r) => {
                let v = verifier.as_mut().ok_or("the file has no header line")?;
                report.events += 1;
                if let Some(p) = v.push(&r) {
                    report.problems.push(p);
                }
            }
            ExportLine::Checkpoint(c) => cps.push(c),
        }
    }
    let mut v = verifier.ok_or("the file has no header line")?;
    report.checkpoints = cps.len();
    if cps.is_empty() {
        report.problems.push(Problem {
            chain: v.chain().to_string(),
            seq: None,
            event_id: None,
            kind: "checkpoint",
            message: "no signed checkpoint in the file: nothing ties it to the operator's key"
                .into(),
        });
    }
    report
        .problems
        .extend(v.finish(None, &cps, Some(public_key)));
    Ok(report)
}
