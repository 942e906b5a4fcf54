//! What the stores without a global sequence (DynamoDB, MongoDB) share: each entry is stamped
//! with its write time (microseconds, strictly increasing within a process), a watermark is the
//! newest stamp a reader has seen, and a read starts [`LOOKBACK`] before it. Instances' clocks
//! differ and a write stamped earlier may land later, so the look back catches what a plain
//! `> watermark` would miss; the price is that a read may return entries again (the newest copy of
//! an id wins, as the contract allows).

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};

use super::{bounded, EntryKind, LogPage, SearchEntry};
use crate::domain::{ConversationId, FileId, MessageId, Timestamp};
use crate::store::record::Fields;
use crate::store::StoreError;

/// How far before its watermark a read starts again, in microseconds (10 s).
pub const LOOKBACK: i64 = 10_000_000;

static LAST: AtomicI64 = AtomicI64::new(0);

/// A write stamp: the time in microseconds, strictly greater than the previous one this process
/// issued (so that entries appended one after the other read back in that order).
pub fn next() -> i64 {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
    )
    .unwrap_or(i64::MAX);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let stamp = now.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, stamp, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return stamp,
            Err(seen) => last = seen,
        }
    }
}

/// The watermark a reader passed, as a stamp (`None`: read everything).
pub fn watermark(after: Option<&str>) -> Result<Option<i64>, StoreError> {
    after
        .map(|w| w.parse::<i64>().map_err(|_| StoreError::InvalidCursor))
        .transpose()
}

/// The first stamp a read after `after` asks for.
pub fn read_from(after: Option<i64>) -> i64 {
    after.map_or(0, |w| w.saturating_sub(LOOKBACK).max(0))
}

/// Entries with the same id appended in one call: only the last one counts.
pub fn last_per_id(entries: &[SearchEntry]) -> Vec<&SearchEntry> {
    let mut seen = HashSet::new();
    let mut out: Vec<&SearchEntry> = entries
        .iter()
        .rev()
        .filter(|e| seen.insert(e.id.as_str()))
        .collect();
    out.reverse();
    out
}

/// A page from rows read oldest first (`(stamp, entry)`): one copy per id (the newest, in its
/// place), and the newest stamp as the watermark.
pub fn page(rows: Vec<(i64, SearchEntry)>, after: Option<i64>, generation: u64) -> LogPage {
    let newest = rows.iter().map(|(s, _)| *s).max();
    let mut seen = HashSet::new();
    let mut entries: Vec<SearchEntry> = rows
        .into_iter()
        .rev()
        .filter(|(_, e)| seen.insert(e.id.clone()))
        .map(|(_, e)| e)
        .collect();
    entries.reverse();
    LogPage {
        entries,
        watermark: newest.max(after).map(|w| w.to_string()),
        generation,
    }
}

/// The text an entry keeps (an item must stay small: at most 2,000 characters).
pub fn text(e: &SearchEntry) -> String {
    bounded(&e.text)
}

/// An entry from a stored row (`id`, `kind`, the optional ids, `label`, `created_at` in
/// milliseconds, `text`), given its chunk and vector, which each store keeps in its own way.
pub fn entry(
    row: &impl Fields,
    chunk: Option<u32>,
    vector: Vec<u8>,
) -> Result<SearchEntry, StoreError> {
    let kind = row.text("kind")?;
    Ok(SearchEntry {
        id: row.text("id")?,
        kind: EntryKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("search entry of unknown kind {kind}")))?,
        conversation_id: row
            .optional_text("conversation_id")?
            .map(ConversationId::from),
        message_id: row.optional_text("message_id")?.map(MessageId::from),
        file_id: row.optional_text("file_id")?.map(FileId::from),
        chunk,
        label: row.optional_text("label")?,
        created_at: Timestamp::from_millis(row.whole("created_at")?),
        text: row.text("text")?,
        vector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_strictly_increase() {
        let a = next();
        let b = next();
        assert!(b > a);
    }

    #[test]
    fn a_page_keeps_the_newest_copy_of_an_id_and_the_newest_stamp() {
        let e = |id: &str, text: &str| SearchEntry {
            id: id.into(),
            kind: EntryKind::Message,
            conversation_id: None,
            message_id: None,
            file_id: None,
            chunk: None,
            label: None,
            created_at: Timestamp::from_millis(1),
            text: text.into(),
            vector: Vec::new(),
        };
        let p = page(
            vec![(5, e("a", "old")), (6, e("b", "b")), (7, e("a", "new"))],
            Some(3),
            2,
        );
        let got: Vec<_> = p.entries.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(got, ["b", "new"]);
        assert_eq!(p.watermark.as_deref(), Some("7"));
        assert_eq!(page(vec![], Some(9), 0).watermark.as_deref(), Some("9"));
        assert_eq!(page(vec![], None, 0).watermark, None);
        assert_eq!(read_from(Some(LOOKBACK + 5)), 5);
    }
}
