//! Step 2 of a turn, resolve: check the input, find the conversation, the message the new one
//! follows (the current leaf, or the one asked for: an edit) and the history window along its
//! branch, wait for earlier uploads that are still being processed, and read this request's
//! uploads. Nothing is stored yet, so a refusal here leaves no trace.

use std::sync::Arc;
use std::time::Duration;

use super::{
    ChatInput, ChatService, MAX_FILES, MAX_MESSAGE_CHARS, MAX_MODEL_CHARS, PROCESSING_WAIT,
};
use crate::domain::{Conversation, FileId, FileMeta, FileStatus, Message, MessageId, Owner};
use crate::llm::ModelEntry;
use crate::service::files::Prepared;
use crate::service::Error;

/// How often a turn looks again at a file that is still being processed.
const PROCESSING_POLL: Duration = Duration::from_millis(250);

/// Everything a turn needs, checked and read; nothing stored yet.
#[derive(Debug)]
pub struct Resolved {
    /// The message, trimmed.
    pub text: String,
    /// The model asked for (the default when the request named none).
    pub model: Arc<ModelEntry>,
    /// The conversation continued, or `None` for a new one.
    pub conversation: Option<Conversation>,
    /// The message the new one follows (`None`: it is a first message).
    pub parent: Option<MessageId>,
    /// The history window before this message: the end of the branch through `parent`, oldest
    /// first (empty for a first message).
    pub history: Vec<Message>,
    /// Files uploaded earlier, ready.
    pub earlier: Vec<FileMeta>,
    /// This request's uploads, checked and extracted.
    pub uploads: Vec<Prepared>,
}

/// Whether `model` can name a model: 1 to [`MAX_MODEL_CHARS`] characters, no control character.
pub fn valid_model_name(model: &str) -> bool {
    let n = model.chars().count();
    n > 0 && n <= MAX_MODEL_CHARS && !model.chars().any(char::is_control)
}

impl ChatService {
    /// Refuses what no turn can carry: nothing to say, a message over the limit, too many files,
    /// a model name that is not one.
    pub fn check(&self, input: &ChatInput) -> Result<(), Error> {
        let text = input.message.trim();
        if text.is_empty() && input.uploads.is_empty() && input.file_ids.is_empty() {
            return Err(Error::Invalid("Write a message or attach a file.".into()));
        }
        if text.chars().count() > MAX_MESSAGE_CHARS {
            return Err(Error::Unprocessable(format!(
                "The message is too long; the limit is {MAX_MESSAGE_CHARS} characters."
            )));
        }
        if input.uploads.len() + input.file_ids.len() > MAX_FILES {
            return Err(Error::Invalid(format!(
                "Attach at most {MAX_FILES} files to one message."
            )));
        }
        if let Some(model) = &input.model {
            if !valid_model_name(model) {
                return Err(Error::Invalid("The model name is not valid.".into()));
            }
        }
        Ok(())
    }

    /// Checks the input and reads what the turn needs, in the order a refusal is reported: the
    /// input, the conversation, earlier uploads, then this request's uploads.
    pub async fn resolve(&self, owner: &Owner, input: ChatInput) -> Result<Resolved, Error> {
        self.check(&input)?;
        let model = self.pick_model(input.model.as_deref())?;
        let (conversation, parent) = self.resolve_parent(owner, &input).await?;
        let mut earlier = Vec::new();
        for id in &input.file_ids {
            earlier.push(self.resolve_file(owner, id).await?);
        }
        let mut uploads = Vec::new();
        for upload in input.uploads {
            uploads.push(self.files.prepare(upload).await?);
        }
        let history = match (&conversation, &parent) {
            (Some(c), Some(p)) => {
                self.store
                    .branch(owner, &c.id, p, Some(self.settings.history_messages))
                    .await?
            }
            // A first message has no history: no need to ask the store.
            _ => Vec::new(),
        };
        Ok(Resolved {
            text: input.message.trim().to_owned(),
            model,
            conversation,
            parent,
            history,
            earlier,
            uploads,
        })
    }

    /// The model of the registry with this id (the default for `None`); an unknown one is refused
    /// naming the ones there are.
    pub fn pick_model(&self, id: Option<&str>) -> Result<Arc<ModelEntry>, Error> {
        Ok(self
            .models
            .resolve(id)
            .map_err(|e| {
                Error::Unprocessable(format!(
                    "There is no model {:?}. The models are: {}.",
                    e.requested,
                    e.available.join(", ")
                ))
            })?
            .clone())
    }

