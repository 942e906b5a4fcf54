//! Regenerate: a new answer to the user message an answer answered, beside it (a sibling in the
//! conversation's tree). It runs like a sent turn from the persist step on — the model checked
//! the same way, the history window the branch before the user message, the answer streamed,
//! logged and stored — and the new answer becomes the conversation's current leaf.

use super::resolve::valid_model_name;
use super::{ChatService, Turn};
use crate::auth::Principal;
use crate::domain::{MessageId, Role};
use crate::service::Error;

/// What a regenerate request carries.
#[derive(Debug, Clone)]
pub struct RegenerateInput {
    /// The answer to answer again.
    pub message_id: MessageId,
    /// The id of a model of the registry; `None`: the default.
    pub model: Option<String>,
}

impl ChatService {
    /// Starts a new answer to the question `input.message_id` answered. An unknown id (or another
    /// user's) is not found; a user message cannot be regenerated. The new answer's worst case is
    /// reserved against the caller's budgets first, as a sent turn's is.
    pub async fn regenerate(&self, who: &Principal, input: RegenerateInput) -> Result<Turn, Error> {
        let owner = &who.owner;
        let began = std::time::SystemTime::now();
        if input.model.as_deref().is_some_and(|m| !valid_model_name(m)) {
            return Err(Error::Invalid("The model name is not valid.".into()));
        }
        let model = self.pick_model(input.model.as_deref())?;
        let not_found = || Error::NotFound(format!("No message with id {}.", input.message_id));
        let found = self
            .store
            .get_message(owner, &input.message_id)
            .await?
            .ok_or_else(not_found)?;
        // Reading the conversation first migrates a history written before message trees, so the
        // answer is read again with its parent.
        let conversation =
            crate::service::conversations::find(self.store.as_ref(), owner, &found.conversation_id)
                .await?;
        let answer = match found.parent_id {
            Some(_) => found,
            None => self
                .store
                .get_message(owner, &input.message_id)
                .await?
                .ok_or_else(not_found)?,
        };
        if answer.role != Role::Assistant {
            return Err(Error::Unprocessable(
                "Only an answer can be regenerated. To change a message, send its new text with the edited message's parent_id.".into(),
            ));
        }
        let question = match &answer.parent_id {
            Some(id) => self.store.get_message(owner, id).await?,
            None => None,
        }
        .ok_or_else(|| Error::Unprocessable("This answer answers no message.".into()))?;
        let history = match &question.parent_id {
            Some(p) => {
                self.store
                    .branch(
                        owner,
                        &conversation.id,
                        p,
                        Some(self.settings.history_messages),
                    )
                    .await?
            }
            None => Vec::new(),
        };
        let (hold, cap) = self
            .hold_turn(
                who,
                &model,
                &history,
                &question.content,
                question.files.iter(),
            )
            .await?;
        let model_id = model.id.clone();
        let prepared = async {
            let persisted = self
                .persist_again(owner, conversation, question, history, model)
                .await?;
            let mut prompt = self.build_request(owner, &persisted).await?;
            if let Some(cap) = cap {
                prompt.request.max_tokens.get_or_insert(cap);
            }
            Ok::<_, Error>((persisted, prompt))
        }
        .await;
        match prepared {
            Ok((persisted, prompt)) => Ok(self.run_answer(who, persisted, prompt, hold, began)),
            Err(e) => {
                hold.settle(crate::ledger::Spend::nothing(&model_id)).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use super::*;
    use crate::domain::Owner;
    use crate::llm::ChatRole;
    use crate::service::chat::fixture::{drain, tokens, who, Fixture};

    #[tokio::test]
    async fn a_regenerated_answer_sees_the_branch_before_its_question_only() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut first = f.send(&owner, "first question").await;
        drain(&mut first).await;
        let conversation = first.meta.conversation_id.clone();
        let mut second = f.reply(&owner, &conversation, "second question").await;
        drain(&mut second).await;
        let mut again = f
            .chat
            .regenerate(
                &who(&owner),
                RegenerateInput {
                    message_id: second.meta.assistant_message_id.clone(),
                    model: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(again.meta.user_message_id, second.meta.user_message_id);
        assert!(!again.meta.created_conversation);
        let events = drain(&mut again).await;
        assert_eq!(tokens(&events), "Echo: second question");
        let asked = f.model.chat_requests();
        let texts: Vec<(ChatRole, String)> = asked
            .last()
            .unwrap()
            .messages
            .iter()
            .map(|m| (m.role, m.joined_text()))
            .collect();
        assert_eq!(
            texts[1..],
            [
                (ChatRole::User, "first question".to_owned()),
                (ChatRole::Assistant, "Echo: first question".to_owned()),
                (ChatRole::User, "second question".to_owned()),
            ],
            "the earlier answer to the same question is not in the history"
        );
        let c = f.conversation(&owner, &conversation).await;
        assert_eq!(c.current_message_id, Some(again.meta.assistant_message_id));
        assert_eq!(c.message_count, 5);
        // A question cannot be regenerated.
        let refused = f
            .chat
            .regenerate(
                &who(&owner),
                RegenerateInput {
                    message_id: second.meta.user_message_id.clone(),
                    model: None,
                },
            )
            .await;
        assert!(matches!(refused, Err(Error::Unprocessable(_))));
    }
}
