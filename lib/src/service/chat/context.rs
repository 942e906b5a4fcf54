//! Step 4 of a turn, build the context: what the model sees — the system prompt, recent history,
//! the text of attached files (labelled with their names) and images for vision models — budgeted
//! as a whole against the model's context window, with room kept for the answer.
//!
//! The system prompt and the message always go. File text may fill up to its share of the window;
//! history takes what remains beside it, newest first, so the oldest messages are left out when it
//! does not fit. Files are then cut to what is left: when they exceed it, they are split into
//! labelled chunks and only those most relevant to the question are sent, with a note saying what
//! was left out. A file carried by several messages (attached again to this turn) is sent once, with
//! the last message that carries it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::persist::Persisted;
use super::ChatService;
use crate::blobs::{keys, BlobStore};
use crate::domain::{FileId, FileMeta, FileType, Message, Owner, Role};
use crate::llm::{ChatMessage, ChatRequest, ChatRole, Part};
use crate::service::retrieval::{self, Dense, Doc};
use crate::service::vectors::PassageVectors;
use crate::service::Error;
use crate::tokens::estimate;

/// The window assumed for a model that is neither configured nor known.
pub const DEFAULT_WINDOW: u64 = 8_192;
/// Tokens kept for the answer when no cap is configured, at most (a quarter of the window below).
pub const DEFAULT_ANSWER_ROOM: u64 = 4_096;
/// What one message costs beyond its text (role and separators).
const MESSAGE_TOKENS: u64 = 4;
/// What an image of this turn is counted as (providers scale images to a few hundred tokens).
const IMAGE_TOKENS: u64 = 800;
/// The short note that stands for a file in a message (a name, a pointer to where its text is).
const NOTE_TOKENS: u64 = 16;
/// The `<file …>` wrapper around a whole file.
const WRAPPER_TOKENS: u64 = 24;
/// The wrapper and the note of a file cut into parts.
const CUT_FILE_TOKENS: u64 = 128;
/// What a chunk's label costs beyond its words (brackets, line breaks).
const LABEL_TOKENS: u64 = 2;
/// The most part labels a cut file's note names.
const NOTE_LABELS: usize = 10;

/// What stands for the message when the user sent files alone.
const NO_MESSAGE: &str = "(The user sent the files above without a message.)";

/// How the context of a turn is sized, from the configuration.
#[derive(Debug, Clone)]
pub struct ContextSettings {
    /// The system prompt (`CONVERSA_SYSTEM_PROMPT`).
    pub system_prompt: String,
    /// The context window; each turn sets its model's (from the registry, see
    /// [`ContextBuilder::with_window`]). `None`: known for well-known models, else
    /// [`DEFAULT_WINDOW`].
    pub context_tokens: Option<u64>,
    /// The share of the window that file text may fill, 0–1 (`CONVERSA_FILE_CONTEXT_SHARE`).
    pub file_share: f64,
    /// The cap on an answer (`CONVERSA_MAX_ANSWER_TOKENS`); room for it is kept in the window.
    pub max_answer_tokens: Option<u32>,
}

impl ContextSettings {
    /// The context window of `model`, in tokens.
    pub fn window(&self, model: &str) -> u64 {
        self.context_tokens
            .or_else(|| crate::tokens::known_context_window(model))
            .unwrap_or(DEFAULT_WINDOW)
    }

    /// Tokens kept free for the answer: the configured cap (at most half the window), else a
    /// quarter of the window up to [`DEFAULT_ANSWER_ROOM`].
    pub fn answer_room(&self, model: &str) -> u64 {
        let window = self.window(model);
        match self.max_answer_tokens {
            Some(cap) => u64::from(cap).min(window / 2),
            None => (window / 4).min(DEFAULT_ANSWER_ROOM),
        }
    }

    /// The most file text one request to `model` may carry.
    pub fn file_budget(&self, model: &str) -> u64 {
        (self.window(model) as f64 * self.file_share) as u64
    }
}

/// Builds the messages of a turn from the history, the message and the files.
#[derive(Clone)]
pub struct ContextBuilder {
    blobs: Arc<dyn BlobStore>,
    settings: ContextSettings,
    /// The vectors of files' chunks, when an embedder runs: long files are then cut by meaning
    /// as well as by words.
    vectors: Option<Arc<PassageVectors>>,
}

