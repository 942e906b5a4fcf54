//! Step 3 of a turn, persist: the conversation (when new), the user message (a child of the leaf it
//! follows) and the answer's placeholder (empty, `incomplete`, the conversation's current leaf and
//! the answer being generated), in one store write, with this turn's uploads stored and earlier
//! uploads attached. When the turn cannot be stored, the uploads of this turn are discarded and
//! earlier uploads detached again: a failed turn leaves no file pointing at a message that does not
//! exist.

use std::sync::Arc;

use super::resolve::Resolved;
use super::ChatService;
use crate::domain::{
    Conversation, ConversationId, FileMeta, Message, MessageId, MessageStatus, Owner, Role,
    Timestamp, DEFAULT_TITLE,
};
use crate::llm::ModelEntry;
use crate::service::Error;
use crate::store::TurnStart;

/// The placeholder of the answer to `question`: empty and `incomplete` until the answer ends.
pub fn placeholder(question: &Message, at: Timestamp) -> Message {
    Message {
        id: MessageId::generate(),
        conversation_id: question.conversation_id.clone(),
        parent_id: Some(question.id.clone()),
        role: Role::Assistant,
        content: String::new(),
        files: vec![],
        token_count: 0,
        status: MessageStatus::Incomplete,
        created_at: at,
        usage: None,
        citations: vec![],
    }
}

/// A turn whose user message is stored.
#[derive(Debug, Clone)]
pub struct Persisted {
    /// The conversation (new or continued).
    pub conversation: Conversation,
    /// Whether this turn started it.
    pub created: bool,
    /// The user message (its files included): stored by this turn, or the one a regenerated
    /// answer answers again.
    pub user_message: Message,
    /// The answer's placeholder, as stored: empty, `incomplete`, a child of the user message.
    pub answer: Message,
    /// The history window before the user message, oldest first.
    pub history: Vec<Message>,
    /// The model asked for.
    pub model: Arc<ModelEntry>,
}

impl ChatService {
    /// Stores the turn up to the user message: earlier uploads attached to the conversation, this
    /// turn's uploads stored, then the conversation (when new) together with the message.
    pub async fn persist(&self, owner: &Owner, resolved: Resolved) -> Result<Persisted, Error> {
        let Resolved {
            text,
            model,
            conversation,
            parent,
            history,
            earlier,
            uploads,
        } = resolved;
        let now = Timestamp::now();
        let (conversation, created) = match conversation {
            Some(c) => (c, false),
            None => (
                Conversation {
                    id: ConversationId::generate(),
                    title: DEFAULT_TITLE.into(),
                    message_count: 0,
                    created_at: now,
                    updated_at: now,
                    current_message_id: None,
                    generating_message_id: None,
                },
                true,
            ),
        };
        let mut files = Vec::new();
        let mut attached = Vec::new();
        let mut stored = Vec::new();
        let outcome = async {
            for mut meta in earlier {
                if meta.conversation_id.is_none() {
                    meta.conversation_id = Some(conversation.id.clone());
                    self.store.put_file(owner, &meta).await?;
                    attached.push(meta.clone());
                }
                files.push(meta);
            }
            for prepared in uploads {
                let meta = self
                    .files
                    .persist(owner, prepared, Some(&conversation.id))
                    .await?;
                stored.push(meta.clone());
                files.push(meta);
            }
            let message = Message {
                id: MessageId::generate(),
                conversation_id: conversation.id.clone(),
                parent_id: parent,
                role: Role::User,
                token_count: crate::tokens::estimate(&text),
                content: text,
                files: files.clone(),
                status: MessageStatus::Complete,
                created_at: now,
                usage: None,
                citations: vec![],
            };
            let answer = placeholder(&message, now);
            // The conversation (when new), the message and the answer's placeholder, in one write.
            self.store
                .begin_turn(
                    owner,
                    &TurnStart {
                        conversation: conversation.clone(),
                        created,
                        user: Some(message.clone()),
                        answer: answer.clone(),
                    },
                )
                .await?;
            Ok::<_, Error>((message, answer))
        }
        .await;
        match outcome {
            Ok((user_message, answer)) => Ok(Persisted {
                conversation,
                created,
                user_message,
                answer,
                history,
                model,
            }),
            Err(e) => {
                self.undo_files(owner, &attached, &stored).await;
                Err(e)
            }
        }
    }

