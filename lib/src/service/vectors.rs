//! The vectors of files' chunks: made when a file's text is extracted (in the background, so that
//! a file is ready as soon as its text is), stored beside the text (blob `{owner}/{file_id}/vectors`,
//! format in [`crate::embed::vectors`]), and read back when a turn ranks the chunks of long files.
//! Vectors that are missing, damaged or made for something else are not used: they are made again
//! in the background, saying why, and that turn ranks by words alone.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::blobs::{keys, BlobStore};
use crate::domain::{FileId, Owner};
use crate::embed::vectors::{self, Expect};
use crate::embed::Embedder;
use crate::service::retrieval::{self, Doc, CHUNKER_ID};
use crate::service::Error;

/// Texts embedded per turn at the model when someone waits for them (a question, a search).
const BATCH_TEXTS: usize = 16;
/// Texts embedded per turn at the model in the background (a file's chunks, stored messages):
/// a question that comes meanwhile waits for one such batch at most (4 × 256 word pieces,
/// about half a second of a core).
pub const BACKGROUND_BATCH_TEXTS: usize = 4;

/// Makes, stores and reads back the vectors of files' chunks. Cheap to share.
pub struct PassageVectors {
    blobs: Arc<dyn BlobStore>,
    embedder: Arc<dyn Embedder>,
    /// One batch at the model at a time, in the whole process: the cores are shared with
    /// extraction and answers.
    permit: Arc<Semaphore>,
    /// Callers waiting for (or holding) the model who wait for the answer: background work yields
    /// to them.
    foreground: AtomicUsize,
    /// Woken when the last of those is done.
    idle: Notify,
    /// Files whose vectors are being made (blob keys).
    pending: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for PassageVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassageVectors")
            .field("model", &self.embedder.id())
            .finish()
    }
}

impl PassageVectors {
    /// Vectors by `embedder`, stored in `blobs`.
    pub fn new(blobs: Arc<dyn BlobStore>, embedder: Arc<dyn Embedder>) -> Arc<Self> {
        Arc::new(Self {
            blobs,
            embedder,
            permit: Arc::new(Semaphore::new(1)),
            foreground: AtomicUsize::new(0),
            idle: Notify::new(),
            pending: Mutex::new(HashSet::new()),
        })
    }