impl ContextBuilder {
    /// The same builder for a model whose context window is `window` tokens.
    pub fn with_window(&self, window: u64) -> Self {
        let mut settings = self.settings.clone();
        settings.context_tokens = Some(window);
        Self {
            blobs: self.blobs.clone(),
            settings,
            vectors: self.vectors.clone(),
        }
    }

    /// Tokens kept free in the window for the answer to `model`.
    pub fn answer_room(&self, model: &str) -> u64 {
        self.settings.answer_room(model)
    }

    /// At most how many tokens the prompt of a turn to `model` takes, before it is built: the
    /// system prompt, the history, the message and every file it could carry (each distinct file
    /// once; a file whose size is unknown as its whole share of the window), and never more than
    /// the window less the answer's room, which the builder keeps to — the system prompt and the
    /// message aside, which always go. What a budget reserves for the prompt.
    pub fn prompt_bound<'a>(
        &self,
        model: &str,
        history: &'a [Message],
        text: &str,
        files: impl Iterator<Item = &'a FileMeta>,
    ) -> u64 {
        let fixed = estimate(&self.settings.system_prompt) + estimate(text) + 2 * MESSAGE_TOKENS;
        let mut seen = HashSet::new();
        let mut file_tokens = 0;
        for f in history.iter().flat_map(|m| m.files.iter()).chain(files) {
            if !seen.insert(f.id.clone()) {
                continue;
            }
            file_tokens += if is_text(f) {
                f.token_count
                    .unwrap_or_else(|| self.settings.file_budget(model))
                    .saturating_add(CUT_FILE_TOKENS)
            } else {
                IMAGE_TOKENS
            };
        }
        let all = fixed
            .saturating_add(history.iter().map(message_tokens).sum::<u64>())
            .saturating_add(file_tokens);
        let room = self
            .settings
            .window(model)
            .saturating_sub(self.settings.answer_room(model));
        all.min(room).max(fixed)
    }
}

/// A text file in play, with its text.
struct Loaded {
    meta: FileMeta,
    text: String,
    tokens: u64,
}

/// Wraps a file's text so the model knows where it starts, ends and comes from.
pub fn file_block(meta: &FileMeta, text: &str, note: Option<&str>) -> String {
    let mut attrs = format!(
        "name=\"{}\" type=\"{}\"",
        meta.filename.replace('"', "'"),
        meta.file_type.as_str()
    );
    if let Some(p) = meta.pages {
        attrs.push_str(&format!(" pages=\"{p}\""));
    }
    let mut out = format!("<file {attrs}>\n{}\n</file>", text.trim());
    if let Some(n) = note {
        out.push('\n');
        out.push_str(n);
    }
    out
}

fn is_text(f: &FileMeta) -> bool {
    f.file_type != FileType::Image
}

/// What a history message costs, its file text aside.
fn message_tokens(m: &Message) -> u64 {
    estimate(&m.content) + MESSAGE_TOKENS + NOTE_TOKENS * m.files.len() as u64
}

/// Whether the loaded files exceed `budget` and must be cut into their most relevant parts.
fn must_cut(loaded: &[&Loaded], budget: u64) -> bool {
    loaded.iter().map(|l| l.tokens + WRAPPER_TOKENS).sum::<u64>() > budget
}

