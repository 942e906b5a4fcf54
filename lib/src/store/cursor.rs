//! Opaque keyset cursors shared by the store adapters: `(sort key, id)` of the last item of a page,
//! base64url-encoded so clients treat them as opaque. Keyset pagination stays stable when rows
//! are inserted between two page reads.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::StoreError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
