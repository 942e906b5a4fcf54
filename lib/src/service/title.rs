//! Automatic titles: a cheap model names a new conversation from its first message.

use std::sync::Arc;

use crate::auth::Principal;
use crate::domain::ConversationId;
use crate::ledger::Spend;
use crate::llm::{ChatMessage, ChatRequest, ChatRole, Registry};
use crate::service::usage::{worst_case, Budgets};
use crate::store::Store;
use crate::traces::TurnTrace;

/// The longest automatic title, in characters.
pub const MAX_AUTO_TITLE: usize = 80;
/// The title model's answer cap, in tokens.
pub const TITLE_TOKENS: u32 = 24;

const INSTRUCTIONS: &str =
    "Write a short title (at most 6 words) for a conversation that starts with the message below. \
Reply with the title only: no quotes, no trailing punctuation.";

/// Tidies what a model returned: first line, no quotes or `Title:` prefix, bounded length.
pub fn clean(raw: &str) -> Option<String> {
    let line = raw.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .strip_prefix("Title:")
        .or_else(|| line.strip_prefix("title:"))
        .unwrap_or(line)
        .trim();
    let line = line
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '*' || c == '#' || c == '`')
        .trim();
    let line = line.trim_end_matches(['.', '!', ':']).trim();
    if line.is_empty() {
        return None;
    }
    let mut title: String = line.chars().take(MAX_AUTO_TITLE).collect();
    if line.chars().count() > MAX_AUTO_TITLE {
        title = title.trim_end().to_owned() + "…";
    }
    Some(title)
}

/// A title from the message itself, when the model gives none.
pub fn fallback(message: &str, file_names: &[String]) -> String {
    let words: Vec<&str> = message.split_whitespace().take(6).collect();
    let base = if words.is_empty() {
        file_names
            .first()
            .cloned()
            .unwrap_or_else(|| "Files".into())
    } else {
        words.join(" ")
    };
    clean(&base).unwrap_or_else(|| "Conversation".into())
}

/// Words that ask for something rather than name it (`summarise this`, `could you explain`).
const REQUEST_WORDS: &[&str] = &[
    "could",
    "would",
    "should",
    "did",
    "has",
    "have",
    "had",
    "were",
    "give",
    "show",
    "explain",
    "describe",
    "summarise",
    "summarize",
    "list",
    "find",
    "write",
    "help",
    "know",
    "want",
    "need",
    "like",
    "us",
    "our",
    "some",
    "any",
    "all",
    "into",
    "than",
    "then",
    "so",
    "if",
    "not",
    "no",
    "just",
    "also",
    "very",
    "much",
    "many",
    "file",
    "files",
    "document",
    "attached",
    "above",
    "below",
    "following",
    "these",
    "those",
    "them",
    "they",
    "he",
    "she",
    "him",
    "her",
    "his",
    "be",
    "been",
    "being",
    "make",
    "made",
    "get",
    "got",
    "say",
    "said",
    "one",
];

/// A title made of the message's own subject words, for a model too small (or too slow) to be
/// asked for one: the first few words that are neither stop words nor requests, the first one
/// capitalised (`What did the soldiers sleep on in the trenches?` → `Soldiers sleep trenches`);
/// the first file's name when the message names nothing.
pub fn from_words(message: &str, file_names: &[String]) -> String {
    let words: Vec<&str> = message
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| {
            let lower = w.to_lowercase();
            !w.is_empty()
                && !crate::service::retrieval::is_stopword(&lower)
                && !REQUEST_WORDS.contains(&lower.as_str())
        })
        .take(5)
        .collect();
    if words.len() < 2 {
        if let Some(name) = file_names.first() {
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
            let stem = stem.replace(['_', '-'], " ");
            if let Some(title) = clean(stem.trim()) {
                return title;
            }
        }
    }
    if words.is_empty() {
        return if message.chars().any(char::is_alphanumeric) {
            fallback(message, file_names)
        } else {
            "Conversation".into()
        };
    }
    let mut title = words.join(" ");
    if let Some(first) = title.chars().next() {
        title = first.to_uppercase().chain(title.chars().skip(1)).collect();
    }
    clean(&title).unwrap_or_else(|| fallback(message, file_names))
}

/// Names new conversations: asks the registry's title model (or its fallbacks), falls back to
/// the message itself, and stores the title only while the conversation still has the default one
/// (a rename wins). The title model's call counts against the caller's budgets like an answer:
/// reserved before, settled after; when it does not fit, the title comes from the message.
#[derive(Clone)]
pub struct Titler {
    models: Arc<Registry>,
    store: Arc<dyn Store>,
    budgets: Budgets,
}

impl Titler {
    /// Titles written by the title model of `models`, stored in `store`, paid from `budgets`.
    pub fn new(models: Arc<Registry>, store: Arc<dyn Store>, budgets: Budgets) -> Self {
        Self {
            models,
            store,
            budgets,
        }
    }