/// The text block of every loaded file, in order, fitting `budget` tokens together. Files that
/// must be cut keep their chunks ranked best by words and, with `dense`, by meaning.
fn blocks(
    model: &str,
    loaded: &[&Loaded],
    question: &str,
    dense: Option<&Dense>,
    budget: u64,
) -> Vec<String> {
    let total: u64 = loaded.iter().map(|l| l.tokens + WRAPPER_TOKENS).sum();
    if !must_cut(loaded, budget) {
        return loaded
            .iter()
            .map(|l| {
                if l.text.trim().is_empty() {
                    format!("[The file {} has no readable text.]", l.meta.filename)
                } else {
                    file_block(&l.meta, &l.text, None)
                }
            })
            .collect();
    }
    let docs: Vec<Doc> = loaded
        .iter()
        .map(|l| Doc {
            name: l.meta.filename.clone(),
            text: l.text.clone(),
        })
        .collect();
    let mut chunks = retrieval::chunk(&docs);
    // Labels, wrappers and notes take room too: each chunk counts its label, and each file its
    // wrapper and note.
    for c in &mut chunks {
        c.tokens += estimate(&c.label) + LABEL_TOKENS;
    }
    let for_chunks = budget.saturating_sub(CUT_FILE_TOKENS * loaded.len() as u64);
    let cosines = dense.map(|d| d.scores(&chunks));
    let kept = retrieval::select_hybrid(&chunks, question, cosines.as_deref(), for_chunks);
    tracing::debug!(
        model,
        total,
        budget,
        chunks = chunks.len(),
        kept = kept.len(),
        by_meaning = cosines.is_some(),
        "files cut to fit the context"
    );
    loaded
        .iter()
        .enumerate()
        .map(|(d, l)| {
            let mine: Vec<_> = kept.iter().filter(|c| c.doc == d).collect();
            let all = chunks.iter().filter(|c| c.doc == d).count();
            if mine.is_empty() {
                return format!(
                    "[The file {} was left out: it did not fit in this request and no part of it matched the question.]",
                    l.meta.filename
                );
            }
            let mut body = String::new();
            let mut last_label = "";
            for c in &mine {
                if c.label != last_label {
                    body.push_str(&format!("[{}]\n", c.label));
                    last_label = &c.label;
                }
                body.push_str(&c.text);
                body.push_str("\n\n");
            }
            let mut labels: Vec<&str> = mine.iter().map(|c| c.label.as_str()).collect();
            labels.dedup();
            let mut named = labels
                .iter()
                .take(NOTE_LABELS)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if labels.len() > NOTE_LABELS {
                named.push_str(&format!(" and {} more", labels.len() - NOTE_LABELS));
            }
            let note = format!(
                "[{} is too long to send whole: only the parts most relevant to the question are included ({}; {} of {} parts). The rest was left out; say so if the answer may be there.]",
                l.meta.filename,
                named,
                mine.len(),
                all
            );
            file_block(&l.meta, &body, Some(&note))
        })
        .collect()
}

impl ContextBuilder {
    /// A builder reading file text and images from `blobs`.
    pub fn new(blobs: Arc<dyn BlobStore>, settings: ContextSettings) -> Self {
        Self {
            blobs,
            settings,
            vectors: None,
        }
    }

    /// The same builder, ranking the chunks of long files by meaning too with `vectors`.
    pub fn with_vectors(mut self, vectors: Option<Arc<PassageVectors>>) -> Self {
        self.vectors = vectors;
        self
    }

