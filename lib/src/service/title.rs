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
    fn falls_back_to_the_message() {
        assert_eq!(
            fallback("What is in the Q4 report about revenue growth", &[]),
            "What is in the Q4 report"
        );
        assert_eq!(fallback("", &["report.pdf".into()]), "report.pdf");
    }
}
