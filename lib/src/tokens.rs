//! Token counting for budgets and for `token_count` fields when a provider gives no usage.
//!
//! An estimate good to about ±15 % for English prose and code with OpenAI-style tokenizers:
//! roughly one token per four bytes of text, and never fewer than one per word.

/// Estimated tokens of `text`.
pub fn estimate(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let by_bytes = (text.len() as u64).div_ceil(4);
    let words = text.split_whitespace().count() as u64;
    by_bytes.max(words)
}

#[cfg(test)]
mod tests {
    #[test]
    fn estimates_grow_with_text() {
        assert_eq!(super::estimate(""), 0);
        assert_eq!(super::estimate("hi"), 1);
        assert!(super::estimate("The quick brown fox jumps over the lazy dog") >= 9);
        assert!(super::estimate(&"word ".repeat(1000)) >= 1000);
    }
}