    /// The conversation and the message the new one follows: the conversation's current leaf when
    /// no parent is given; the given one (which must be a message of the conversation, or names
    /// it when no conversation is given); none for a first message.
    async fn resolve_parent(
        &self,
        owner: &Owner,
        input: &ChatInput,
    ) -> Result<(Option<Conversation>, Option<MessageId>), Error> {
        let find = |id| crate::service::conversations::find(self.store.as_ref(), owner, id);
        let asked = match &input.parent_id {
            Some(Some(id)) => Some(
                self.store
                    .get_message(owner, id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("No message with id {id}.")))?,
            ),
            _ => None,
        };
        let conversation = match (&input.conversation_id, &asked) {
            (Some(id), _) => Some(find(id).await?),
            (None, Some(parent)) => Some(find(&parent.conversation_id).await?),
            (None, None) => None,
        };
        let parent = match (&input.parent_id, &conversation) {
            (_, None) => None,
            (None, Some(c)) => c.current_message_id.clone(),
            (Some(None), Some(_)) => None,
            (Some(Some(id)), Some(c)) => {
                // A message of another conversation is unknown here.
                if asked.as_ref().is_none_or(|p| p.conversation_id != c.id) {
                    return Err(Error::NotFound(format!("No message with id {id}.")));
                }
                Some(id.clone())
            }
        };
        Ok((conversation, parent))
    }

    /// A file uploaded earlier, once it is ready: waits up to [`PROCESSING_WAIT`] while it is
    /// still being processed; a failed one is refused with the reason.
    pub async fn resolve_file(&self, owner: &Owner, id: &FileId) -> Result<FileMeta, Error> {
        let deadline = tokio::time::Instant::now() + PROCESSING_WAIT;
        loop {
            let meta = self
                .store
                .get_file(owner, id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("No file with id {id}.")))?;
            match meta.status {
                FileStatus::Ready => return Ok(meta),
                FileStatus::Failed => {
                    return Err(Error::Unprocessable(format!(
                        "{} could not be read: {}",
                        meta.filename,
                        meta.error.as_deref().unwrap_or("extraction failed")
                    )))
                }
                FileStatus::Processing if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Unprocessable(format!(
                        "{} is still being processed; try again in a moment.",
                        meta.filename
                    )))
                }
                FileStatus::Processing => tokio::time::sleep(PROCESSING_POLL).await,
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "sqlite")]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::domain::{ConversationId, FileType};
    use crate::service::chat::fixture::{processing_file, Fixture};
    use crate::service::files::Upload;

    fn ask(message: &str) -> ChatInput {
        ChatInput {
            message: message.into(),
            ..ChatInput::default()
        }
    }

    #[tokio::test]
    async fn what_no_turn_can_carry_is_refused() {
        let f = Fixture::new();
        let owner = Owner::local();
        for (input, want) in [
            (ask("   "), "Write a message or attach a file."),
            (
                ChatInput {
                    model: Some("bad\nname".into()),
                    ..ask("hi")
                },
                "The model name is not valid.",
            ),
            (
                ChatInput {
                    file_ids: (0..11).map(|i| FileId::from(format!("f{i}"))).collect(),
                    ..ask("hi")
                },
                "Attach at most 10 files to one message.",
            ),
        ] {
            assert_eq!(
                f.chat.resolve(&owner, input).await.unwrap_err(),
                Error::Invalid(want.into())
            );
        }
        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        assert!(matches!(
            f.chat.resolve(&owner, ask(&long)).await,
            Err(Error::Unprocessable(_))
        ));
        let unknown = ChatInput {
            conversation_id: Some(ConversationId::from("nope")),
            ..ask("hi")
        };
        assert!(matches!(
            f.chat.resolve(&owner, unknown).await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn uploads_are_read_but_not_stored_and_the_model_defaults() {
        let f = Fixture::new();
        let owner = Owner::local();
        let resolved = f
            .chat
            .resolve(
                &owner,
                ChatInput {
                    uploads: vec![Upload {
                        filename: "a.csv".into(),
                        content_type: None,
                        bytes: Bytes::from_static(b"a,b\n1,2\n"),
                    }],
                    ..ask("  sum it  ")
                },
            )
            .await
            .unwrap();
        assert_eq!(resolved.text, "sum it");
        assert_eq!(resolved.model.id, "chat-model");
        assert!(resolved.conversation.is_none() && resolved.history.is_empty());
        assert_eq!(resolved.uploads.len(), 1);
        assert_eq!(resolved.uploads[0].meta.file_type, FileType::Csv);
        let id = &resolved.uploads[0].meta.id;
        assert!(f.store.get_file(&owner, id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_model_is_picked_by_id_and_an_unknown_one_is_refused_naming_the_others() {
        let f = Fixture::new();
        let owner = Owner::local();
        let picked = f
            .chat
            .resolve(
                &owner,
                ChatInput {
                    model: Some("title-model".into()),
                    ..ask("hi")
                },
            )
            .await
            .unwrap();
        assert_eq!(picked.model.id, "title-model");
        let e = f
            .chat
            .resolve(
                &owner,
                ChatInput {
                    model: Some("gpt-99".into()),
                    ..ask("hi")
                },
            )
            .await
            .unwrap_err();
        assert_eq!(
            e,
            Error::Unprocessable(
                "There is no model \"gpt-99\". The models are: chat-model, title-model.".into()
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_upload_still_processing_is_waited_for() {
        let f = Fixture::new();
        let owner = Owner::local();
        let mut meta = processing_file("manual.pdf");
        f.store.put_file(&owner, &meta).await.unwrap();
        let (store, o, m) = (f.store.clone(), owner.clone(), meta.clone());
        let finisher = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut m = m;
            m.status = FileStatus::Ready;
            store.put_file(&o, &m).await.unwrap();
        });
        let got = f.chat.resolve_file(&owner, &meta.id).await.unwrap();
        assert_eq!(got.status, FileStatus::Ready);
        finisher.await.unwrap();

        // One that never finishes is refused once the wait is over, naming the file.
        meta = processing_file("stuck.pdf");
        f.store.put_file(&owner, &meta).await.unwrap();
        let started = tokio::time::Instant::now();
        let e = f.chat.resolve_file(&owner, &meta.id).await.unwrap_err();
        assert!(started.elapsed() >= PROCESSING_WAIT);
        assert_eq!(
            e,
            Error::Unprocessable(
                "stuck.pdf is still being processed; try again in a moment.".into()
            )
        );

        // A failed one says why.
        meta = processing_file("broken.pdf");
        meta.status = FileStatus::Failed;
        meta.error = Some("broken.pdf is damaged".into());
        f.store.put_file(&owner, &meta).await.unwrap();
        let e = f.chat.resolve_file(&owner, &meta.id).await.unwrap_err();
        assert_eq!(
            e,
            Error::Unprocessable("broken.pdf could not be read: broken.pdf is damaged".into())
        );
    }
}
