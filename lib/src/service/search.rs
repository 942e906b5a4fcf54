//! Search over everything a person has said and uploaded, by meaning and by words.
//!
//! Every message (question and answer) and every chunk of every file's text has an entry in the
//! owner's [`SearchLog`] (bounded text, and its vector when an embedder runs). Each process keeps
//! the entries it has read in a per-owner cache and reads only what is new (by watermark); a
//! removal elsewhere changes the owner's generation, and the cache reloads. A search embeds the
//! query, ranks the entries by cosine and by BM25, fuses both by reciprocal rank (k = 60), and
//! returns one hit per message and per file chunk, with its conversation's title and a verbatim
//! snippet.
//!
//! Memory ([`SearchService::recall`], `CONVERSA_MEMORY=on`) ranks the same entries for a chat
//! turn's question, leaves out the turn's own conversation, and keeps only what clears a relevance
//! floor: close in meaning (cosine at least [`MEMORY_MIN_COSINE`]) or sharing at least
//! [`MEMORY_MIN_WORDS`] of the question's distinct words (all of them, for a shorter question).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use crate::domain::{ConversationId, FileId, FileMeta, Message, MessageId, Owner, Timestamp};
use crate::search::{self, bounded, EntryKind, SearchEntry, SearchLog};
use crate::service::retrieval::{self, Doc, RRF_K};
use crate::service::vectors::PassageVectors;
use crate::service::Error;
use crate::store::Store;

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;
/// Hits per search when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 20;
/// The most hits a search returns.
pub const MAX_LIMIT: usize = 50;
/// How many of each ranking take part in the fusion.
const LIST_DEPTH: usize = 100;
/// Entries less similar to the query than this are not found by meaning (unrelated text of this
/// model scores about 0–0.2).
const MIN_COSINE: f32 = 0.2;
/// The longest snippet, in characters.
const SNIPPET_CHARS: usize = 200;
/// Users whose entries a process keeps in memory (the least recently searched go first).
const CACHED_OWNERS: usize = 256;
/// Search queries whose vectors a process keeps (the least recently asked go first): the search
/// box asks again as a person types, deletes and comes back. 1.5 KB each.
const CACHED_QUERIES: usize = 256;
/// Word pieces of a search query the model reads (its beginning): what embedding a query costs is
/// bounded by this, however long it is (what is typed in a search box is rarely longer). Its
/// words are all ranked (within [`MAX_QUERY_CHARS`]).
pub const QUERY_PIECES: usize = 32;
/// Memory: entries at least this similar to the question are relevant by meaning (related text
/// of this model scores about 0.4 and up; unrelated 0–0.2).
pub const MEMORY_MIN_COSINE: f32 = 0.45;
/// Memory: how many of the question's distinct words an entry must hold to be relevant by words
/// (a question with fewer: all of them).
pub const MEMORY_MIN_WORDS: usize = 2;
/// Memory: how many of the best-ranked entries are looked up (their conversation, their file)
/// at most, for the few that join.
const MEMORY_CANDIDATES: usize = 20;
/// Memory: the longest passage of an entry that joins a prompt, in characters.
pub const MEMORY_PASSAGE_CHARS: usize = 600;

/// A passage of another conversation recalled for a chat turn (memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Recalled {
    /// The conversation it belongs to (never the turn's own).
    pub conversation_id: ConversationId,
    /// Its title.
    pub title: String,
    /// The message, for messages.
    pub message_id: Option<MessageId>,
    /// The file and its name, for file chunks.
    pub file: Option<(FileId, String)>,
    /// Where in the file (`page 7`), for file chunks.
    pub label: Option<String>,
    /// When the message was written (the file uploaded).
    pub created_at: Timestamp,
    /// A verbatim excerpt, at most [`MEMORY_PASSAGE_CHARS`] characters, from the sentence that
    /// best matches the question.
    pub text: String,
}
/// Word pieces of a stored message the model reads (its beginning): what embedding a message
/// costs is bounded by this, however long it is. Its words are all indexed (within the entry's
/// bound).
pub const MESSAGE_PIECES: usize = 128;
/// Messages embedded together (one call of the model) by the indexing worker.
const INDEX_BATCH: usize = 8;
/// Messages written together when there is no model (one write per owner).
const INDEX_BATCH_WORDS: usize = 64;
/// Messages waiting for the indexing worker, at most; beyond, a message is written at once, found
/// by its words alone.
const MAX_PENDING: usize = 10_000;

/// One hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// A message or a file chunk.
    pub kind: EntryKind,
    /// Its conversation (`None`: a file not attached to one yet).
    pub conversation_id: Option<ConversationId>,
    /// The message, for messages.
    pub message_id: Option<MessageId>,
    /// The file, for file chunks.
    pub file_id: Option<FileId>,
    /// The conversation's title (a file not attached: its name).
    pub title: String,
    /// Where in the file (`page 7`), for file chunks.
    pub label: Option<String>,
    /// A verbatim excerpt of the text.
    pub snippet: String,
    /// The fused score (higher is better).
    pub score: f64,
}

