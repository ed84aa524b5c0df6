//! A stored audit event's values (`EVENT_COLUMNS`, by position) read as
//! they are, for verification.
//!
//! Kura writes every text field as UTF-8 text and every number as an
//! integer. A value of another type (a blob, a real, text where a number
//! belongs, nothing where a value is required) can only come from an edit
//! made outside Kura. Verification reports it as a modification of that
//! event, naming the column, so that one odd value cannot stop it from
//! reporting everything else. Text that is not valid UTF-8 needs no check
//! here: its bytes are hashed as stored, and cannot match what was written.

use crate::audit::EVENT_COLUMNS;
use crate::chain::Problem;
use crate::event_hash::RecordView;
use rusqlite::types::ValueRef;

/// A column holding a value Kura never stores there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WrongValue {
    /// Its position in `EVENT_COLUMNS`.
    pub column: usize,
}

impl WrongValue {
    pub fn column_name(&self) -> &'static str {
        EVENT_COLUMNS.split(", ").nth(self.column).unwrap_or("?")
    }

    /// How a report says it.
    pub fn describe(&self, id: i64) -> String {
        format!(
            "event id {id} holds a value Kura never writes in its {} (modified)",
            self.column_name()
        )
    }
}

/// Positions in `EVENT_COLUMNS`.
pub(crate) const ID: usize = 0;
pub(crate) const ORG_ID: usize = 2;
pub(crate) const CHAIN_SEQ: usize = 17;

#[inline(always)]
pub(crate) fn text(v: ValueRef<'_>, column: usize) -> Result<Option<&[u8]>, WrongValue> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(b) => Ok(Some(b)),
        _ => Err(WrongValue { column }),
    }
}

#[inline(always)]
pub(crate) fn int(v: ValueRef<'_>, column: usize) -> Result<Option<i64>, WrongValue> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i)),
        _ => Err(WrongValue { column }),
    }
}

#[inline(always)]
fn required<T>(v: Result<Option<T>, WrongValue>, column: usize) -> Result<T, WrongValue> {
    v?.ok_or(WrongValue { column })
}

/// The event whose `EVENT_COLUMNS` values `get` returns by position, with
/// the id (a rowid, always an integer) already read.
#[inline(always)]
pub(crate) fn view<'a>(
    id: i64,
    get: impl Fn(usize) -> ValueRef<'a>,
) -> Result<RecordView<'a>, WrongValue> {
    let t = |column: usize| text(get(column), column);
    Ok(RecordView {
        id,
        ts: required(int(get(1), 1), 1)?,
        org_id: t(ORG_ID)?,
        actor_user_id: t(3)?,
        actor_org_id: t(4)?,
        credential: t(5)?,
        ip: t(6)?,
        user_agent: t(7)?,
        request_id: t(8)?,
        action: required(t(9), 9)?,
        outcome: required(t(10), 10)?,
        project_id: t(11)?,
        node_id: t(12)?,
        version_id: t(13)?,
        object_name: t(14)?,
        bytes: int(get(15), 15)?,
        detail: t(16)?,
        chain_seq: int(get(CHAIN_SEQ), CHAIN_SEQ)?,
        chain_hash: t(18)?,
    })
}

/// Any stored value as text, for reports: text as it is (invalid UTF-8
/// replaced), numbers in decimal, a blob's bytes as if they were text.
pub(crate) fn lossy(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// A stored value cut to a length a report can show.
pub(crate) fn shortened(s: &str) -> String {
    const SHOWN: usize = 64;
    match s.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

/// An event (the first id with it, and its position if readable) whose
/// organization id (`raw`) is not a chain name Kura can have written: its
/// organization was changed, or it was inserted, outside Kura. Its own
/// chain then misses a position, which that chain's check reports.
pub(crate) fn foreign(id: Option<i64>, seq: Option<i64>, raw: &[u8], what: &str) -> Problem {
    let first = id.map_or("an event".to_string(), |i| format!("event id {i}"));
    Problem {
        chain: shortened(&String::from_utf8_lossy(raw)),
        seq,
        event_id: id,
        kind: "modified",
        message: format!(
            "{first} carries an organization id that Kura never writes ({what}): its organization was changed (modified)"
        ),
    }
}

/// Whether an event without a chain position is history from before
/// chaining (ids from 1 up to the setting `audit_chain_from_id`, which
/// migration 3 recorded); any other such event was inserted.
pub(crate) fn is_history(id: i64, history_until: i64) -> bool {
    (1..=history_until).contains(&id)
}

/// A chained event whose id is within the history from before chaining:
/// honest ids only grow, so the setting that bounds the history was raised
/// (which would let inserted events pass as history).
pub(crate) fn raised_history(chain: &str, seq: i64, id: i64, history_until: i64) -> Problem {
    Problem {
        chain: chain.to_string(),
        seq: Some(seq),
        event_id: Some(id),
        kind: "modified",
        message: format!(
            "event id {id} at position {seq} has a chain position, but the setting audit_chain_from_id ({history_until}) counts it as history from before chaining: the setting was raised (modified)"
        ),
    }
}

/// A row of `SELECT chain, seq, hash FROM audit_chain_heads`, read so that
/// an edited head is compared (and reported) rather than failing the read:
/// a position that is not a number reads as -1, which no chain ends at.
pub(crate) fn head(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, (i64, String))> {
    let seq = match r.get_ref(1)? {
        ValueRef::Integer(i) => i,
        _ => -1,
    };
    Ok((lossy(r.get_ref(0)?), (seq, lossy(r.get_ref(2)?))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_values_name_their_column() {
        let values: Vec<ValueRef<'static>> = (0..19)
            .map(|i| match i {
                0 | 1 | 15 | 17 => ValueRef::Integer(7),
                16 => ValueRef::Blob(b"{}"),
                _ => ValueRef::Text(b"x"),
            })
            .collect();
        let err = view(7, |i| values[i]).expect_err("a blob in detail");
        assert_eq!(err.column_name(), "detail");
        assert!(err.describe(7).contains("event id 7"));
        let mut ok = values.clone();
        ok[16] = ValueRef::Text(&[0xff, 0x41]);
        assert!(view(7, |i| ok[i]).is_ok(), "bytes are hashed as stored");
        ok[9] = ValueRef::Null;
        let err = view(7, |i| ok[i]).expect_err("no action");
        assert_eq!(err.column_name(), "action");
        ok[9] = ValueRef::Text(b"a");
        ok[17] = ValueRef::Real(1.5);
        assert_eq!(
            view(7, |i| ok[i]).expect_err("seq").column_name(),
            "chain_seq"
        );
    }
}