    /// The model.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    fn expect<'a>(&'a self, text: &'a str) -> Expect<'a> {
        Expect {
            model: self.embedder.id(),
            chunker: CHUNKER_ID,
            text,
            dim: self.embedder.dim(),
        }
    }

    /// Embeds texts off the async workers, a batch at a time, for a caller who waits for them:
    /// ahead of any background work (which yields between its batches).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, Error> {
        self.embed_within(texts, None).await
    }

    /// [`PassageVectors::embed`], each text from at most `pieces` word pieces of its beginning,
    /// when given.
    async fn embed_within(
        &self,
        texts: Vec<String>,
        pieces: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, Error> {
        let _waiting = Foreground::enter(self);
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH_TEXTS) {
            let turn = self.take_turn().await?;
            out.extend(self.run(turn, batch.to_vec(), pieces).await?);
        }
        Ok(out)
    }

    /// Embeds texts in the background (each from at most `pieces` word pieces of its beginning,
    /// when given), [`BACKGROUND_BATCH_TEXTS`] at a time, each batch waiting until no caller of
    /// [`PassageVectors::embed`] waits: one embedding at a time in the process, and the ones
    /// someone waits for first.
    pub async fn embed_background(
        &self,
        texts: Vec<String>,
        pieces: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BACKGROUND_BATCH_TEXTS) {
            let turn = self.background_turn().await?;
            out.extend(self.run(turn, batch.to_vec(), pieces).await?);
        }
        Ok(out)
    }

    /// The model's one permit, in the order callers ask for it.
    async fn take_turn(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.permit
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("embedding: {e}")))
    }

    /// The model, once no foreground caller waits for it.
    async fn background_turn(&self) -> Result<OwnedSemaphorePermit, Error> {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.foreground.load(Ordering::Acquire) == 0 {
                let turn = self.take_turn().await?;
                if self.foreground.load(Ordering::Acquire) == 0 {
                    return Ok(turn);
                }
                // Someone came while this waited: they go first.
                drop(turn);
                continue;
            }
            idle.await;
        }
    }

    /// One batch at the model, on the blocking pool, holding `turn` until it is done (even when
    /// the caller stops waiting).
    async fn run(
        &self,
        turn: OwnedSemaphorePermit,
        batch: Vec<String>,
        pieces: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, Error> {
        let embedder = self.embedder.clone();
        let vectors = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            match pieces {
                Some(n) => embedder.embed_prefix(&refs, n),
                None => embedder.embed(&refs),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("embedding task: {e}")))?
        .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(vectors)
    }

    /// The vector of a question (of its bounded prefix).
    pub async fn query(&self, text: &str) -> Result<Vec<f32>, Error> {
        self.query_within(text, None).await
    }

    /// [`PassageVectors::query`], from at most `pieces` word pieces of the text's beginning, when
    /// given.
    pub async fn query_within(&self, text: &str, pieces: Option<usize>) -> Result<Vec<f32>, Error> {
        self.embed_within(vec![text.to_owned()], pieces)
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("embedding: no vector".into()))
    }

    /// Makes the vectors of the chunks of a file's text and stores them; how many. A text with no
    /// chunks (no text) has none and stores nothing.
    pub async fn compute(&self, owner: &Owner, id: &FileId, text: &str) -> Result<usize, Error> {
        let chunks = retrieval::chunk(&[Doc {
            name: String::new(),
            text: text.to_owned(),
        }]);
        if chunks.is_empty() {
            return Ok(0);
        }
        // Repeated chunks (running headers, repeated rows) are embedded once.
        let mut unique: Vec<String> = Vec::new();
        let mut first: HashMap<&str, usize> = HashMap::new();
        let which: Vec<usize> = chunks
            .iter()
            .map(|c| {
                *first.entry(c.text.as_str()).or_insert_with(|| {
                    unique.push(c.text.clone());
                    unique.len() - 1
                })
            })
            .collect();
        let made = self.embed_background(unique, None).await?;
        let all: Vec<Vec<f32>> = which.iter().map(|&u| made[u].clone()).collect();
        let blob = vectors::encode(&self.expect(text), &all);
        self.blobs
            .put(
                &keys::vectors(owner, id),
                Bytes::from(blob),
                "application/octet-stream",
            )
            .await?;
        Ok(all.len())
    }

    /// Makes a file's vectors in the background, unless they are being made already; the task, when
    /// one was started. Failures are logged (the next turn that needs them tries again).
    pub fn refresh(
        self: &Arc<Self>,
        owner: &Owner,
        id: &FileId,
        text: String,
    ) -> Option<JoinHandle<()>> {
        let key = keys::vectors(owner, id);
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if !pending.insert(key.clone()) {
                return None;
            }
        }
        let this = self.clone();
        let (owner, id) = (owner.clone(), id.clone());
        Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            match this.compute(&owner, &id, &text).await {
                Ok(n) => tracing::info!(
                    file = %id,
                    chunks = n,
                    ms = started.elapsed().as_millis() as u64,
                    "file vectors made"
                ),
                Err(e) => tracing::warn!(file = %id, error = %e, "file vectors could not be made"),
            }
            this.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }))
    }

    /// The stored vectors of a file's chunks (one per chunk of `text`, in order) when they are whole
    /// and made by this model for this text. Otherwise `None`: they are made again in the
    /// background, and a damaged or stale blob is logged with the reason.
    pub async fn stored(
        self: &Arc<Self>,
        owner: &Owner,
        id: &FileId,
        text: &str,
    ) -> Result<Option<Vec<Vec<f32>>>, Error> {
        match self.blobs.get(&keys::vectors(owner, id)).await? {
            Some(bytes) => match vectors::decode(&bytes, &self.expect(text)) {
                Ok(v) => Ok(Some(v)),
                Err(why) => {
                    tracing::warn!(file = %id, reason = %why, "file vectors unusable; making them again");
                    self.refresh(owner, id, text.to_owned());
                    Ok(None)
                }
            },
            None if text.trim().is_empty() => Ok(Some(Vec::new())),
            None => {
                if self.refresh(owner, id, text.to_owned()).is_some() {
                    tracing::info!(file = %id, "file vectors missing; making them");
                }
                Ok(None)
            }
        }
    }
}

/// A caller waiting for the model (or using it): counted while it lives, even when its future is
/// dropped halfway.
struct Foreground<'a>(&'a PassageVectors);

impl<'a> Foreground<'a> {
    fn enter(v: &'a PassageVectors) -> Self {
        v.foreground.fetch_add(1, Ordering::AcqRel);
        Self(v)
    }
}

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        if self.0.foreground.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