/// An entry as the cache holds it.
struct Cached {
    entry: SearchEntry,
    vector: Option<Vec<f32>>,
    terms: HashMap<String, u32>,
    len: u32,
}

impl Cached {
    fn new(mut entry: SearchEntry) -> Self {
        let vector = entry.vector();
        entry.vector = Vec::new();
        let words = retrieval::terms(&entry.text);
        let len = words.len() as u32;
        let mut terms: HashMap<String, u32> = HashMap::new();
        for w in words {
            *terms.entry(w).or_default() += 1;
        }
        Self {
            entry,
            vector,
            terms,
            len,
        }
    }
}

/// One owner's entries, as far as this process has read them.
#[derive(Default)]
struct Index {
    /// Changes whenever the entries are read again from scratch (positions change then).
    epoch: u64,
    generation: Option<u64>,
    watermark: Option<String>,
    entries: Vec<Cached>,
    by_id: HashMap<String, usize>,
    /// For each term, the positions of the entries that hold it, in order: its document
    /// frequency is their number, and only those entries are scored for it.
    postings: HashMap<String, Vec<usize>>,
    /// The entries' lengths in terms, summed (BM25's average length).
    total_len: u64,
}

impl Index {
    fn add(&mut self, entry: SearchEntry) {
        let cached = Cached::new(entry);
        let i = match self.by_id.get(&cached.entry.id) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.entries[i], cached);
                self.unpost(i, &old);
                i
            }
            None => {
                let i = self.entries.len();
                self.by_id.insert(cached.entry.id.clone(), i);
                self.entries.push(cached);
                i
            }
        };
        let Some(c) = self.entries.get(i) else {
            return;
        };
        self.total_len += u64::from(c.len);
        for t in c.terms.keys() {
            let list = self.postings.entry(t.clone()).or_default();
            if let Err(at) = list.binary_search(&i) {
                list.insert(at, i);
            }
        }
    }

    /// Takes the entry at `i` (`old`, now replaced) out of the statistics.
    fn unpost(&mut self, i: usize, old: &Cached) {
        self.total_len = self.total_len.saturating_sub(u64::from(old.len));
        for t in old.terms.keys() {
            if let Some(list) = self.postings.get_mut(t) {
                if let Ok(at) = list.binary_search(&i) {
                    list.remove(at);
                }
                if list.is_empty() {
                    self.postings.remove(t);
                }
            }
        }
    }
}

/// The vectors of recent search queries, by model and exact query text.
struct QueryVectors {
    cache: Mutex<lru::LruCache<(String, String), Vec<f32>>>,
}

impl QueryVectors {
    fn new(capacity: usize) -> Self {
        Self {
            cache: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(capacity).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<(String, String), Vec<f32>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether no vector is kept (then no model has been asked yet).
    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The vector `model` made for exactly `text`, when kept.
    fn get(&self, model: &str, text: &str) -> Option<Vec<f32>> {
        self.lock()
            .get(&(model.to_owned(), text.to_owned()))
            .cloned()
    }

    /// Keeps the vector `model` made for `text`, dropping the least recently used when full.
    fn put(&self, model: &str, text: &str, vector: Vec<f32>) {
        self.lock().put((model.to_owned(), text.to_owned()), vector);
    }
}

/// The search use case, and the writes that keep the log up to date. Cheap to share.
pub struct SearchService {
    log: Option<Arc<dyn SearchLog>>,
    store: Arc<dyn Store>,
    vectors: Option<Arc<PassageVectors>>,
    cache: Mutex<Cache>,
    /// The vectors of recent queries.
    queries: QueryVectors,
    /// The indexing worker's queue (started with the first message).
    indexer: OnceLock<mpsc::UnboundedSender<(Owner, SearchEntry)>>,
    /// Messages in that queue or being indexed.
    pending: Arc<AtomicUsize>,
}

/// Per owner: when it was last searched (a counter) and its index.
#[derive(Default)]
struct Cache {
    tick: u64,
    owners: HashMap<String, (u64, Arc<tokio::sync::Mutex<Index>>)>,
}

impl Cache {
    /// The owner's index (a new, empty one when absent, dropping the least recently used owner
    /// when the cache is full).
    fn get(&mut self, owner: &str) -> Arc<tokio::sync::Mutex<Index>> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.owners.get_mut(owner) {
            slot.0 = tick;
            return slot.1.clone();
        }
        if self.owners.len() >= CACHED_OWNERS {
            if let Some(oldest) = self
                .owners
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
            {
                self.owners.remove(&oldest);
            }
        }
        let index = Arc::new(tokio::sync::Mutex::new(Index::default()));
        self.owners.insert(owner.to_owned(), (tick, index.clone()));
        index
    }
}

impl std::fmt::Debug for SearchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchService")
            .field("log", &self.log.is_some())
            .field("vectors", &self.vectors.is_some())
            .finish()
    }
}

