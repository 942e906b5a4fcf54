//! The local model's tokenizer, built from the GGUF file's own metadata (`tokenizer.ggml.*`): byte-level
//! BPE with the model's vocabulary, merges and pre-tokenizer, plus a streaming decoder that only lets out
//! whole UTF-8 characters.
//!
//! Special tokens (`<|im_start|>`, …) are deliberately *not* registered as added tokens: text is always
//! encoded as plain text, so a message that contains `<|im_end|>` cannot forge a turn boundary. The chat
//! template inserts special tokens by id.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::tokenizer::SplitDelimiterBehavior;

/// GGUF `token_type` of control tokens (llama.cpp's `LLAMA_TOKEN_TYPE_CONTROL`).
const TOKEN_TYPE_CONTROL: u32 = 3;

/// Llama 3 style pre-tokenizer split (digits in groups of up to three).
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A byte-level BPE tokenizer read from a GGUF file.
pub struct GgufTokenizer {
    inner: tokenizers::Tokenizer,
    /// Token string → id, for looking up special tokens by name.
    ids: HashMap<String, u32>,
    /// Id → the bytes it stands for (empty for control tokens).
    bytes: Vec<Vec<u8>>,
    /// Which ids are control tokens (never shown as text).
    control: Vec<bool>,
}

fn meta<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, String> {
    ct.metadata
        .get(key)
        .ok_or_else(|| format!("the file has no `{key}`"))
}

fn strings(v: &gguf_file::Value, key: &str) -> Result<Vec<String>, String> {
    v.to_vec()
        .map_err(|_| format!("`{key}` is not a list"))?
        .iter()
        .map(|s| {
            s.to_string()
                .cloned()
                .map_err(|_| format!("`{key}` holds something other than text"))
        })
        .collect()
}

fn number(v: &gguf_file::Value) -> Option<u32> {
    use gguf_file::Value as V;
    match v {
        V::U8(n) => Some(u32::from(*n)),
        V::U16(n) => Some(u32::from(*n)),
        V::U32(n) => Some(*n),
        V::I32(n) => u32::try_from(*n).ok(),
        V::U64(n) => u32::try_from(*n).ok(),
        V::I64(n) => u32::try_from(*n).ok(),
        _ => None,
    }
}

/// GPT-2's byte ↔ printable character table, inverted: character → byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut printable: Vec<u8> = (b'!'..=b'~').collect();
    printable.extend(0xA1u8..=0xAC);
    printable.extend(0xAEu8..=0xFF);
    let mut map = HashMap::with_capacity(256);
    for &b in &printable {
        map.insert(char::from(b), b);
    }
    let mut n = 0u32;
    for b in 0u8..=255 {
        if !printable.contains(&b) {
            if let Some(c) = char::from_u32(256 + n) {
                map.insert(c, b);
            }
            n += 1;
        }
    }
    map
}

impl GgufTokenizer {
    /// Reads the tokenizer of a GGUF file. Only byte-level BPE (`tokenizer.ggml.model = gpt2`) is supported.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, String> {
        let kind = meta(ct, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|_| "`tokenizer.ggml.model` is not text".to_owned())?
            .to_lowercase();
        if kind != "gpt2" {
            return Err(format!(
                "its tokenizer is `{kind}`; only byte-level BPE (`gpt2`) tokenizers are supported"
            ));
        }
        let tokens = strings(meta(ct, "tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
        let merges = strings(meta(ct, "tokenizer.ggml.merges")?, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| format!("a merge is malformed: `{m}`"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let types: Vec<u32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|_| "`tokenizer.ggml.token_type` is not a list".to_owned())?
                .iter()
                .map(|t| number(t).unwrap_or(1))
                .collect(),
            None => Vec::new(),
        };
        let control: Vec<bool> = (0..tokens.len())
            .map(|i| types.get(i) == Some(&TOKEN_TYPE_CONTROL))
            .collect();

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| u32::try_from(i).ok().map(|i| (t.clone(), i)))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| format!("its vocabulary cannot be read: {e}"))?;

        let pre = ct
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "gpt2".into());
        let pre_tokenizer: PreTokenizerWrapper = match pre.as_str() {
            // SmolLM: digits one by one, then GPT-2's byte-level split, no prefix space.
            "smollm" => Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            "llama3" | "llama-bpe" | "smaug-bpe" => Sequence::new(vec![
                Split::new(
                    SplitPattern::Regex(REGEX_LLAMA3.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| format!("its pre-tokenizer cannot be built: {e}"))?
                .into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            _ => ByteLevel::new(false, true, true).into(),
        };
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));

        let table = unicode_to_byte();
        let bytes = tokens
            .iter()
            .zip(&control)
            .map(|(t, &is_control)| {
                if is_control {
                    Vec::new()
                } else {
                    // Characters outside the byte table (none in a well-formed vocabulary) pass as UTF-8.
                    let mut out = Vec::with_capacity(t.len());
                    for c in t.chars() {
                        match table.get(&c) {
                            Some(b) => out.push(*b),
                            None => {
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            }
                        }
                    }
                    out
                }
            })
            .collect();
        let ids = tokens
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| u32::try_from(i).ok().map(|i| (t, i)))
            .collect();
        Ok(Self {
            inner,
            ids,
            bytes,
            control,
        })
    }

    /// Plain text → token ids (special-token names in the text stay plain text).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| format!("the text cannot be tokenized: {e}"))
    }

    /// The id of a token by its exact name (`<|im_end|>`).
    pub fn token_id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Whether an id is a control token.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    /// The bytes a token stands for (empty for control tokens and unknown ids).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// All the text of some ids (control tokens left out).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// How many tokens the vocabulary has.
    pub fn vocab_size(&self) -> usize {
        self.bytes.len()
    }
}

/// Turns a token stream into text pieces, holding back bytes until they form whole UTF-8 characters.
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Adds a token's bytes; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let s = s.to_owned();
                self.pending.clear();
                s
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // `error_len() == None`: the end is an incomplete character; wait for more bytes.
                // `Some(_)`: invalid bytes; replace them rather than stall forever.
                let take = match e.error_len() {
                    None => valid,
                    Some(bad) => valid + bad,
                };
                let out = String::from_utf8_lossy(&self.pending[..take]).into_owned();
                self.pending.drain(..take);
                if e.error_len().is_some() {
                    // What follows the invalid bytes may be complete already.
                    let rest = self.push(&[]);
                    return out + &rest;
                }
                out
            }
        }
    }

    /// What is left at the end (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_covers_every_byte() {
        let t = unicode_to_byte();
        assert_eq!(t.len(), 256);
        assert_eq!(t.get(&'Ġ'), Some(&b' '));
        assert_eq!(t.get(&'Ċ'), Some(&b'\n'));
        assert_eq!(t.get(&'a'), Some(&b'a'));
    }

    #[test]
    fn stream_decoder_waits_for_whole_characters() {
        let mut d = StreamDecoder::default();
        let e = "é".as_bytes();
        assert_eq!(d.push(b"caf"), "caf");
        assert_eq!(d.push(&e[..1]), "");
        assert_eq!(d.push(&e[1..]), "é");
        let crab = "🦀".as_bytes();
        assert_eq!(d.push(&crab[..2]), "");
        assert_eq!(d.push(&crab[2..]), "🦀");
        assert_eq!(d.push(&[0xFF, b'x']), "\u{FFFD}x");
        assert_eq!(d.push(&crab[..1]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