    /// The question's vector and the stored vectors of the files in play, when they must be cut
    /// and an embedder runs. Whatever is missing or fails leaves the ranking to words (logged).
    async fn dense(
        &self,
        owner: &Owner,
        playing: &[&Loaded],
        question: &str,
        budget: u64,
    ) -> Option<Dense> {
        let vectors = self.vectors.as_ref()?;
        if !must_cut(playing, budget) {
            return None;
        }
        let mut docs = Vec::with_capacity(playing.len());
        for l in playing {
            docs.push(
                match vectors.stored(owner, &l.meta.id, &l.text).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(file = %l.meta.id, error = %e, "file vectors could not be read");
                        None
                    }
                },
            );
        }
        if docs.iter().all(Option::is_none) {
            return None;
        }
        match vectors.query(question).await {
            Ok(query) => Some(Dense { query, docs }),
            Err(e) => {
                tracing::warn!(error = %e, "the question could not be embedded");
                None
            }
        }
    }

    /// How contexts are sized.
    pub fn settings(&self) -> &ContextSettings {
        &self.settings
    }

    /// Reads the text of each file once, in order.
    async fn load(&self, owner: &Owner, files: &[&FileMeta]) -> Result<Vec<Loaded>, Error> {
        let mut out = Vec::new();
        for f in files {
            let bytes = self
                .blobs
                .get(&keys::text(owner, &f.id))
                .await?
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            out.push(Loaded {
                meta: (*f).clone(),
                tokens: estimate(&text),
                text,
            });
        }
        Ok(out)
    }

    /// The messages for one turn to `model`. `history` is the window before the current message,
    /// oldest first; `files` are the current message's.
    pub async fn build(
        &self,
        owner: &Owner,
        model: &str,
        history: &[Message],
        text: &str,
        files: &[FileMeta],
    ) -> Result<Vec<ChatMessage>, Error> {
        // Answers with no text (failed, stopped before their first token, or still being
        // generated) are left out.
        let history: Vec<&Message> = history
            .iter()
            .filter(|m| !(m.role == Role::Assistant && m.content.is_empty()))
            .collect();
        // Every text file in play, once: the history window's, then this turn's.
        let mut seen = HashSet::new();
        let unique: Vec<&FileMeta> = history
            .iter()
            .flat_map(|m| m.files.iter())
            .chain(files)
            .filter(|f| is_text(f) && seen.insert(f.id.clone()))
            .collect();
        let loaded = self.load(owner, &unique).await?;
        let tokens_of: HashMap<&FileId, u64> =
            loaded.iter().map(|l| (&l.meta.id, l.tokens)).collect();

        let message = if text.is_empty() { NO_MESSAGE } else { text };
        let images = files.iter().filter(|f| !is_text(f)).count() as u64;
        let fixed = estimate(&self.settings.system_prompt)
            + estimate(message)
            + 2 * MESSAGE_TOKENS
            + NOTE_TOKENS * files.len() as u64
            + IMAGE_TOKENS * images;
        let available = self
            .settings
            .window(model)
            .saturating_sub(self.settings.answer_room(model))
            .saturating_sub(fixed);
        let file_cap = self.settings.file_budget(model);
        let file_need = |ids: &HashSet<&FileId>| -> u64 {
            ids.iter()
                .map(|id| tokens_of.get(id).copied().unwrap_or(0) + WRAPPER_TOKENS)
                .sum::<u64>()
                .min(file_cap)
        };

        // History, newest first, while it fits beside the files in play.
        let mut in_play: HashSet<&FileId> =
            files.iter().filter(|f| is_text(f)).map(|f| &f.id).collect();
        let mut used = 0;
        let mut first_kept = history.len();
        for (i, m) in history.iter().enumerate().rev() {
            let mut with = in_play.clone();
            with.extend(m.files.iter().filter(|f| is_text(f)).map(|f| &f.id));
            let cost = message_tokens(m);
            if used + cost + file_need(&with) > available {
                break;
            }
            used += cost;
            in_play = with;
            first_kept = i;
        }
        if first_kept > 0 {
            tracing::debug!(
                model,
                left_out = first_kept,
                "the oldest history was left out to fit the context window"
            );
        }
        let kept = &history[first_kept..];

        // Files get what remains, up to their share. The question decides which parts of long
        // files matter; the previous user message helps follow-ups ("and on the next page?").
        let previous = history
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .unwrap_or("");
        let question = format!("{text}\n{previous}");
        let playing: Vec<&Loaded> = loaded
            .iter()
            .filter(|l| in_play.contains(&l.meta.id))
            .collect();
        let budget = file_cap.min(available.saturating_sub(used));
        let dense = self.dense(owner, &playing, &question, budget).await;
        let by_id: HashMap<FileId, String> = playing
            .iter()
            .map(|l| l.meta.id.clone())
            .zip(blocks(model, &playing, &question, dense.as_ref(), budget))
            .collect();

        // Each file's text goes with the last message that carries it.
        let mut holder: HashMap<&FileId, usize> = HashMap::new();
        for (i, m) in kept.iter().enumerate() {
            for f in m.files.iter().filter(|f| is_text(f)) {
                holder.insert(&f.id, i);
            }
        }
        for f in files.iter().filter(|f| is_text(f)) {
            holder.insert(&f.id, kept.len());
        }

        let mut out = vec![ChatMessage::text(
            ChatRole::System,
            self.settings.system_prompt.clone(),
        )];
        for (i, m) in kept.iter().enumerate() {
            match m.role {
                Role::Assistant => {
                    out.push(ChatMessage::text(ChatRole::Assistant, m.content.clone()))
                }
                Role::User => {
                    let mut parts = Vec::new();
                    let mut sent = HashSet::new();
                    for f in &m.files {
                        if !is_text(f) {
                            // Images of earlier turns are named, not sent again.
                            parts.push(Part::Text(format!(
                                "[An image, {}, was attached earlier.]",
                                f.filename
                            )));
                        } else if holder.get(&f.id) == Some(&i) {
                            if sent.insert(&f.id) {
                                parts.extend(by_id.get(&f.id).cloned().map(Part::Text));
                            }
                        } else {
                            parts.push(Part::Text(format!(
                                "[The file {} was attached here; its text is given with a later message.]",
                                f.filename
                            )));
                        }
                    }
                    if !m.content.is_empty() {
                        parts.push(Part::Text(m.content.clone()));
                    }
                    out.push(ChatMessage {
                        role: ChatRole::User,
                        parts,
                    });
                }
            }
        }
        let mut current = Vec::new();
        let mut sent = HashSet::new();
        for f in files {
            if !is_text(f) {
                match self.blobs.get(&keys::image(owner, &f.id)).await? {
                    Some(data) => current.push(Part::Image {
                        mime: crate::extract::image_type(&data)
                            .unwrap_or("image/jpeg")
                            .to_owned(),
                        data,
                        name: f.filename.clone(),
                    }),
                    None => current.push(Part::Text(format!(
                        "[The image {} is no longer available.]",
                        f.filename
                    ))),
                }
            } else if sent.insert(&f.id) {
                current.extend(by_id.get(&f.id).cloned().map(Part::Text));
            }
        }
        current.push(Part::Text(message.to_owned()));
        out.push(ChatMessage {
            role: ChatRole::User,
            parts: current,
        });
        Ok(out)
    }
}

