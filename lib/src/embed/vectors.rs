//! The stored vectors of one file's chunks (blob `{owner}/{file_id}/vectors`): one vector per
//! chunk, in chunk order, with what they belong to, so that vectors made by another model, another
//! chunker or for another text are never used.
//!
//! Little-endian throughout:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `CVEC` |
//! | 1 | format version (1) |
//! | 1 | element type (1 = f16) |
//! | 2 | dimension |
//! | 4 | number of vectors (= chunks) |
//! | 4 | CRC-32 of the extracted text the vectors belong to |
//! | 1 + n | model id ([`super::Embedder::id`]) |
//! | 1 + n | chunker id ([`crate::service::retrieval::CHUNKER_ID`]) |
//! | count × dim × 2 | the vectors (f16) |
//! | 4 | CRC-32 of everything above |
//!
//! f16 halves the size (768 bytes a vector at 384 dimensions) and changes cosines by less than
//! 1e-4.

use half::f16;

const MAGIC: &[u8; 4] = b"CVEC";
const VERSION: u8 = 1;
const F16: u8 = 1;

/// What stored vectors must match to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect<'a> {
    /// The embedder's id.
    pub model: &'a str,
    /// The chunker's id.
    pub chunker: &'a str,
    /// The file's extracted text.
    pub text: &'a str,
    /// The embedder's dimension.
    pub dim: usize,
}

/// Why stored vectors were not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// The bytes are damaged (the reason says where).
    #[error("corrupt vector blob: {0}")]
    Corrupt(String),
    /// Made for something else (another model, chunker or text).
    #[error("stale vector blob: {0}")]
    Stale(String),
}

/// The blob of `vectors`, made by `expect.model` for the chunks of `expect.text`.
pub fn encode(expect: &Expect<'_>, vectors: &[Vec<f32>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + vectors.len() * expect.dim * 2);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(F16);
    out.extend_from_slice(&(expect.dim as u16).to_le_bytes());
    out.extend_from_slice(&(vectors.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(expect.text.as_bytes()).to_le_bytes());
    for id in [expect.model, expect.chunker] {
        let id = &id.as_bytes()[..id.len().min(255)];
        out.push(id.len() as u8);
        out.extend_from_slice(id);
    }
    for v in vectors {
        for i in 0..expect.dim {
            let x = v.get(i).copied().unwrap_or(0.0);
            out.extend_from_slice(&f16::from_f32(x).to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Unusable> {
        if self.0.len() < n {
            return Err(Unusable::Corrupt(format!("cut short in the {what}")));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, Unusable> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, Unusable> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, Unusable> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn id(&mut self, what: &str) -> Result<&'a str, Unusable> {
        let n = self.u8(what)? as usize;
        std::str::from_utf8(self.take(n, what)?)
            .map_err(|_| Unusable::Corrupt(format!("the {what} is not text")))
    }
}

/// The vectors of a blob, when it is whole and made for what `expect` says.
pub fn decode(bytes: &[u8], expect: &Expect<'_>) -> Result<Vec<Vec<f32>>, Unusable> {
    if bytes.len() < 4 {
        return Err(Unusable::Corrupt("shorter than its checksum".into()));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if crc32fast::hash(body) != stored {
        return Err(Unusable::Corrupt("checksum mismatch".into()));
    }
    let mut r = Reader(body);
    if r.take(4, "magic")? != MAGIC {
        return Err(Unusable::Corrupt("not a vector blob".into()));
    }
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(Unusable::Stale(format!("format version {version}")));
    }
    let kind = r.u8("element type")?;
    if kind != F16 {
        return Err(Unusable::Stale(format!("element type {kind}")));
    }
    let dim = r.u16("dimension")? as usize;
    let count = r.u32("count")? as usize;
    let text_crc = r.u32("text checksum")?;
    let model = r.id("model id")?;
    let chunker = r.id("chunker id")?;
    if model != expect.model {
        return Err(Unusable::Stale(format!(
            "made by model {model}, not {}",
            expect.model
        )));
    }
    if chunker != expect.chunker {
        return Err(Unusable::Stale(format!(
            "made for chunker {chunker}, not {}",
            expect.chunker
        )));
    }
    if dim != expect.dim {
        return Err(Unusable::Stale(format!(
            "{dim} dimensions, not {}",
            expect.dim
        )));
    }
    if text_crc != crc32fast::hash(expect.text.as_bytes()) {
        return Err(Unusable::Stale("made for another text".into()));
    }
    let data = r.0;
    if data.len() != count * dim * 2 {
        return Err(Unusable::Corrupt(format!(
            "{} bytes of vectors, expected {}",
            data.len(),
            count * dim * 2
        )));
    }
    Ok(data
        .chunks_exact(dim * 2)
        .map(|v| {
            v.chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(text: &str) -> Expect<'_> {
        Expect {
            model: "model-a",
            chunker: "chunk-v1",
            text,
            dim: 3,
        }
    }

    fn vectors() -> Vec<Vec<f32>> {
        vec![vec![0.6, 0.8, 0.0], vec![-0.5, 0.5, 0.70710677]]
    }

    #[test]
    fn vectors_come_back_within_half_precision() {
        let e = expect("some text");
        let got = decode(&encode(&e, &vectors()), &e).unwrap();
        assert_eq!(got.len(), 2);
        for (a, b) in got.iter().flatten().zip(vectors().iter().flatten()) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        let none = decode(&encode(&e, &[]), &e).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn every_damaged_byte_is_noticed() {
        let e = expect("some text");
        let blob = encode(&e, &vectors());
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x10;
            assert!(
                matches!(decode(&bad, &e), Err(Unusable::Corrupt(_))),
                "flipping byte {i} went unnoticed"
            );
        }
        for n in [0, 3, 10, blob.len() - 1] {
            assert!(matches!(decode(&blob[..n], &e), Err(Unusable::Corrupt(_))));
        }
    }

    #[test]
    fn vectors_made_for_something_else_are_stale() {
        let e = expect("some text");
        let blob = encode(&e, &vectors());
        let other_text = expect("other text");
        assert_eq!(
            decode(&blob, &other_text),
            Err(Unusable::Stale("made for another text".into()))
        );
        let other_model = Expect {
            model: "model-b",
            ..e
        };
        assert!(
            matches!(decode(&blob, &other_model), Err(Unusable::Stale(m)) if m.contains("model-a"))
        );
        let other_chunker = Expect {
            chunker: "chunk-v2",
            ..e
        };
        assert!(matches!(
            decode(&blob, &other_chunker),
            Err(Unusable::Stale(_))
        ));
        let other_dim = Expect { dim: 4, ..e };
        assert!(matches!(decode(&blob, &other_dim), Err(Unusable::Stale(_))));
    }
}
