//! Keyset paging shared by the store adapters. A cursor is `(sort key, id)` of the last item of a
//! page, base64url-encoded so clients treat it as opaque; keyset pagination stays stable when rows
//! are inserted between two page reads.
//!
//! Every list reads one row more than the page ([`PageRequest::fetch`]) and hands the rows to
//! [`page`], which cuts the extra row and, when there was one, encodes the cursor after the last
//! row kept.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::{PageRequest, StoreError};
use crate::domain::{Conversation, Message, Page};

/// The largest page a store returns.
pub const MAX_PAGE: u32 = 200;

/// Encodes the position after `(key, id)`.
pub fn encode(key: &str, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{key}\n{id}"))
}

/// Decodes a cursor made by [`encode`].
pub fn decode(cursor: &str) -> Result<(String, String), StoreError> {
    let raw = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(raw).map_err(|_| StoreError::InvalidCursor)?;
    let (key, id) = text.split_once('\n').ok_or(StoreError::InvalidCursor)?;
    if id.is_empty() {
        return Err(StoreError::InvalidCursor);
    }
    Ok((key.to_owned(), id.to_owned()))
}

impl PageRequest {
    /// Items on the page: the asked limit within 1–[`MAX_PAGE`].
    pub fn size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE) as usize
    }

    /// Rows to read: one more than the page, to learn whether another page follows.
    pub fn fetch(&self) -> usize {
        self.size() + 1
    }

    /// The `(sort key, id)` the page starts after, from the cursor.
    pub fn after(&self) -> Result<Option<(String, String)>, StoreError> {
        self.cursor.as_deref().map(decode).transpose()
    }
}

/// The key a list is sorted by, with the id that breaks ties.
pub trait Keyset {
    /// `(sort key, id)` of this item.
    fn keyset(&self) -> (String, &str);
}

impl Keyset for Conversation {
    fn keyset(&self) -> (String, &str) {
        (self.updated_at.to_rfc3339(), self.id.as_str())
    }
}

impl Keyset for Message {
    fn keyset(&self) -> (String, &str) {
        (self.created_at.to_rfc3339(), self.id.as_str())
    }
}

/// The page of `rows` (read in list order, up to [`PageRequest::fetch`] of them) that `request`
/// asked for, with the cursor of the next page when more rows followed.
pub fn page<T: Keyset>(mut rows: Vec<T>, request: &PageRequest) -> Page<T> {
    let size = request.size();
    let next_cursor = if rows.len() > size {
        rows.truncate(size);
        rows.last().map(|last| {
            let (key, id) = last.keyset();
            encode(&key, id)
        })
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::{ConversationId, Timestamp};

    #[test]
    fn round_trips_and_rejects_garbage() {
        let c = encode("2026-02-28T10:00:00.123Z", "abc");
        assert_eq!(
            decode(&c).unwrap(),
            ("2026-02-28T10:00:00.123Z".to_owned(), "abc".to_owned())
        );
        assert!(matches!(decode("!!!"), Err(StoreError::InvalidCursor)));
        assert!(matches!(
            decode(&URL_SAFE_NO_PAD.encode("no-separator")),
            Err(StoreError::InvalidCursor)
        ));
    }

    fn conversations(n: i64) -> Vec<Conversation> {
        (0..n)
            .map(|i| Conversation {
                id: ConversationId::from(format!("c{i}")),
                title: String::new(),
                message_count: 0,
                created_at: Timestamp::from_millis(i),
                updated_at: Timestamp::from_millis(1_000 + i),
                current_message_id: None,
                generating_message_id: None,
            })
            .collect()
    }

    fn request(limit: u32) -> PageRequest {
        PageRequest {
            limit,
            cursor: None,
        }
    }

    #[test]
    fn the_extra_row_is_cut_and_named_by_the_cursor() {
        let p = page(conversations(4), &request(3));
        assert_eq!(p.items.len(), 3);
        let (key, id) = decode(p.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(id, "c2", "the cursor points after the last item kept");
        assert_eq!(key, Timestamp::from_millis(1_002).to_rfc3339());
    }

    #[test]
    fn a_short_read_is_the_last_page() {
        for rows in [0, 2, 3] {
            let p = page(conversations(rows), &request(3));
            assert_eq!(p.items.len() as i64, rows);
            assert_eq!(p.next_cursor, None);
        }
    }

    #[test]
    fn page_sizes_are_clamped() {
        assert_eq!((request(0).size(), request(0).fetch()), (1, 2));
        assert_eq!(request(10_000).size(), MAX_PAGE as usize);
        let bad = PageRequest {
            limit: 5,
            cursor: Some("!!!".into()),
        };
        assert!(matches!(bad.after(), Err(StoreError::InvalidCursor)));
        assert_eq!(request(5).after().unwrap(), None);
    }
}
