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
//!
//! Every passage of file text sent is numbered (`[1]`, `[2]`, … in the order of the prompt): each
//! page or sheet of a whole file (the whole text when it has neither), each page or part of a cut
//! one. The system prompt then asks the model to cite them; the numbers and the labels count in the
//! budget, and the passages go with the request so the answer's `[n]` can be read back
//! ([`super::cite`]).
//!
//! Memory (`CONVERSA_MEMORY=on`, with a store that keeps a search log): the few passages of the
//! user's other conversations most relevant to the question ([`MEMORY_PASSAGES`] at most, each at
//! most [`crate::service::search::MEMORY_PASSAGE_CHARS`] characters, above the relevance floor of
//! [`SearchService::recall`]) join the current message after its files, labelled as memory and
//! numbered on from the file passages. They take at most [`MEMORY_SHARE`] of the window (and at
//! most [`MEMORY_MAX_TOKENS`]), and only room the history and the files leave: they never push
//! either out. The question is embedded once per turn, for the files and for memory alike.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::cite::{self, Passage};
use super::persist::Persisted;
use super::ChatService;
use crate::blobs::{keys, BlobStore};
use crate::domain::{
    ConversationId, FileId, FileMeta, FileType, MemorySource, Message, Owner, Role,
};
use crate::llm::{ChatMessage, ChatRequest, ChatRole, ModelEntry, Part};
use crate::service::retrieval::{self, Dense, Doc};
use crate::service::search::{Recalled, SearchService};
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
/// What a passage's number costs (`[12] `), at most.
const PASSAGE_TOKENS: u64 = 4;

/// The most passages of memory one prompt carries.
pub const MEMORY_PASSAGES: usize = 3;
/// The share of the context window memory may take, at most (from what history and files leave).
pub const MEMORY_SHARE: f64 = 0.1;
/// The most tokens memory takes, whatever the window.
pub const MEMORY_MAX_TOKENS: u64 = 2_000;
/// What opens the passages of memory in a message.
const MEMORY_OPENING: &str = "<memory>\nPassages from the user's other conversations that may be \
relevant (memory, not part of this conversation):";

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
    /// A cap on file text in tokens, below the share (a model's `file_tokens`; each turn sets its
    /// model's, see [`ContextBuilder::for_model`]).
    pub file_tokens: Option<u64>,
    /// The cap on an answer (`CONVERSA_MAX_ANSWER_TOKENS`); room for it is kept in the window.
    pub max_answer_tokens: Option<u32>,
    /// Passages of the user's other conversations join the context (`CONVERSA_MEMORY`).
    pub memory: bool,
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
        let share = (self.window(model) as f64 * self.file_share) as u64;
        self.file_tokens.map_or(share, |cap| cap.min(share))
    }

    /// The most memory one request to `model` may carry (0 when memory is off).
    pub fn memory_budget(&self, model: &str) -> u64 {
        if !self.memory {
            return 0;
        }
        ((self.window(model) as f64 * MEMORY_SHARE) as u64).min(MEMORY_MAX_TOKENS)
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
    /// Where memory is recalled from, when memory is on.
    search: Option<Arc<SearchService>>,
}

/// The turn a context is built for, as memory needs it: whose other conversations to recall.
#[derive(Debug, Clone, Copy)]
pub struct MemoryScope<'a> {
    /// The conversation of the turn (never recalled).
    pub conversation_id: &'a ConversationId,
}

/// The question's vector, made at most once per turn (`None` inside: no embedder, or it failed).
#[derive(Default)]
struct QuestionVector(Option<Option<Vec<f32>>>);

impl ContextBuilder {
    /// The same builder for `model`: its context window and its cap on file text.
    pub fn for_model(&self, model: &ModelEntry) -> Self {
        let mut builder = self.with_window(model.context_tokens);
        builder.settings.file_tokens = model.file_tokens;
        builder
    }