impl ChatService {
    /// Builds the model request of a persisted turn: its context, within the window of the model
    /// asked for.
    pub async fn build_request(
        &self,
        owner: &Owner,
        turn: &Persisted,
    ) -> Result<ChatRequest, Error> {
        let messages = self
            .context
            .with_window(turn.model.context_tokens)
            .build(
                owner,
                &turn.model.model,
                &turn.history,
                &turn.user_message.content,
                &turn.user_message.files,
            )
            .await?;
        Ok(ChatRequest {
            model: turn.model.model.clone(),
            messages,
            max_tokens: self.settings.context.max_answer_tokens,
            temperature: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, MessageId, MessageStatus, Timestamp};

    const SYSTEM: &str = "You are a test assistant.";

    fn builder(dir: &std::path::Path, window: u64, answer: u32) -> ContextBuilder {
        ContextBuilder::new(
            Arc::new(crate::blobs::local::LocalBlobs::new(dir).unwrap()),
            ContextSettings {
                system_prompt: SYSTEM.into(),
                context_tokens: Some(window),
                file_share: 0.5,
                max_answer_tokens: Some(answer),
            },
        )
    }

    fn message(role: Role, content: &str, files: Vec<FileMeta>) -> Message {
        Message {
            parent_id: None,
            id: MessageId::generate(),
            conversation_id: ConversationId::from("c"),
            role,
            content: content.into(),
            files,
            token_count: 0,
            status: MessageStatus::Complete,
            created_at: Timestamp::now(),
            usage: None,
        }
    }

    /// `n` messages, user and assistant in turn, each `{tag}-{i} ` and `words` filler words.
    fn history(n: usize, tag: &str, words: usize) -> Vec<Message> {
        let filler = "word ".repeat(words);
        (0..n)
            .map(|i| {
                let role = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                message(role, &format!("{tag}-{i} {filler}"), vec![])
            })
            .collect()
    }

    /// Every message's text and what a message costs, as the builder counts them.
    fn total(messages: &[ChatMessage]) -> u64 {
        messages
            .iter()
            .map(|m| estimate(&m.joined_text()) + MESSAGE_TOKENS)
            .sum()
    }

    fn all_text(messages: &[ChatMessage]) -> String {
        messages
            .iter()
            .map(ChatMessage::joined_text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_prompt_bound_counts_everything_once_and_stays_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 8_192, 1_000);
        let alone = b.prompt_bound("m", &[], "hello", std::iter::empty());
        assert_eq!(
            alone,
            estimate(SYSTEM) + estimate("hello") + 2 * MESSAGE_TOKENS
        );
        let mut file = crate::service::files::new_meta(
            "a.txt".into(),
            "text/plain".into(),
            10,
            FileType::Text,
            crate::domain::FileStatus::Ready,
        );
        file.token_count = Some(500);
        let history = vec![message(Role::User, "earlier", vec![file.clone()])];
        let with = b.prompt_bound("m", &history, "hello", std::iter::once(&file));
        assert_eq!(
            with,
            alone + message_tokens(&history[0]) + 500 + CUT_FILE_TOKENS,
            "a file in the history and in this turn counts once"
        );
        file.token_count = Some(100_000);
        let big = b.prompt_bound("m", &[], "hello", std::iter::once(&file));
        assert_eq!(
            big,
            8_192 - 1_000,
            "never more than the window less the answer's room"
        );
    }

    #[tokio::test]
    async fn a_short_conversation_is_sent_whole() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 8_000, 500);
        let owner = Owner::local();
        let history = vec![
            message(Role::User, "first", vec![]),
            message(Role::Assistant, "answer", vec![]),
        ];
        let out = b.build(&owner, "m", &history, "second", &[]).await.unwrap();
        let roles: Vec<ChatRole> = out.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                ChatRole::System,
                ChatRole::User,
                ChatRole::Assistant,
                ChatRole::User
            ]
        );
        assert_eq!(out[0].joined_text(), SYSTEM);
        assert_eq!(out[3].joined_text(), "second");
    }

    #[tokio::test]
    async fn a_long_history_loses_its_oldest_messages_to_fit_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let (window, answer) = (1_000, 200);
        let b = builder(dir.path(), window, answer);
        let owner = Owner::local();
        let history = history(40, "message", 60);
        let out = b
            .build(&owner, "m", &history, "the question", &[])
            .await
            .unwrap();
        assert!(
            total(&out) <= window - u64::from(answer),
            "{} tokens do not fit",
            total(&out)
        );
        let sent = all_text(&out);
        assert!(sent.contains("message-39 "), "the newest history stays");
        assert!(!sent.contains("message-0 "), "the oldest goes first");
        // What is kept is the most recent stretch, in order.
        let kept: Vec<usize> = (0..40)
            .filter(|i| sent.contains(&format!("message-{i} ")))
            .collect();
        assert!(kept.len() >= 3, "{kept:?}");
        assert_eq!(kept, (kept[0]..40).collect::<Vec<_>>());
        assert_eq!(out.last().unwrap().joined_text(), "the question");
    }

    #[tokio::test]
    async fn a_file_in_the_history_and_in_this_turn_is_sent_once() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 8_000, 500);
        let owner = Owner::local();
        let report = crate::service::files::tests::text_file(
            b.blobs.as_ref(),
            &owner,
            "report.txt",
            "MARKER-42 revenue grew",
        )
        .await;
        let history = vec![
            message(Role::User, "read this", vec![report.clone()]),
            message(Role::Assistant, "done", vec![]),
        ];
        let out = b
            .build(
                &owner,
                "m",
                &history,
                "and again",
                std::slice::from_ref(&report),
            )
            .await
            .unwrap();
        assert_eq!(all_text(&out).matches("MARKER-42").count(), 1);
        let last = out.last().unwrap().joined_text();
        assert!(last.contains("MARKER-42"), "{last}");
        let earlier = out[1].joined_text();
        assert!(
            earlier.contains("report.txt was attached here"),
            "{earlier}"
        );
        assert!(earlier.ends_with("read this"));
    }

    #[tokio::test]
    async fn long_files_are_cut_to_what_the_history_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (window, answer) = (4_000, 500);
        let b = builder(dir.path(), window, answer);
        let owner = Owner::local();
        let mut manual = String::new();
        for p in 1..=200 {
            manual.push_str(&format!("[page {p}]\n"));
            if p == 150 {
                manual.push_str("The soup's secret ingredient is saffron.\n");
            } else {
                manual.push_str(&format!(
                    "Page {p} covers shipping routes, warehouse capacity and staff rotas.\n"
                ));
            }
        }
        let file = crate::service::files::tests::text_file(
            b.blobs.as_ref(),
            &owner,
            "manual.txt",
            &manual,
        )
        .await;
        let history = history(12, "turn", 120);
        let out = b
            .build(
                &owner,
                "m",
                &history,
                "What is the secret ingredient of the soup?",
                &[file],
            )
            .await
            .unwrap();
        assert!(
            total(&out) <= window - u64::from(answer),
            "{} tokens do not fit",
            total(&out)
        );
        let last = out.last().unwrap().joined_text();
        assert!(last.contains("saffron"), "the part that answers is kept");
        assert!(last.contains("manual.txt is too long to send whole"));
        assert!(all_text(&out).contains("turn-11 "), "recent history stays");
    }
}
