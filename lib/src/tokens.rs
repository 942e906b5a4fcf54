//! Token counting for budgets and `token_count` fields.
//!
//! OpenAI models get exact counts from their own vocabularies (feature `tiktoken`: o200k for the
//! GPT-4o/4.1/5 and o-series families, cl100k for GPT-4 and 3.5). Other models, and builds without
//! the feature, get an estimate good to about ±15 % for prose and code: one token per four bytes,
//! never fewer than one per word.

/// Estimated tokens of `text`.
pub fn estimate(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let by_bytes = (text.len() as u64).div_ceil(4);
    let words = text.split_whitespace().count() as u64;
    by_bytes.max(words)
}

/// Tokens of `text` for `model`: exact when the model's vocabulary is known and built in.
pub fn count(model: &str, text: &str) -> u64 {
    #[cfg(feature = "tiktoken")]
    if let Some(bpe) = vocabulary(model) {
        return bpe.encode_ordinary(text).len() as u64;
    }
    let _ = model;
    estimate(text)
}

/// Whether counts for `model` are exact in this build.
pub fn is_exact(model: &str) -> bool {
    #[cfg(feature = "tiktoken")]
    {
        vocabulary(model).is_some()
    }
    #[cfg(not(feature = "tiktoken"))]
    {
        let _ = model;
        false
    }
}

#[cfg(feature = "tiktoken")]
fn vocabulary(model: &str) -> Option<&'static tiktoken_rs::CoreBPE> {
    let m = model.to_ascii_lowercase();
    let o200k = [
        "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-",
    ];
    if o200k.iter().any(|p| m.starts_with(p)) {
        return Some(tiktoken_rs::o200k_base_singleton());
    }
    if m.starts_with("gpt-4") || m.starts_with("gpt-3.5") {
        return Some(tiktoken_rs::cl100k_base_singleton());
    }
    None
}

/// The context window of well-known models, in tokens; `None` when unknown.
pub fn known_context_window(model: &str) -> Option<u64> {
    let m = model.to_ascii_lowercase();
    if m.starts_with("gpt-4.1") {
        Some(1_000_000)
    } else if m.starts_with("gpt-5")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4")
    {
        Some(200_000)
    } else if m.starts_with("gpt-4o") || m.starts_with("gpt-4-turbo") || m.starts_with("chatgpt-") {
        Some(128_000)
    } else if m.starts_with("gpt-4") {
        Some(8_192)
    } else if m.starts_with("gpt-3.5") {
        Some(16_385)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_text() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("hi"), 1);
        assert!(estimate("The quick brown fox jumps over the lazy dog") >= 9);
        assert!(estimate(&"word ".repeat(1000)) >= 1000);
    }

    #[test]
    fn unknown_models_are_estimated() {
        let text = "Bonjour tout le monde, voici un texte.";
        assert_eq!(count("llama3.2", text), estimate(text));
        assert!(!is_exact("llama3.2"));
        assert_eq!(known_context_window("llama3.2"), None);
        assert_eq!(known_context_window("gpt-4o-mini"), Some(128_000));
    }

    #[cfg(feature = "tiktoken")]
    #[test]
    fn openai_models_are_counted_exactly() {
        // "hello world" is two tokens in both vocabularies.
        assert_eq!(count("gpt-4o", "hello world"), 2);
        assert_eq!(count("gpt-4", "hello world"), 2);
        assert!(is_exact("gpt-4o-mini"));
        let long = "Revenue grew in the fourth quarter. ".repeat(50);
        assert!(count("gpt-4o", &long) < estimate(&long) * 2);
    }
}