    /// The same builder for a model whose context window is `window` tokens.
    pub fn with_window(&self, window: u64) -> Self {
        let mut settings = self.settings.clone();
        settings.context_tokens = Some(window);
        Self {
            blobs: self.blobs.clone(),
            settings,
            vectors: self.vectors.clone(),
            search: self.search.clone(),
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
        let mut any_text = false;
        for f in history.iter().flat_map(|m| m.files.iter()).chain(files) {
            if !seen.insert(f.id.clone()) {
                continue;
            }
            file_tokens += if is_text(f) {
                any_text = true;
                // Each page or sheet of a whole file is a numbered passage.
                let numbers = PASSAGE_TOKENS * u64::from(f.pages.unwrap_or(1).max(1));
                f.token_count
                    .unwrap_or_else(|| self.settings.file_budget(model))
                    .saturating_add(CUT_FILE_TOKENS)
                    .saturating_add(numbers)
            } else {
                IMAGE_TOKENS
            };
        }
        if any_text {
            file_tokens += instruction_tokens();
        }
        let memory = match self.settings.memory_budget(model) {
            0 => 0,
            budget => budget + memory_instruction_tokens() + instruction_tokens(),
        };
        let all = fixed
            .saturating_add(memory)
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

/// What asking for citations adds to the system prompt.
fn instruction_tokens() -> u64 {
    estimate(cite::INSTRUCTION) + 2
}

/// What saying how to use memory adds to the system prompt.
fn memory_instruction_tokens() -> u64 {
    estimate(cite::MEMORY_INSTRUCTION) + 2
}

/// The passages of the files in a prompt, numbered in the order they are written.
#[derive(Default)]
struct Numbering {
    passages: Vec<Passage>,
}

impl Numbering {
    /// Numbers the passage `text` of `meta` labelled `label`; its header line.
    fn add(&mut self, meta: &FileMeta, label: &str, text: &str) -> String {
        let n = u32::try_from(self.passages.len() + 1).unwrap_or(u32::MAX);
        let (page, sheet) = cite::location(label);
        self.passages.push(Passage {
            n,
            file_id: Some(meta.id.clone()),
            filename: Some(meta.filename.clone()),
            page,
            sheet,
            text: text.trim().to_owned(),
            memory: None,
        });
        cite::header(n, label)
    }

    /// Numbers a passage of memory; its header line and text.
    fn add_memory(&mut self, r: &Recalled) -> String {
        let n = u32::try_from(self.passages.len() + 1).unwrap_or(u32::MAX);
        let (page, sheet) = r.label.as_deref().map(cite::location).unwrap_or_default();
        let title = r.title.split_whitespace().collect::<Vec<_>>().join(" ");
        let date = r.created_at.as_datetime().format("%Y-%m-%d");
        let label = match &r.file {
            None => format!("Memory, from your conversation “{title}”, {date}:"),
            Some((_, name)) => {
                let at = r
                    .label
                    .as_deref()
                    .filter(|l| !l.is_empty())
                    .map(|l| format!(", {l}"))
                    .unwrap_or_default();
                format!(
                    "Memory, from the file {}{at} in your conversation “{title}”, {date}:",
                    name.replace(['\n', '\r'], " ")
                )
            }
        };
        self.passages.push(Passage {
            n,
            file_id: r.file.as_ref().map(|(id, _)| id.clone()),
            filename: r.file.as_ref().map(|(_, name)| name.clone()),
            page,
            sheet,
            text: r.text.trim().to_owned(),
            memory: Some(MemorySource {
                conversation_id: r.conversation_id.clone(),
                message_id: r.message_id.clone(),
                title: r.title.clone(),
            }),
        });
        format!("{}\n{}", cite::header(n, &label), r.text.trim())
    }
}

/// A whole file's text as numbered passages: one per page or sheet, or one for the whole text
/// when the extractor marked neither.
fn numbered_whole(meta: &FileMeta, text: &str, numbering: &mut Numbering) -> String {
    let mut body = String::new();
    for (label, section) in retrieval::sections(text) {
        if section.trim().is_empty() {
            continue;
        }
        let header = numbering.add(meta, &label, &section);
        body.push_str(&header);
        body.push('\n');
        body.push_str(section.trim());
        body.push_str("\n\n");
    }
    body
}

fn is_text(f: &FileMeta) -> bool {
    f.file_type != FileType::Image
}

/// What a history message costs, its file text aside.
fn message_tokens(m: &Message) -> u64 {
    estimate(&m.content) + MESSAGE_TOKENS + NOTE_TOKENS * m.files.len() as u64
}

/// The text block of every loaded file whole, numbered, and the passages they number (from 1, in
/// that order), when they fit `budget` tokens together.
fn whole(loaded: &[&Loaded], budget: u64) -> Option<(Vec<String>, Vec<Passage>)> {
    let total: u64 = loaded.iter().map(|l| l.tokens + WRAPPER_TOKENS).sum();
    if total > budget {
        return None;
    }
    // Whole, if they still fit once numbered.
    let mut numbering = Numbering::default();
    let whole: Vec<String> = loaded
        .iter()
        .map(|l| {
            if l.text.trim().is_empty() {
                format!("[The file {} has no readable text.]", l.meta.filename)
            } else {
                file_block(
                    &l.meta,
                    &numbered_whole(&l.meta, &l.text, &mut numbering),
                    None,
                )
            }
        })
        .collect();
    (whole.iter().map(|b| estimate(b)).sum::<u64>() <= budget)
        .then_some((whole, numbering.passages))
}

/// The text blocks of files that do not fit `budget` whole, and the passages they number (from 1,
/// in that order): each file cut to its chunks ranked best against the question by words and,
/// with `dense`, by meaning, with a note of what was left out.
fn cut(
    model: &str,
    loaded: &[&Loaded],
    question: &str,
    dense: Option<&Dense>,
    budget: u64,
) -> (Vec<String>, Vec<Passage>) {
    let total: u64 = loaded.iter().map(|l| l.tokens + WRAPPER_TOKENS).sum();
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
        c.tokens += estimate(&c.label) + LABEL_TOKENS + PASSAGE_TOKENS;
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
    let mut numbering = Numbering::default();
    let out = loaded
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
            // Consecutive chunks of one page (or sheet) are one passage.
            let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
            for c in &mine {
                match groups.last_mut() {
                    Some((label, texts)) if *label == c.label.as_str() => {
                        texts.push(c.text.as_str())
                    }
                    _ => groups.push((c.label.as_str(), vec![c.text.as_str()])),
                }
            }
            let mut body = String::new();
            for (label, texts) in groups {
                let text = texts.join("\n\n");
                body.push_str(&numbering.add(&l.meta, label, &text));
                body.push('\n');
                body.push_str(&text);
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
        .collect();
    (out, numbering.passages)
}

impl ContextBuilder {
    /// A builder reading file text and images from `blobs`.
    pub fn new(blobs: Arc<dyn BlobStore>, settings: ContextSettings) -> Self {
        Self {
            blobs,
            settings,
            vectors: None,
            search: None,
        }
    }

    /// The same builder, ranking the chunks of long files by meaning too with `vectors`.
    pub fn with_vectors(mut self, vectors: Option<Arc<PassageVectors>>) -> Self {
        self.vectors = vectors;
        self
    }

    /// The same builder, recalling memory from `search` (when memory is on).
    pub fn with_search(mut self, search: Option<Arc<SearchService>>) -> Self {
        self.search = search;
        self
    }

    /// The question's vector, made on first use (of its bounded prefix) and kept in `slot` for the
    /// rest of the turn; `None` without an embedder or when it fails (logged).
    async fn question_vector(&self, question: &str, slot: &mut QuestionVector) -> Option<Vec<f32>> {
        if let Some(v) = &slot.0 {
            return v.clone();
        }
        let v = match &self.vectors {
            None => None,
            Some(vectors) => match vectors.query(&crate::search::bounded(question)).await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "the question could not be embedded");
                    None
                }
            },
        };
        slot.0 = Some(v.clone());
        v
    }

    /// The passages of memory for a turn whose message is `text`, ranked by its words and by the
    /// vector of `question` (the message and the previous one, as the files are cut by: made once
    /// per turn), numbered on from the files' (by `numbering`): the block of the current message
    /// that carries them, within `budget` tokens with the instructions they add to the system
    /// prompt. `None` when the store keeps no search log, nothing clears the floor or fits, or
    /// recalling fails (logged: the turn goes on without memory).
    #[allow(clippy::too_many_arguments)]
    async fn memory(
        &self,
        owner: &Owner,
        scope: MemoryScope<'_>,
        text: &str,
        question: &str,
        slot: &mut QuestionVector,
        numbering: &mut Numbering,
        budget: u64,
        asks_citations: bool,
    ) -> Option<String> {
        let search = self.search.as_ref().filter(|s| s.has_log())?;
        // The lines around the passages (what they are, where they end) and the instruction.
        let mut fixed = estimate(MEMORY_OPENING) + 8 + memory_instruction_tokens();
        if !asks_citations {
            fixed += instruction_tokens();
        }
        if budget <= fixed || text.trim().is_empty() {
            return None;
        }
        let vector = self.question_vector(question, slot).await;
        let recalled = match search
            .recall(
                owner,
                text,
                vector.as_deref(),
                scope.conversation_id,
                MEMORY_PASSAGES,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "memory could not be recalled; the turn goes on without it");
                return None;
            }
        };
        let mut used = fixed;
        let mut block = String::new();
        for r in &recalled {
            let mut trial = Numbering {
                passages: numbering.passages.clone(),
            };
            let text = trial.add_memory(r);
            let cost = estimate(&text) + LABEL_TOKENS + PASSAGE_TOKENS;
            if used + cost > budget {
                continue;
            }
            used += cost;
            *numbering = trial;
            block.push_str(&text);
            block.push_str("\n\n");
        }
        if block.is_empty() {
            return None;
        }
        tracing::debug!(
            passages = numbering
                .passages
                .iter()
                .filter(|p| p.memory.is_some())
                .count(),
            tokens = used,
            budget,
            "memory joins the context"
        );
        Some(format!("{MEMORY_OPENING}\n\n{}</memory>", block))
    }

    /// The question's vector and the stored vectors of the files in play (which must be cut),
    /// when an embedder runs. Whatever is missing or fails leaves the ranking to words (logged).
    async fn dense(
        &self,
        owner: &Owner,
        playing: &[&Loaded],
        question: &str,
        slot: &mut QuestionVector,
    ) -> Option<Dense> {
        let vectors = self.vectors.as_ref()?;
        let mut docs = Vec::with_capacity(playing.len());
        for l in playing {
            docs.push(match vectors.stored(owner, &l.meta.id, &l.text).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(file = %l.meta.id, error = %e, "file vectors could not be read");
                    None
                }
            });
        }
        if docs.iter().all(Option::is_none) {
            return None;
        }
        let query = self.question_vector(question, slot).await?;
        Some(Dense { query, docs })
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

    /// The messages for one turn to `model` and the passages of file text they number. `history`
    /// is the window before the current message, oldest first; `files` are the current message's.
    /// No memory (see [`Self::build_turn`]).
    pub async fn build(
        &self,
        owner: &Owner,
        model: &str,
        history: &[Message],
        text: &str,
        files: &[FileMeta],
    ) -> Result<Context, Error> {
        self.build_turn(owner, model, history, text, files, None)
            .await
    }

    /// [`Self::build`] for a turn of the conversation `scope` names: with memory on, passages of the owner's other conversations
    /// join the current message.
    pub async fn build_turn(
        &self,
        owner: &Owner,
        model: &str,
        history: &[Message],
        text: &str,
        files: &[FileMeta],
        scope: Option<MemoryScope<'_>>,
    ) -> Result<Context, Error> {
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
        let asks_citations = if unique.is_empty() {
            0
        } else {
            instruction_tokens()
        };
        let fixed = estimate(&self.settings.system_prompt)
            + asks_citations
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

        // Each file's text goes with the last message that carries it: its index (the current
        // message is `kept.len()`) and the file's place among that message's files.
        let mut holder: HashMap<&FileId, (usize, usize)> = HashMap::new();
        for (i, m) in kept.iter().enumerate() {
            for (j, f) in m.files.iter().enumerate().filter(|(_, f)| is_text(f)) {
                holder.insert(&f.id, (i, j));
            }
        }
        for (j, f) in files.iter().enumerate().filter(|(_, f)| is_text(f)) {
            holder.insert(&f.id, (kept.len(), j));
        }

        // Files in the order they are written, so their passages are numbered in prompt order.
        let mut playing: Vec<&Loaded> = loaded
            .iter()
            .filter(|l| in_play.contains(&l.meta.id))
            .collect();
        playing.sort_by_key(|l| holder.get(&l.meta.id).copied());
        let budget = file_cap.min(available.saturating_sub(used));
        let mut slot = QuestionVector::default();
        let (texts, passages) = match whole(&playing, budget) {
            Some(whole) => whole,
            None => {
                let dense = self.dense(owner, &playing, &question, &mut slot).await;
                cut(model, &playing, &question, dense.as_ref(), budget)
            }
        };
        let files_used: u64 = texts.iter().map(|t| estimate(t)).sum();
        let mut numbering = Numbering { passages };
        // Memory: from what the history and the files leave, up to its share.
        let memory = match scope {
            Some(scope) if self.settings.memory => {
                let room = available
                    .saturating_sub(used)
                    .saturating_sub(files_used)
                    .min(self.settings.memory_budget(model));
                self.memory(
                    owner,
                    scope,
                    text,
                    &question,
                    &mut slot,
                    &mut numbering,
                    room,
                    asks_citations > 0,
                )
                .await
            }
            _ => None,
        };
        let passages = numbering.passages;
        let by_id: HashMap<FileId, String> = playing
            .iter()
            .map(|l| l.meta.id.clone())
            .zip(texts)
            .collect();

        let system = if passages.is_empty() {
            self.settings.system_prompt.clone()
        } else if memory.is_some() {
            format!(
                "{}\n\n{} {}",
                self.settings.system_prompt,
                cite::INSTRUCTION,
                cite::MEMORY_INSTRUCTION
            )
        } else {
            format!("{}\n\n{}", self.settings.system_prompt, cite::INSTRUCTION)
        };
        let mut out = vec![ChatMessage::text(ChatRole::System, system)];
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
                        } else if holder.get(&f.id).map(|h| h.0) == Some(i) {
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
        if let Some(memory) = memory {
            current.push(Part::Text(memory));
        }
        current.push(Part::Text(message.to_owned()));
        out.push(ChatMessage {
            role: ChatRole::User,
            parts: current,
        });
        Ok(Context {
            messages: out,
            passages,
        })
    }
}