    /// Stores the start of a regenerated answer: its placeholder, beside the earlier answers to
    /// `user_message`.
    pub async fn persist_again(
        &self,
        owner: &Owner,
        conversation: Conversation,
        user_message: Message,
        history: Vec<Message>,
        model: Arc<ModelEntry>,
    ) -> Result<Persisted, Error> {
        let answer = placeholder(&user_message, Timestamp::now());
        self.store
            .begin_turn(
                owner,
                &TurnStart {
                    conversation: conversation.clone(),
                    created: false,
                    user: None,
                    answer: answer.clone(),
                },
            )
            .await?;
        Ok(Persisted {
            conversation,
            created: false,
            user_message,
            answer,
            history,
            model,
        })
    }

    /// Best effort after a failed persist: this turn's uploads go, earlier ones are detached.
    async fn undo_files(&self, owner: &Owner, attached: &[FileMeta], stored: &[FileMeta]) {
        for f in stored {
            self.files.discard(owner, &f.id).await;
        }
        for f in attached {
            let mut f = f.clone();
            f.conversation_id = None;
            let _ = self.store.put_file(owner, &f).await;
        }
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::service::chat::fixture::{ready_file, Fixture};
    use crate::service::chat::ChatInput;
    use crate::service::files::Upload;

    fn with_upload(message: &str) -> ChatInput {
        ChatInput {
            message: message.into(),
            uploads: vec![Upload {
                filename: "notes.txt".into(),
                content_type: None,
                bytes: Bytes::from_static(b"the notes"),
            }],
            ..ChatInput::default()
        }
    }

    #[tokio::test]
    async fn a_new_conversation_is_stored_with_its_message_and_files() {
        let f = Fixture::new();
        let owner = Owner::local();
        let earlier = ready_file(&f, &owner, "earlier.txt", "earlier text").await;
        let mut input = with_upload("look");
        input.file_ids = vec![earlier.id.clone()];
        let resolved = f.chat.resolve(&owner, input).await.unwrap();
        let p = f.chat.persist(&owner, resolved).await.unwrap();
        assert!(p.created);
        let c = f.conversation(&owner, &p.conversation.id).await;
        assert_eq!(
            c.message_count, 2,
            "the message and the answer's placeholder"
        );
        assert_eq!(c.title, DEFAULT_TITLE);
        assert_eq!(c.current_message_id.as_ref(), Some(&p.answer.id));
        assert_eq!(c.generating_message_id.as_ref(), Some(&p.answer.id));
        let placeholder = f.message(&owner, &p.answer.id).await;
        assert_eq!(placeholder.parent_id.as_ref(), Some(&p.user_message.id));
        assert_eq!(
            (placeholder.status, placeholder.content.as_str()),
            (MessageStatus::Incomplete, "")
        );
        let stored = f.message(&owner, &p.user_message.id).await;
        assert_eq!(stored.content, "look");
        assert_eq!(stored.files.len(), 2);
        for file in &stored.files {
            let record = f.store.get_file(&owner, &file.id).await.unwrap().unwrap();
            assert_eq!(record.conversation_id.as_ref(), Some(&c.id));
        }
    }

    #[tokio::test]
    async fn a_message_that_cannot_be_stored_leaves_no_files_behind() {
        let f = Fixture::new();
        let owner = Owner::local();
        let earlier = ready_file(&f, &owner, "earlier.txt", "earlier text").await;
        let mut input = with_upload("look");
        input.file_ids = vec![earlier.id.clone()];
        let mut resolved = f.chat.resolve(&owner, input).await.unwrap();
        let upload_id = resolved.uploads[0].meta.id.clone();
        // The conversation disappears between resolve and persist (deleted in another tab).
        let c = Conversation {
            id: ConversationId::generate(),
            title: DEFAULT_TITLE.into(),
            message_count: 0,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            current_message_id: None,
            generating_message_id: None,
        };
        resolved.conversation = Some(c);
        let e = f.chat.persist(&owner, resolved).await;
        assert!(e.is_err(), "{e:?}");
        assert!(f
            .store
            .get_file(&owner, &upload_id)
            .await
            .unwrap()
            .is_none());
        assert!(f
            .blobs
            .get(&crate::blobs::keys::original(&owner, &upload_id))
            .await
            .unwrap()
            .is_none());
        let back = f
            .store
            .get_file(&owner, &earlier.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            back.conversation_id, None,
            "the earlier upload is detached again"
        );
    }
}