impl SearchService {
    /// Search over `log` (`None`: the store keeps none, and search says so), with titles from
    /// `store` and vectors by `vectors` (`None`: by words alone).
    pub fn new(
        log: Option<Arc<dyn SearchLog>>,
        store: Arc<dyn Store>,
        vectors: Option<Arc<PassageVectors>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            log,
            store,
            vectors,
            cache: Mutex::new(Cache::default()),
            queries: QueryVectors::new(CACHED_QUERIES),
            indexer: OnceLock::new(),
            pending: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Adds a stored message (a question, or an answer once finished) to the owner's log, now.
    pub async fn index_message(&self, owner: &Owner, message: &Message) -> Result<(), Error> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let Some(mut entry) = message_entry(message) else {
            return Ok(());
        };
        if let Some(v) = &self.vectors {
            entry.vector = message_vectors(v, std::slice::from_ref(&entry.text))
                .await
                .pop()
                .unwrap_or_default();
        }
        log.append(owner, &[entry]).await?;
        Ok(())
    }

    /// Indexes a message in the background (failures are logged): one worker takes the messages in
    /// order, embeds several at once (each from its first [`MESSAGE_PIECES`] word pieces, behind
    /// any question or search waiting for the model) and writes them, one write per owner.
    pub fn index_message_later(self: &Arc<Self>, owner: &Owner, message: &Message) {
        let Some(log) = &self.log else {
            return;
        };
        let Some(entry) = message_entry(message) else {
            return;
        };
        let queued = self.pending.fetch_add(1, Ordering::AcqRel) < MAX_PENDING
            && self
                .indexer
                .get_or_init(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(index_worker(
                        log.clone(),
                        self.vectors.clone(),
                        rx,
                        self.pending.clone(),
                    ));
                    tx
                })
                .send((owner.clone(), entry.clone()))
                .is_ok();
        if queued {
            return;
        }
        // Too much waiting (or no worker): written now, by its words alone.
        self.pending.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(message = %message.id, "search indexing is behind; a message is indexed by its words alone");
        let (log, owner) = (log.clone(), owner.clone());
        tokio::spawn(async move {
            if let Err(e) = log.append(&owner, &[entry]).await {
                tracing::warn!(error = %e, "could not index a message for search");
            }
        });
    }

    /// Messages waiting to be indexed (queued or being embedded).
    pub fn pending_messages(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Adds the chunks of a file's text to the owner's log, with the file's stored vectors when
    /// they are there (the caller makes them first).
    pub async fn index_file(
        &self,
        owner: &Owner,
        file: &FileMeta,
        text: &str,
    ) -> Result<(), Error> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        let chunks = retrieval::chunk(&[Doc {
            name: file.filename.clone(),
            text: text.to_owned(),
        }]);
        if chunks.is_empty() {
            return Ok(());
        }
        let stored = match &self.vectors {
            Some(v) => v.stored(owner, &file.id, text).await?,
            None => None,
        };
        let entries: Vec<SearchEntry> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| SearchEntry {
                id: format!("{}#{}", file.id, c.seq),
                kind: EntryKind::File,
                conversation_id: file.conversation_id.clone(),
                message_id: None,
                file_id: Some(file.id.clone()),
                chunk: Some(c.seq as u32),
                label: Some(c.label.clone()),
                created_at: file.created_at,
                text: bounded(&c.text),
                vector: stored
                    .as_ref()
                    .and_then(|s| s.get(i))
                    .map(|v| search::encode_vector(v))
                    .unwrap_or_default(),
            })
            .collect();
        log.append(owner, &entries).await?;
        Ok(())
    }

    /// Removes a deleted conversation's messages and files from the owner's log.
    pub async fn forget_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
        files: &[FileId],
    ) -> Result<(), Error> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        log.remove_conversation(owner, id).await?;
        for f in files {
            log.remove_file(owner, f).await?;
        }
        Ok(())
    }

    /// Removes a deleted file from the owner's log.
    pub async fn forget_file(&self, owner: &Owner, id: &FileId) -> Result<(), Error> {
        if let Some(log) = &self.log {
            log.remove_file(owner, id).await?;
        }
        Ok(())
    }

    /// The owner's index, brought up to date with the log.
    async fn index(
        &self,
        log: &Arc<dyn SearchLog>,
        owner: &Owner,
    ) -> Result<Arc<tokio::sync::Mutex<Index>>, Error> {
        let index = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(owner.as_str());
        {
            let mut ix = index.lock().await;
            let page = log.read(owner, ix.watermark.as_deref()).await?;
            let page = if ix.generation.is_some_and(|g| g != page.generation) {
                // Something was removed: read everything again.
                *ix = Index {
                    epoch: ix.epoch + 1,
                    ..Index::default()
                };
                log.read(owner, None).await?
            } else {
                page
            };
            ix.generation = Some(page.generation);
            if page.watermark.is_some() {
                ix.watermark = page.watermark;
            }
            for e in page.entries {
                ix.add(e);
            }
        }
        Ok(index)
    }

    /// The owner's messages and file chunks that best match `query`, best first, at most `limit`.
    pub async fn search(
        &self,
        owner: &Owner,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Hit>, Error> {
        let query = query.trim();
        let n = query.chars().count();
        if n == 0 || n > MAX_QUERY_CHARS {
            return Err(Error::Invalid(format!(
                "q must be 1 to {MAX_QUERY_CHARS} characters"
            )));
        }
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::Invalid(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        let Some(log) = &self.log else {
            return Err(Error::Unavailable(
                "Search is not available with this store.".into(),
            ));
        };
        // The query's vector (kept from an earlier search, or made on the blocking pool from its
        // first [`QUERY_PIECES`] word pieces) while the index is brought up to date and ranked
        // by words.
        let embed = async {
            let v = self.vectors.as_ref()?;
            // Vectors are kept only once the model has made one: asking a model that loads on
            // first use for its id before then would load it here, on an async worker.
            if !self.queries.is_empty() {
                if let Some(kept) = self.queries.get(v.embedder().id(), query) {
                    return Some(kept);
                }
            }
            match v.query_within(query, Some(QUERY_PIECES)).await {
                Ok(vector) => {
                    self.queries.put(v.embedder().id(), query, vector.clone());
                    Some(vector)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not embed a search query; words only");
                    None
                }
            }
        };
        let by_words = async {
            let index = self.index(log, owner).await?;
            let (epoch, list) = {
                let ix = index.lock().await;
                (ix.epoch, words(&ix, query))
            };
            Ok::<_, Error>((index, epoch, list))
        };
        let (qv, by_words) = tokio::join!(embed, by_words);
        let (index, epoch, mut by_words) = by_words?;
        let ranked: Vec<(SearchEntry, f64)> = {
            let ix = index.lock().await;
            if ix.epoch != epoch {
                by_words = words(&ix, query);
            }
            let lists = vec![dense(&ix.entries, qv.as_deref()), by_words];
            retrieval::rrf(&lists, RRF_K)
                .into_iter()
                .filter_map(|(i, score)| ix.entries.get(i).map(|c| (c.entry.clone(), score)))
                .collect()
        };
        let mut hits = Vec::new();
        let mut titles: HashMap<String, Option<String>> = HashMap::new();
        for (entry, score) in ranked {
            if hits.len() >= limit {
                break;
            }
            if let Some(hit) = self
                .resolve(owner, entry, query, score, &mut titles)
                .await?
            {
                hits.push(hit);
            }
        }
        Ok(hits)
    }

    /// Whether this store keeps a search log (memory and search need one).
    pub fn has_log(&self) -> bool {
        self.log.is_some()
    }

    /// Memory: at most `limit` passages of the owner's other conversations (messages, and chunks
    /// of files attached to them) most relevant to `question` — by words over its first
    /// [`MAX_QUERY_CHARS`] characters and, with `vector` (the question's), by meaning — best
    /// first, each above the relevance floor (see the module's documentation). Nothing of conversation `current`, nor of files
    /// attached to none. Without a search log, nothing.
    pub async fn recall(
        &self,
        owner: &Owner,
        question: &str,
        vector: Option<&[f32]>,
        current: &ConversationId,
        limit: usize,
    ) -> Result<Vec<Recalled>, Error> {
        let Some(log) = &self.log else {
            return Ok(Vec::new());
        };
        // A bounded prefix, cut at a word boundary so no half word becomes a term.
        let query = match question.char_indices().nth(MAX_QUERY_CHARS) {
            Some((i, _)) => {
                let head = &question[..i];
                head.rfind(char::is_whitespace).map_or(head, |j| &head[..j])
            }
            None => question,
        }
        .trim();
        if limit == 0 || (query.is_empty() && vector.is_none()) {
            return Ok(Vec::new());
        }
        let mut wanted = retrieval::terms(query);
        {
            let mut seen = std::collections::HashSet::new();
            wanted.retain(|t| seen.insert(t.clone()));
        }
        let need = wanted.len().min(MEMORY_MIN_WORDS);
        let index = self.index(log, owner).await?;
        let ranked: Vec<SearchEntry> = {
            let ix = index.lock().await;
            // A message belongs to its conversation for good; a file may have been attached
            // since it was indexed (the resolved hit says where it is now).
            let other = |c: &Cached| match c.entry.kind {
                EntryKind::Message => c
                    .entry
                    .conversation_id
                    .as_ref()
                    .is_some_and(|id| id != current),
                EntryKind::File => c.entry.conversation_id.as_ref() != Some(current),
            };
            let by_words = words_where(&ix, query, |c| {
                other(c)
                    && need > 0
                    && wanted.iter().filter(|t| c.terms.contains_key(*t)).count() >= need
            });
            let by_meaning = dense_where(&ix.entries, vector, MEMORY_MIN_COSINE, other);
            retrieval::rrf(&[by_meaning, by_words], RRF_K)
                .into_iter()
                .filter_map(|(i, _)| ix.entries.get(i).map(|c| c.entry.clone()))
                .collect()
        };
        let mut out = Vec::new();
        let mut titles: HashMap<String, Option<String>> = HashMap::new();
        for entry in ranked.into_iter().take(MEMORY_CANDIDATES) {
            if out.len() >= limit {
                break;
            }
            let created_at = entry.created_at;
            let text = excerpt(&entry.text, query, MEMORY_PASSAGE_CHARS);
            let Some(hit) = self.resolve(owner, entry, query, 0.0, &mut titles).await? else {
                continue;
            };
            // A file attached since to this conversation (or to none) is not memory.
            let Some(conversation_id) = hit.conversation_id.filter(|c| c != current) else {
                continue;
            };
            let file = match &hit.file_id {
                Some(id) => match self.store.get_file(owner, id).await? {
                    Some(f) => Some((f.id, f.filename)),
                    None => continue,
                },
                None => None,
            };
            out.push(Recalled {
                conversation_id,
                title: hit.title,
                message_id: hit.message_id,
                file,
                label: hit.label,
                created_at,
                text,
            });
        }
        Ok(out)
    }

    /// A hit for an entry, with its conversation's title; `None` when what it belongs to is gone.
    async fn resolve(
        &self,
        owner: &Owner,
        entry: SearchEntry,
        query: &str,
        score: f64,
        titles: &mut HashMap<String, Option<String>>,
    ) -> Result<Option<Hit>, Error> {
        let (conversation_id, fallback) = match entry.kind {
            EntryKind::Message => (entry.conversation_id.clone(), None),
            EntryKind::File => {
                let Some(id) = &entry.file_id else {
                    return Ok(None);
                };
                // The file as it is now: attached since, or deleted.
                match self.store.get_file(owner, id).await? {
                    Some(f) => (f.conversation_id, Some(f.filename)),
                    None => return Ok(None),
                }
            }
        };
        let title = match &conversation_id {
            Some(c) => {
                let title = match titles.get(c.as_str()) {
                    Some(t) => t.clone(),
                    None => {
                        let t = self
                            .store
                            .get_conversation(owner, c)
                            .await?
                            .map(|c| c.title);
                        titles.insert(c.as_str().to_owned(), t.clone());
                        t
                    }
                };
                match title {
                    Some(t) => t,
                    None => return Ok(None),
                }
            }
            None => fallback.unwrap_or_default(),
        };
        Ok(Some(Hit {
            kind: entry.kind,
            conversation_id,
            message_id: entry.message_id,
            file_id: entry.file_id,
            title,
            label: entry.label,
            snippet: snippet(&entry.text, query),
            score,
        }))
    }
}

/// The log entry of a message, without its vector; `None` for an empty one.
fn message_entry(message: &Message) -> Option<SearchEntry> {
    if message.content.trim().is_empty() {
        return None;
    }
    Some(SearchEntry {
        id: message.id.as_str().to_owned(),
        kind: EntryKind::Message,
        conversation_id: Some(message.conversation_id.clone()),
        message_id: Some(message.id.clone()),
        file_id: None,
        chunk: None,
        label: None,
        created_at: message.created_at,
        text: bounded(&message.content),
        vector: Vec::new(),
    })
}

/// The encoded vectors of messages' texts, from their first [`MESSAGE_PIECES`] word pieces, in
/// the background; empty ones when the model fails (logged: those are found by words alone).
async fn message_vectors(vectors: &PassageVectors, texts: &[String]) -> Vec<Vec<u8>> {
    match vectors
        .embed_background(texts.to_vec(), Some(MESSAGE_PIECES))
        .await
    {
        Ok(v) if v.len() == texts.len() => v.iter().map(|v| search::encode_vector(v)).collect(),
        Ok(_) => {
            tracing::warn!("the embedding model returned too few vectors; words only");
            vec![Vec::new(); texts.len()]
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not embed messages for search; words only");
            vec![Vec::new(); texts.len()]
        }
    }
}

/// The indexing worker: takes what is queued (up to a batch), embeds it in one call, writes it
/// (one write per owner, in order), and goes on until the service is gone.
async fn index_worker(
    log: Arc<dyn SearchLog>,
    vectors: Option<Arc<PassageVectors>>,
    mut queue: mpsc::UnboundedReceiver<(Owner, SearchEntry)>,
    pending: Arc<AtomicUsize>,
) {
    let most = if vectors.is_some() {
        INDEX_BATCH
    } else {
        INDEX_BATCH_WORDS
    };
    let mut batch = Vec::with_capacity(most);
    while queue.recv_many(&mut batch, most).await > 0 {
        if let Some(v) = &vectors {
            let texts: Vec<String> = batch.iter().map(|(_, e)| e.text.clone()).collect();
            for ((_, e), v) in batch.iter_mut().zip(message_vectors(v, &texts).await) {
                e.vector = v;
            }
        }
        let n = batch.len();
        let mut by_owner: Vec<(Owner, Vec<SearchEntry>)> = Vec::new();
        for (owner, entry) in batch.drain(..) {
            match by_owner.iter_mut().find(|(o, _)| *o == owner) {
                Some((_, entries)) => entries.push(entry),
                None => by_owner.push((owner, vec![entry])),
            }
        }
        for (owner, entries) in by_owner {
            if let Err(e) = log.append(&owner, &entries).await {
                tracing::warn!(error = %e, messages = entries.len(), "could not index messages for search");
            }
        }
        pending.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Entries with vectors, most similar to the query first (at least [`MIN_COSINE`]).
fn dense(entries: &[Cached], query: Option<&[f32]>) -> Vec<usize> {
    dense_where(entries, query, MIN_COSINE, |_| true)
}

/// [`dense`] over the entries `keep` accepts, at least `floor` similar.
fn dense_where(
    entries: &[Cached],
    query: Option<&[f32]>,
    floor: f32,
    keep: impl Fn(&Cached) -> bool,
) -> Vec<usize> {
    let Some(q) = query else {
        return Vec::new();
    };
    let mut scored: Vec<(usize, f32)> = entries
        .iter()
        .enumerate()
        .filter(|(_, c)| keep(c))
        .filter_map(|(i, c)| {
            let v = c.vector.as_ref()?;
            if v.len() != q.len() {
                return None;
            }
            let cos = crate::embed::cosine(v, q);
            (cos >= floor).then_some((i, cos))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(LIST_DEPTH);
    scored.into_iter().map(|(i, _)| i).collect()
}

/// Entries that contain the query's words, by BM25 (k1 = 1.2, b = 0.75), best first.
fn words(ix: &Index, query: &str) -> Vec<usize> {
    words_where(ix, query, |_| true)
}

/// [`words`], ranking only the entries `keep` accepts (the statistics are the whole index's). Only
/// the entries that hold a query term are visited, through the index's postings.
fn words_where(ix: &Index, query: &str, keep: impl Fn(&Cached) -> bool) -> Vec<usize> {
    let mut q = retrieval::terms(query);
    q.sort();
    q.dedup();
    if q.is_empty() || ix.entries.is_empty() {
        return Vec::new();
    }
    let n = ix.entries.len() as f64;
    let avg = ix.total_len as f64 / n;
    // Scores summed term by term, in the query's (sorted) order.
    let mut scores: HashMap<usize, f64> = HashMap::new();
    for t in &q {
        let Some(list) = ix.postings.get(t) else {
            continue;
        };
        let df = list.len() as f64;
        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
        for &i in list {
            let Some(c) = ix.entries.get(i) else {
                continue;
            };
            let tf = *c.terms.get(t).unwrap_or(&0) as f64;
            if tf == 0.0 {
                continue;
            }
            *scores.entry(i).or_default() +=
                idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * c.len as f64 / avg.max(1.0)));
        }
    }
    let mut scored: Vec<(usize, f64)> = scores
        .into_iter()
        .filter(|&(i, s)| s > 0.0 && ix.entries.get(i).is_some_and(&keep))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(LIST_DEPTH);
    scored.into_iter().map(|(i, _)| i).collect()
}

/// A verbatim excerpt of `text` of at most [`SNIPPET_CHARS`] characters, from the start of the
/// sentence that shares the most words with the query (the first, when none does).
pub fn snippet(text: &str, query: &str) -> String {
    excerpt(text, query, SNIPPET_CHARS)
}

/// [`snippet`], at most `max` characters.
fn excerpt(text: &str, query: &str, max: usize) -> String {
    let q = retrieval::terms(query);
    let mut best = (0usize, 0usize);
    let mut start = 0usize;
    for (i, ch) in text.char_indices() {
        let end = i + ch.len_utf8();
        if matches!(ch, '.' | '!' | '?' | '\n') || end == text.len() {
            let sentence = &text[start..end];
            let hits = retrieval::terms(sentence)
                .iter()
                .filter(|w| q.contains(w))
                .count();
            if hits > best.1 {
                best = (start, hits);
            }
            start = end;
        }
    }
    let from = text[best.0..]
        .char_indices()
        .find(|(_, c)| !c.is_whitespace())
        .map_or(text.len(), |(i, _)| best.0 + i);
    let rest = &text[from..];
    let cut = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
    rest[..cut].trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snippet_starts_at_the_sentence_that_matches_and_is_verbatim() {
        let text = "Opening words here. The invoice total is due on Friday! Closing remark.";
        let s = snippet(text, "invoice total");
        assert_eq!(s, "The invoice total is due on Friday! Closing remark.");
        assert!(text.contains(&s));
        assert_eq!(snippet(text, "nothing matches"), text);
        let long = "word ".repeat(100);
        assert!(snippet(&long, "x").chars().count() <= SNIPPET_CHARS);
        assert!(long.contains(&snippet(&long, "x")));
    }

    fn cached(text: &str, v: Option<Vec<f32>>) -> Cached {
        Cached::new(SearchEntry {
            vector: v.map(|v| search::encode_vector(&v)).unwrap_or_default(),
            ..entry(text, text)
        })
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn without_a_search_log_search_is_unavailable_and_writes_are_skipped() {
        let store = Arc::new(crate::store::sqlite::SqliteStore::in_memory().unwrap());
        let search = SearchService::new(None, store, None);
        let owner = Owner::new("someone");
        assert!(matches!(
            search.search(&owner, "anything", 20).await,
            Err(Error::Unavailable(_))
        ));
        // Bad input is still a bad request, whatever the store.
        assert!(matches!(
            search.search(&owner, "  ", 20).await,
            Err(Error::Invalid(_))
        ));
        search
            .forget_file(&owner, &FileId::generate())
            .await
            .unwrap();
    }

    #[test]
    fn the_cache_keeps_the_most_recently_searched_owners() {
        let mut cache = Cache::default();
        let first = cache.get("owner-0");
        for i in 1..CACHED_OWNERS {
            cache.get(&format!("owner-{i}"));
        }
        assert!(Arc::ptr_eq(&first, &cache.get("owner-0")), "still cached");
        cache.get("one-more");
        assert_eq!(cache.owners.len(), CACHED_OWNERS);
        assert!(cache.owners.contains_key("owner-0"), "recently used: kept");
        assert!(
            !cache.owners.contains_key("owner-1"),
            "least recently used: dropped"
        );
    }

    fn entry(id: &str, text: &str) -> SearchEntry {
        SearchEntry {
            id: id.into(),
            kind: EntryKind::Message,
            conversation_id: None,
            message_id: None,
            file_id: None,
            chunk: None,
            label: None,
            created_at: crate::domain::Timestamp::from_millis(0),
            text: text.into(),
            vector: Vec::new(),
        }
    }

    fn index_of(entries: Vec<Cached>) -> Index {
        let mut ix = Index::default();
        for c in entries {
            let mut e = c.entry;
            e.vector = c
                .vector
                .map(|v| search::encode_vector(&v))
                .unwrap_or_default();
            ix.add(e);
        }
        ix
    }

    #[test]
    fn words_rank_by_bm25_and_meaning_by_cosine_above_the_floor() {
        let ix = index_of(vec![
            cached("a note about apples", Some(vec![1.0, 0.0])),
            cached("apples apples and pears", Some(vec![0.0, 1.0])),
            cached("nothing in common", None),
        ]);
        assert_eq!(words(&ix, "apples"), vec![1, 0]);
        assert_eq!(words(&ix, "the"), Vec::<usize>::new());
        assert_eq!(words(&ix, "pears apples"), vec![1, 0]);
        assert_eq!(words(&ix, "apples nothing"), vec![2, 1, 0]);
        let entries = &ix.entries;
        assert_eq!(dense(entries, Some(&[0.6, 0.8])), vec![1, 0]);
        assert_eq!(dense(entries, Some(&[-1.0, 0.0])), Vec::<usize>::new());
        assert_eq!(dense(entries, None), Vec::<usize>::new());
    }

    /// BM25 with every statistic counted over the entries for the query, as a reference.
    fn counted_bm25(entries: &[Cached], query: &str) -> Vec<(usize, f64)> {
        let mut q = retrieval::terms(query);
        q.sort();
        q.dedup();
        let n = entries.len() as f64;
        let avg = entries.iter().map(|c| c.len as f64).sum::<f64>() / n;
        let mut scored: Vec<(usize, f64)> = entries
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let s: f64 = q
                    .iter()
                    .map(|t| {
                        let df = entries.iter().filter(|c| c.terms.contains_key(t)).count() as f64;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        let tf = *c.terms.get(t).unwrap_or(&0) as f64;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * c.len as f64 / avg.max(1.0)))
                    })
                    .sum();
                (i, s)
            })
            .filter(|&(_, s)| s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }

    #[test]
    fn the_index_keeps_the_word_statistics_through_additions_and_replacements() {
        const WORDS: [&str; 7] = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date"];
        // Seeded texts of 3 to 7 of those words.
        let text = |seed: u64| -> String {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..3 + seed % 5)
                .map(|_| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    WORDS[((x >> 33) % WORDS.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut ix = Index::default();
        for i in 0..40u64 {
            ix.add(entry(&format!("e{i}"), &text(i)));
        }
        // Entries written again with other words (an answer finished since, a file re-indexed).
        for i in (0..40u64).step_by(3) {
            ix.add(entry(&format!("e{i}"), &text(i + 100)));
        }
        ix.add(entry("e5", "kiwi"));
        assert_eq!(ix.entries.len(), 40);
        assert_eq!(
            ix.total_len,
            ix.entries.iter().map(|c| u64::from(c.len)).sum::<u64>()
        );
        for (t, list) in &ix.postings {
            let holding: Vec<usize> = (0..ix.entries.len())
                .filter(|&i| ix.entries[i].terms.contains_key(t))
                .collect();
            assert_eq!(list, &holding, "postings of {t}");
        }
        for query in [
            "apple",
            "pear plum",
            "fig kiwi lime",
            "date apple apple",
            "kiwi",
        ] {
            let expected: Vec<usize> = counted_bm25(&ix.entries, query)
                .into_iter()
                .take(LIST_DEPTH)
                .map(|(i, _)| i)
                .collect();
            assert!(!expected.is_empty(), "{query}");
            assert_eq!(words(&ix, query), expected, "{query}");
        }
        // A term no entry holds any more is gone from the postings.
        ix.add(entry("only", "quince"));
        ix.add(entry("only", "apple"));
        assert!(!ix.postings.contains_key("quince"));
        assert!(words(&ix, "quince").is_empty());
    }

    #[test]
    fn query_vectors_are_kept_by_model_and_exact_text_and_bounded() {
        let kept = QueryVectors::new(3);
        assert!(kept.is_empty());
        kept.put("model-a", "apples", vec![1.0, 0.0]);
        assert!(!kept.is_empty());
        assert_eq!(kept.get("model-a", "apples"), Some(vec![1.0, 0.0]));
        // Another text, even a prefix of it, or another model: not kept.
        assert_eq!(kept.get("model-a", "apple"), None);
        assert_eq!(kept.get("model-a", "apples "), None);
        assert_eq!(kept.get("model-b", "apples"), None);
        kept.put("model-b", "apples", vec![0.0, 1.0]);
        assert_eq!(kept.get("model-b", "apples"), Some(vec![0.0, 1.0]));
        assert_eq!(kept.get("model-a", "apples"), Some(vec![1.0, 0.0]));
        // Full: the least recently used goes ("model-b" was read before "model-a").
        kept.put("model-a", "pears", vec![0.6, 0.8]);
        kept.put("model-a", "plums", vec![0.8, 0.6]);
        assert_eq!(kept.lock().len(), 3);
        assert_eq!(kept.get("model-b", "apples"), None);
        assert_eq!(kept.get("model-a", "apples"), Some(vec![1.0, 0.0]));
        assert_eq!(kept.get("model-a", "pears"), Some(vec![0.6, 0.8]));
        assert_eq!(kept.get("model-a", "plums"), Some(vec![0.8, 0.6]));
    }

    /// A stand-in embedder that records what it was asked to embed, and from how many pieces.
    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, usize)>>);

    impl crate::embed::Embedder for Recording {
        fn id(&self) -> &str {
            "recording"
        }
        fn dim(&self) -> usize {
            2
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, crate::embed::EmbedError> {
            self.embed_prefix(texts, usize::MAX)
        }
        fn embed_prefix(
            &self,
            texts: &[&str],
            pieces: usize,
        ) -> Result<Vec<Vec<f32>>, crate::embed::EmbedError> {
            let mut seen = self.0.lock().unwrap();
            Ok(texts
                .iter()
                .map(|t| {
                    seen.push(((*t).to_owned(), pieces));
                    vec![0.6, 0.8]
                })
                .collect())
        }
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_query_asked_again_is_not_embedded_again_and_is_embedded_from_a_bounded_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::store::sqlite::SqliteStore::in_memory().unwrap());
        let recording = Arc::new(Recording::default());
        let blobs = Arc::new(crate::blobs::local::LocalBlobs::new(dir.path().join("b")).unwrap());
        let vectors = PassageVectors::new(blobs, recording.clone());
        let log: Arc<dyn SearchLog> = store.clone();
        let search = SearchService::new(Some(log), store, Some(vectors));
        let owner = Owner::new("asks-again");
        search.search(&owner, "apple pie", 20).await.unwrap();
        search.search(&owner, "  apple pie ", 20).await.unwrap();
        search.search(&owner, "apple pies", 20).await.unwrap();
        search.search(&owner, "apple pie", 20).await.unwrap();
        assert_eq!(
            *recording.0.lock().unwrap(),
            vec![
                ("apple pie".to_owned(), QUERY_PIECES),
                ("apple pies".to_owned(), QUERY_PIECES)
            ]
        );
    }
}