/// What the model is sent for one turn: the messages, and the passages of file text they number.
#[derive(Debug, Clone)]
pub struct Context {
    /// System prompt, history and the message, in order.
    pub messages: Vec<ChatMessage>,
    /// The numbered passages, in order (`n` from 1).
    pub passages: Vec<Passage>,
}

/// A turn's request to its model, and the passages the prompt numbers (for the answer's
/// citations).
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The request.
    pub request: ChatRequest,
    /// The numbered passages of file text it carries.
    pub passages: Vec<Passage>,
}

impl ChatService {
    /// Builds the model request of a persisted turn: its context, within the window of the model
    /// asked for.
    pub async fn build_request(&self, owner: &Owner, turn: &Persisted) -> Result<Prompt, Error> {
        let Context { messages, passages } = self
            .context
            .for_model(&turn.model)
            .build_turn(
                owner,
                &turn.model.model,
                &turn.history,
                &turn.user_message.content,
                &turn.user_message.files,
                Some(MemoryScope {
                    conversation_id: &turn.conversation.id,
                }),
            )
            .await?;
        Ok(Prompt {
            request: ChatRequest {
                model: turn.model.model.clone(),
                messages,
                max_tokens: self.settings.context.max_answer_tokens,
                temperature: None,
            },
            passages,
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
                file_tokens: None,
                max_answer_tokens: Some(answer),
                memory: false,
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
            citations: vec![],
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
        let mut file = crate::domain::FileMeta::new(
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
            alone
                + message_tokens(&history[0])
                + 500
                + CUT_FILE_TOKENS
                + PASSAGE_TOKENS
                + instruction_tokens(),
            "a file in the history and in this turn counts once, its passage number and the \
             request to cite too"
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
        let out = b
            .build(&owner, "m", &history, "second", &[])
            .await
            .unwrap()
            .messages;
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
            .unwrap()
            .messages;
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
            .unwrap()
            .messages;
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
            .unwrap()
            .messages;
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

    #[tokio::test]
    async fn a_model_with_a_file_cap_gets_the_passage_that_answers_within_it() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 8_192, 500);
        let owner = Owner::local();
        let mut report = String::new();
        for p in 1..=12 {
            report.push_str(&format!("[page {p}]\n"));
            if p == 9 {
                report.push_str("The harbour crane was repaired by Ilse Brandt in March.\n");
            }
            for _ in 0..20 {
                report.push_str(&format!(
                    "Page {p} lists tonnage, berths, tides and pilot schedules for the season.\n"
                ));
            }
        }
        let file =
            crate::service::files::tests::text_file(b.blobs.as_ref(), &owner, "port.txt", &report)
                .await;
        let question = "Who repaired the harbour crane?";
        let uncapped = b
            .build(&owner, "m", &[], question, std::slice::from_ref(&file))
            .await
            .unwrap();
        let mut entry = crate::llm::ModelEntry::new(
            "small",
            crate::llm::Provider::Local,
            "m",
            Arc::new(
                crate::llm::openai::OpenAiModel::new(None, Some("http://127.0.0.1:9"), "m")
                    .unwrap(),
            ),
        );
        entry.context_tokens = 8_192;
        entry.file_tokens = Some(512);
        let capped = b
            .for_model(&entry)
            .build(&owner, "m", &[], question, std::slice::from_ref(&file))
            .await
            .unwrap();
        let file_text = |c: &Context| estimate(&c.messages.last().unwrap().joined_text());
        assert!(
            file_text(&capped) <= 512 + estimate(question) + 2 * MESSAGE_TOKENS,
            "the cap holds: {} tokens",
            file_text(&capped)
        );
        assert!(
            file_text(&capped) * 3 < file_text(&uncapped),
            "the cap is what cut it: {} against {} tokens",
            file_text(&capped),
            file_text(&uncapped)
        );
        assert!(capped
            .messages
            .last()
            .unwrap()
            .joined_text()
            .contains("Ilse Brandt"));
        assert!(
            capped.passages.iter().any(|p| p.page == Some(9)),
            "the page that answers is a passage: {:?}",
            capped.passages
        );
        assert!(capped.passages.len() < uncapped.passages.len());
    }

    #[tokio::test]
    async fn a_cut_file_numbers_the_pages_it_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 2_000, 500);
        let owner = Owner::local();
        let mut manual = String::new();
        for p in 1..=200 {
            manual.push_str(&format!("[page {p}]\n"));
            if p == 150 {
                manual.push_str("The soup's secret ingredient is saffron.\n");
            } else {
                manual.push_str(&format!("Page {p} covers shipping routes.\n"));
            }
        }
        let file = crate::service::files::tests::text_file(
            b.blobs.as_ref(),
            &owner,
            "manual.txt",
            &manual,
        )
        .await;
        let built = b
            .build(
                &owner,
                "m",
                &[],
                "What is the secret ingredient?",
                std::slice::from_ref(&file),
            )
            .await
            .unwrap();
        let last = built.messages.last().unwrap().joined_text();
        let ns: Vec<u32> = built.passages.iter().map(|p| p.n).collect();
        assert_eq!(ns, (1..=ns.len() as u32).collect::<Vec<_>>());
        assert!(ns.len() < 200, "the file was cut");
        let saffron = built
            .passages
            .iter()
            .find(|p| p.text.contains("saffron"))
            .expect("the page that answers is a passage");
        assert_eq!(saffron.page, Some(150));
        assert_eq!(saffron.file_id.as_ref(), Some(&file.id));
        assert!(
            last.contains(&format!("[{}] page 150\nThe soup's", saffron.n)),
            "{last}"
        );
        assert!(built.messages[0].joined_text().ends_with(cite::INSTRUCTION));
    }