    /// Asks the title model (its calls recorded under `trace`), stores the title if the
    /// conversation still has the default one, and returns it when it was stored.
    pub async fn generate(
        &self,
        who: &Principal,
        conversation: &ConversationId,
        message: &str,
        file_names: &[String],
        trace: &TurnTrace,
    ) -> Option<String> {
        let excerpt: String = message.chars().take(2000).collect();
        let mut prompt = format!("Message: {excerpt}");
        if !file_names.is_empty() {
            prompt.push_str(&format!("\nAttached files: {}", file_names.join(", ")));
        }
        let title_model = self.models.title_model();
        if title_model.provider == crate::llm::Provider::Local {
            // The offline model serves one answer at a time: asking it would put the title in
            // line with the answer (or the answer behind the title), and a 135M model tends to
            // answer the message rather than name it. The message's own words make the title.
            let title = from_words(message, file_names);
            return self.store_title(who, conversation, title).await;
        }
        let request = ChatRequest {
            model: title_model.model.clone(),
            messages: vec![
                ChatMessage::text(ChatRole::System, INSTRUCTIONS),
                ChatMessage::text(ChatRole::User, prompt),
            ],
            max_tokens: Some(TITLE_TOKENS),
            temperature: Some(0.2),
        };
        let prompt: u64 = request
            .messages
            .iter()
            .map(|m| crate::tokens::count(&request.model, &m.joined_text()) + 4)
            .sum();
        let worst = worst_case(title_model, prompt, u64::from(TITLE_TOKENS));
        let title = match self.budgets.reserve(who, worst).await {
            Err(e) => {
                tracing::info!(reason = %e, "no budget for the title model; titling from the message");
                fallback(message, file_names)
            }
            Ok(hold) => match self
                .models
                .complete_in(&title_model.id, request, trace)
                .await
            {
                Ok((answered, raw, usage)) => {
                    let usage = usage.unwrap_or(crate::llm::Usage {
                        prompt_tokens: prompt,
                        completion_tokens: crate::tokens::estimate(&raw),
                    });
                    hold.settle(Spend {
                        model: answered.id.clone(),
                        turns: 0,
                        prompt_tokens: usage.prompt_tokens,
                        completion_tokens: usage.completion_tokens,
                        cost_nanos: answered.price.map(|p| {
                            crate::llm::prices::cost_nanos(
                                p,
                                usage.prompt_tokens,
                                usage.completion_tokens,
                            )
                        }),
                    })
                    .await;
                    clean(&raw).unwrap_or_else(|| fallback(message, file_names))
                }
                Err(e) => {
                    hold.settle(Spend::nothing(&title_model.id)).await;
                    tracing::warn!(error = %e, "the title model failed; titling from the message");
                    fallback(message, file_names)
                }
            },
        };
        self.store_title(who, conversation, title).await
    }

    /// Stores `title` if the conversation still has the default one; returns it when stored.
    async fn store_title(
        &self,
        who: &Principal,
        conversation: &ConversationId,
        title: String,
    ) -> Option<String> {
        match self
            .store
            .set_auto_title(&who.owner, conversation, &title)
            .await
        {
            Ok(true) => Some(title),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not store the automatic title");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_model_output() {
        assert_eq!(
            clean("\"Quarterly Report Q4\"\n").as_deref(),
            Some("Quarterly Report Q4")
        );
        assert_eq!(
            clean("Title: Trip to Lisbon.").as_deref(),
            Some("Trip to Lisbon")
        );
        assert_eq!(clean("  \n  ").as_deref(), None);
        let long = "word ".repeat(40);
        let t = clean(&long).unwrap();
        assert!(t.chars().count() <= MAX_AUTO_TITLE + 1 && t.ends_with('…'));
    }

    #[test]
    fn a_title_from_words_names_the_subject() {
        assert_eq!(
            from_words("What did the soldiers make their beds from?", &[]),
            "Soldiers beds"
        );
        assert_eq!(
            from_words(
                "Could you summarise the Q4 revenue report for the board, please?",
                &[]
            ),
            "Q4 revenue report board"
        );
        assert_eq!(
            from_words("Explain this file", &["Siege_of-Vicksburg.pdf".into()]),
            "Siege of Vicksburg"
        );
        assert_eq!(
            from_words(
                "Which public building in the besieged town was a target for the guns?",
                &[]
            ),
            "Public building besieged town target"
        );
        assert_eq!(from_words("?", &[]), "Conversation");
        let long = "Lisbon ".repeat(300);
        assert!(from_words(&long, &[]).chars().count() <= MAX_AUTO_TITLE + 1);
    }

    #[test]
    fn falls_back_to_the_message() {
        assert_eq!(
            fallback("What is in the Q4 report about revenue growth", &[]),
            "What is in the Q4 report"
        );
        assert_eq!(fallback("", &["report.pdf".into()]), "report.pdf");
    }
}