    #[tokio::test]
    async fn passages_are_numbered_once_in_prompt_order_one_per_page_or_sheet() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 8_000, 500);
        let owner = Owner::local();
        let blobs = b.blobs.as_ref();
        let text_file = crate::service::files::tests::text_file;
        let book = text_file(
            blobs,
            &owner,
            "book.xlsx",
            "## Sheet: Revenue\n| q1 | 10 |\n## Sheet: Costs\n| q1 | 4 |\n",
        )
        .await;
        let pdf = text_file(
            blobs,
            &owner,
            "report.pdf",
            "[page 1]\nIntro.\n[page 2]\n\n[page 3]\nThe canary is on page three.\n",
        )
        .await;
        let notes = text_file(blobs, &owner, "notes.txt", "Plain notes, no pages.").await;
        // The workbook went with an earlier message; the report and the notes come now.
        let history = vec![
            message(Role::User, "see the book", vec![book.clone()]),
            message(Role::Assistant, "seen", vec![]),
        ];
        let built = b
            .build(
                &owner,
                "m",
                &history,
                "what now",
                &[pdf.clone(), notes.clone()],
            )
            .await
            .unwrap();
        let located: Vec<(u32, &str, Option<u32>, Option<&str>)> = built
            .passages
            .iter()
            .map(|p| {
                (
                    p.n,
                    p.filename.as_deref().unwrap_or_default(),
                    p.page,
                    p.sheet.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            located,
            [
                (1, "book.xlsx", None, Some("Revenue")),
                (2, "book.xlsx", None, Some("Costs")),
                (3, "report.pdf", Some(1), None),
                (4, "report.pdf", Some(3), None),
                (5, "notes.txt", None, None),
            ],
            "one passage per page or sheet (a page with no text is none), in prompt order"
        );
        let sent = all_text(&built.messages);
        let at = |needle: &str| {
            sent.find(needle)
                .unwrap_or_else(|| panic!("{needle}: {sent}"))
        };
        assert!(at("[1] sheet Revenue\n| q1 | 10 |") < at("[2] sheet Costs\n| q1 | 4 |"));
        assert!(at("[2] sheet Costs") < at("[3] page 1\nIntro."));
        assert!(at("[3] page 1") < at("[4] page 3\nThe canary is on page three."));
        assert!(at("[4] page 3") < at("[5]\nPlain notes, no pages."));
        assert_eq!(built.passages[3].text, "The canary is on page three.");
        assert_eq!(sent.matches("[5]").count(), 1);
        assert!(built.messages[0].joined_text().starts_with(SYSTEM));
        assert!(built.messages[0].joined_text().ends_with(cite::INSTRUCTION));
        assert!(
            total(&built.messages) <= 8_000 - 500,
            "numbers and the request to cite fit the window"
        );
    }

    #[tokio::test]
    async fn a_file_with_no_text_has_no_passages() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 8_000, 500);
        let owner = Owner::local();
        let empty =
            crate::service::files::tests::text_file(b.blobs.as_ref(), &owner, "blank.pdf", "  ")
                .await;
        let built = b.build(&owner, "m", &[], "hi", &[empty]).await.unwrap();
        assert!(built.passages.is_empty());
        assert_eq!(built.messages[0].joined_text(), SYSTEM, "nothing to cite");
        assert!(all_text(&built.messages).contains("blank.pdf has no readable text"));
    }

    /// A builder with memory on over an SQLite store that keeps a search log (`log`) or none, the
    /// fact said in conversation `other` of `owner` (indexed) when there is a log.
    #[cfg(feature = "sqlite")]
    async fn remembering(
        dir: &std::path::Path,
        window: u64,
        log: bool,
        owner: &Owner,
    ) -> (ContextBuilder, ConversationId) {
        use crate::domain::Conversation;
        use crate::store::Store;
        let store = Arc::new(crate::store::sqlite::SqliteStore::in_memory().unwrap());
        let other = ConversationId::generate();
        store
            .create_conversation(
                owner,
                &Conversation {
                    id: other.clone(),
                    title: "Moving house".into(),
                    message_count: 1,
                    created_at: Timestamp::from_millis(1_764_000_000_000),
                    updated_at: Timestamp::from_millis(1_764_000_000_000),
                    current_message_id: None,
                    generating_message_id: None,
                },
            )
            .await
            .unwrap();
        let search_log: Option<Arc<dyn crate::search::SearchLog>> =
            if log { Some(store.clone()) } else { None };
        let search = SearchService::new(search_log, store.clone(), None);
        let mut fact = message(Role::User, "Noted: the gate code is 4417.", vec![]);
        fact.conversation_id = other.clone();
        fact.created_at = Timestamp::from_millis(1_764_000_000_000);
        search.index_message(owner, &fact).await.unwrap();
        let mut b = builder(dir, window, 500).with_search(Some(search));
        b.settings.memory = true;
        (b, other)
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn memory_joins_labelled_numbered_after_the_files_and_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let owner = Owner::new("memory-owner");
        let (b, other) = remembering(dir.path(), 8_000, true, &owner).await;
        let notes = crate::service::files::tests::text_file(
            b.blobs.as_ref(),
            &owner,
            "notes.txt",
            "Plain notes about the move.",
        )
        .await;
        let here = ConversationId::generate();
        let scope = MemoryScope {
            conversation_id: &here,
        };
        let built = b
            .build_turn(
                &owner,
                "m",
                &[],
                "What is the gate code?",
                std::slice::from_ref(&notes),
                Some(scope),
            )
            .await
            .unwrap();
        assert_eq!(built.passages.len(), 2, "{:?}", built.passages);
        assert_eq!(built.passages[0].file_id.as_ref(), Some(&notes.id));
        let memory = &built.passages[1];
        assert_eq!(memory.n, 2, "numbered on from the files");
        assert_eq!(memory.file_id, None);
        let source = memory.memory.as_ref().unwrap();
        assert_eq!(source.conversation_id, other);
        assert_eq!(source.title, "Moving house");
        let last = built.messages.last().unwrap().joined_text();
        assert!(
            last.contains("[2] Memory, from your conversation “Moving house”, 2025-11-24:\nNoted: the gate code is 4417."),
            "{last}"
        );
        assert!(last.find("Plain notes") < last.find("[2] Memory"));
        assert!(last.ends_with("What is the gate code?"));
        let system = built.messages[0].joined_text();
        assert!(system.ends_with(cite::MEMORY_INSTRUCTION), "{system}");
        assert!(total(&built.messages) <= 8_000 - 500);

        // The turn's own conversation is never memory.
        let own = b
            .build_turn(
                &owner,
                "m",
                &[],
                "What is the gate code?",
                &[],
                Some(MemoryScope {
                    conversation_id: &other,
                }),
            )
            .await
            .unwrap();
        assert!(own.passages.is_empty(), "{:?}", own.passages);
        // Without a turn (`build`), or with memory off, none.
        let plain = b
            .build(&owner, "m", &[], "What is the gate code?", &[])
            .await
            .unwrap();
        assert!(plain.passages.is_empty());
        let mut off = b.clone();
        off.settings.memory = false;
        let off = off
            .build_turn(&owner, "m", &[], "What is the gate code?", &[], Some(scope))
            .await
            .unwrap();
        assert!(off.passages.is_empty());
        assert_eq!(off.messages[0].joined_text(), SYSTEM);
        // A question that does not match stays below the floor.
        let unrelated = b
            .build_turn(&owner, "m", &[], "Recommend a novel", &[], Some(scope))
            .await
            .unwrap();
        assert!(unrelated.passages.is_empty());
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn memory_never_pushes_out_history_and_without_a_log_is_simply_absent() {
        let dir = tempfile::tempdir().unwrap();
        let owner = Owner::new("memory-budget");
        let here = ConversationId::generate();
        let scope = Some(MemoryScope {
            conversation_id: &here,
        });
        let (window, answer) = (4_000, 500);
        let (b, _) = remembering(dir.path(), window, true, &owner).await;
        // A history that fills the window: memory gets no room, and the history is what it was
        // without memory.
        let long = history(80, "turn", 60);
        let with = b
            .build_turn(&owner, "m", &long, "What is the gate code?", &[], scope)
            .await
            .unwrap();
        let without = b
            .build(&owner, "m", &long, "What is the gate code?", &[])
            .await
            .unwrap();
        assert!(with.passages.is_empty(), "{:?}", with.passages);
        assert_eq!(all_text(&with.messages), all_text(&without.messages));
        assert!(total(&with.messages) <= window - answer);
        // A short history leaves room: memory joins, within the window.
        let short = history(2, "turn", 10);
        let with = b
            .build_turn(&owner, "m", &short, "What is the gate code?", &[], scope)
            .await
            .unwrap();
        assert_eq!(with.passages.len(), 1);
        assert!(all_text(&with.messages).contains("turn-1 "));
        assert!(total(&with.messages) <= window - answer);
        // The worst case reserved counts memory's share.
        let bound_on = b.prompt_bound("m", &short, "q", std::iter::empty());
        let mut off = b.clone();
        off.settings.memory = false;
        let bound_off = off.prompt_bound("m", &short, "q", std::iter::empty());
        assert_eq!(
            bound_on - bound_off,
            400 + memory_instruction_tokens() + instruction_tokens()
        );

        // A question of 100,000 characters: recalled by its bounded prefix.
        let dir2 = tempfile::tempdir().unwrap();
        let (big, _) = remembering(dir2.path(), 128_000, true, &owner).await;
        let mut question = "What is the gate code? [[cite:4417]] ".to_owned();
        while question.len() < 100_000 {
            question.push_str("lorem ipsum ");
        }
        let built = big
            .build_turn(&owner, "m", &[], &question, &[], scope)
            .await
            .unwrap();
        assert_eq!(built.passages.len(), 1, "{:?}", built.passages);

        // No search log: no memory and no error.
        let dir = tempfile::tempdir().unwrap();
        let (b, _) = remembering(dir.path(), 8_000, false, &owner).await;
        let built = b
            .build_turn(&owner, "m", &[], "What is the gate code?", &[], scope)
            .await
            .unwrap();
        assert!(built.passages.is_empty());
        assert_eq!(built.messages[0].joined_text(), SYSTEM);
    }

    /// A stand-in embedder: letter counts as a unit vector, and how often each text was embedded.
    #[derive(Default)]
    struct Counting(std::sync::Mutex<Vec<String>>);

    impl crate::embed::Embedder for Counting {
        fn id(&self) -> &str {
            "counting"
        }
        fn dim(&self) -> usize {
            4
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, crate::embed::EmbedError> {
            let mut seen = self.0.lock().unwrap();
            Ok(texts
                .iter()
                .map(|t| {
                    seen.push((*t).to_owned());
                    let count = |c: char| t.matches(c).count() as f32 + 1.0;
                    let v = [count('a'), count('e'), count('o'), count('g')];
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    v.iter().map(|x| x / norm).collect()
                })
                .collect())
        }
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_turn_that_cuts_a_file_and_recalls_memory_embeds_its_question_once() {
        use crate::domain::Conversation;
        use crate::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let owner = Owner::new("embed-once");
        let counting = Arc::new(Counting::default());
        let base = builder(dir.path(), 4_000, 500);
        let vectors = PassageVectors::new(base.blobs.clone(), counting.clone());
        let store = Arc::new(crate::store::sqlite::SqliteStore::in_memory().unwrap());
        let other = ConversationId::generate();
        let at = Timestamp::from_millis(1_764_000_000_000);
        store
            .create_conversation(
                &owner,
                &Conversation {
                    id: other.clone(),
                    title: "Moving house".into(),
                    message_count: 1,
                    created_at: at,
                    updated_at: at,
                    current_message_id: None,
                    generating_message_id: None,
                },
            )
            .await
            .unwrap();
        let search = SearchService::new(Some(store.clone()), store.clone(), Some(vectors.clone()));
        let mut fact = message(Role::User, "Noted: the gate code is 4417.", vec![]);
        fact.conversation_id = other.clone();
        search.index_message(&owner, &fact).await.unwrap();
        let mut b = base
            .with_vectors(Some(vectors.clone()))
            .with_search(Some(search));
        b.settings.memory = true;
        let mut manual = String::new();
        for p in 1..=400 {
            manual.push_str(&format!("[page {p}]\nPage {p} covers shipping routes.\n"));
        }
        let file = crate::service::files::tests::text_file(
            b.blobs.as_ref(),
            &owner,
            "manual.txt",
            &manual,
        )
        .await;
        vectors.compute(&owner, &file.id, &manual).await.unwrap();
        let question = "What is the gate code of the shipping yard?";
        let here = ConversationId::generate();
        let built = b
            .build_turn(
                &owner,
                "m",
                &[],
                question,
                std::slice::from_ref(&file),
                Some(MemoryScope {
                    conversation_id: &here,
                }),
            )
            .await
            .unwrap();
        let last = built.messages.last().unwrap().joined_text();
        assert!(
            last.contains("manual.txt is too long to send whole"),
            "cut by meaning too"
        );
        assert!(
            built.passages.iter().any(|p| p.memory.is_some()),
            "memory joined: {last}"
        );
        let asked = counting
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.starts_with(question))
            .count();
        assert_eq!(asked, 1, "the question is embedded once per turn");
    }
}
