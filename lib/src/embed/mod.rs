//! The `Embedder` port: text to unit-length sentence vectors, so that passages can be found by
//! meaning as well as by their words.
//!
//! The adapter is an in-process model ([`minilm`], all-MiniLM-L6-v2 run with candle, behind the
//! `embedder` feature). Vectors of a file's chunks are stored beside its text in the blob store
//! ([`vectors`] is their format) and reused on later turns.

use std::path::PathBuf;

#[cfg(feature = "embedder")]
pub mod minilm;
pub mod vectors;

/// What can go wrong when embedding.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model's files are missing or unreadable (named, with what to do).
    #[error("{0}")]
    Missing(String),
    /// The model failed to load or run.
    #[error("embedding model: {0}")]
    Model(String),
}

/// Turns text into vectors. Embedding is CPU work: callers run it off the async workers
/// (`tokio::task::spawn_blocking`).
pub trait Embedder: Send + Sync {
    /// Names the model and how its vectors are made (stored with the vectors: vectors made
    /// otherwise are not compared with this model's).
    fn id(&self) -> &str;
    /// The length of every vector.
    fn dim(&self) -> usize;
    /// One unit-length vector per text, in order. Each text is embedded from a bounded prefix (the
    /// model's longest input), so any length costs at most that much.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// As [`Embedder::embed`], each text from at most `pieces` word pieces of its beginning (the
    /// model's own limit when that is lower): what a long message costs is bounded by this.
    fn embed_prefix(&self, texts: &[&str], pieces: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let _ = pieces;
        self.embed(texts)
    }
}

/// Which embedder runs (`CONVERSA_EMBEDDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedderKind {
    /// None: passages are ranked by their words alone (BM25).
    Off,
    /// all-MiniLM-L6-v2 in this process (the `embedder` feature); its model must be there.
    MiniLm,
    /// The default of a binary built with the `embedder` feature: [`EmbedderKind::MiniLm`] when
    /// its model is in the default directory (or `CONVERSA_EMBED_MODEL` is set), else
    /// [`EmbedderKind::Off`], with a warning saying how to turn it on.
    Auto,
}

/// Where the embedding model's files are when `CONVERSA_EMBED_MODEL` is not set, relative to the
/// working directory.
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";
/// The script that fetches the default embedding model.
pub const FETCH_SCRIPT: &str = "scripts/fetch-embedder.sh";

/// The embedding settings (`CONVERSA_EMBEDDER`, `CONVERSA_EMBED_MODEL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedSettings {
    /// Which embedder.
    pub kind: EmbedderKind,
    /// The model's directory (`model.safetensors`, `tokenizer.json`, `config.json`).
    pub model_dir: Option<PathBuf>,
    /// Load the weights on first use rather than at start (the Lambda functions: their init stays
    /// short, and only an invocation that embeds pays the load). The model's files are still
    /// checked at start.
    pub lazy: bool,
}

impl EmbedSettings {
    /// The model directory: the configured one, else [`DEFAULT_MODEL_DIR`].
    pub fn dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_DIR))
    }
}

/// The embedder the settings name, loaded; `None` when embedding is off. A missing model stops
/// the start with an error naming the variable and the fetch script.
pub fn load(settings: &EmbedSettings) -> Result<Option<std::sync::Arc<dyn Embedder>>, EmbedError> {
    let kind = match settings.kind {
        EmbedderKind::Auto
            if settings.model_dir.is_none()
                && !settings.dir().join("model.safetensors").is_file() =>
        {
            tracing::warn!(
                dir = DEFAULT_MODEL_DIR,
                "no embedding model: passages are ranked by their words alone. Run {FETCH_SCRIPT} \
                 to rank them by meaning too (or set CONVERSA_EMBEDDER=off to say so)"
            );
            EmbedderKind::Off
        }
        EmbedderKind::Auto => EmbedderKind::MiniLm,
        other => other,
    };
    match kind {
        EmbedderKind::Off | EmbedderKind::Auto => Ok(None),
        #[cfg(feature = "embedder")]
        EmbedderKind::MiniLm if settings.lazy => {
            let model = minilm::LazyMiniLm::new(&settings.dir()).map_err(missing)?;
            Ok(Some(std::sync::Arc::new(model)))
        }
        #[cfg(feature = "embedder")]
        EmbedderKind::MiniLm => {
            let dir = settings.dir();
            let started = std::time::Instant::now();
            let model = minilm::MiniLm::load(&dir).map_err(missing)?;
            tracing::info!(
                model = model.id(),
                dir = %dir.display(),
                ms = started.elapsed().as_millis() as u64,
                "embedding model loaded"
            );
            Ok(Some(std::sync::Arc::new(model)))
        }
        #[cfg(not(feature = "embedder"))]
        EmbedderKind::MiniLm => Err(EmbedError::Missing(
            "CONVERSA_EMBEDDER: minilm is not built into this binary (build it with the \
             `embedder` feature, or set CONVERSA_EMBEDDER=off)"
                .into(),
        )),
    }
}

/// A missing model's error, naming the variable and the script that fetches it.
#[cfg(feature = "embedder")]
fn missing(e: EmbedError) -> EmbedError {
    match e {
        EmbedError::Missing(what) => EmbedError::Missing(format!(
            "CONVERSA_EMBED_MODEL: {what}. Run {FETCH_SCRIPT} to fetch all-MiniLM-L6-v2 (91 MB), \
             point CONVERSA_EMBED_MODEL at a directory holding its model.safetensors, \
             tokenizer.json and config.json, or set CONVERSA_EMBEDDER=off."
        )),
        other => other,
    }
}

/// The cosine of two unit vectors (their dot product); 0 when their lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    // Eight running sums, which the compiler keeps in one vector register: a single sum would add
    // one product at a time, each waiting for the last (a search compares 10,000 vectors).
    let mut lanes = [0f32; 8];
    let (xs, ys) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in xs.zip(ys) {
        for ((l, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loads_nothing_and_a_missing_model_names_the_variable_and_the_script() {
        let off = EmbedSettings {
            kind: EmbedderKind::Off,
            model_dir: None,
            lazy: false,
        };
        assert!(load(&off).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        // By default, a model that is not there leaves ranking to words (the tests' working
        // directory has no models/).
        let auto = EmbedSettings {
            kind: EmbedderKind::Auto,
            model_dir: None,
            lazy: false,
        };
        assert!(load(&auto).unwrap().is_none());
        // Named, it must be there.
        let named = EmbedSettings {
            kind: EmbedderKind::Auto,
            model_dir: Some(dir.path().join("nothing-here")),
            lazy: false,
        };
        assert!(load(&named).is_err());
        let missing = EmbedSettings {
            kind: EmbedderKind::MiniLm,
            model_dir: Some(dir.path().join("nothing-here")),
            lazy: false,
        };
        let Err(e) = load(&missing) else {
            panic!("a missing model must stop the start")
        };
        let msg = e.to_string();
        if cfg!(feature = "embedder") {
            assert!(msg.contains("CONVERSA_EMBED_MODEL"), "{msg}");
            assert!(msg.contains(FETCH_SCRIPT), "{msg}");
            assert!(msg.contains("nothing-here"), "{msg}");
        } else {
            assert!(msg.contains("CONVERSA_EMBEDDER"), "{msg}");
        }
        // Loading lazily, a missing model still stops the start, with the same words.
        let lazy = EmbedSettings {
            lazy: true,
            ..missing
        };
        let Err(e) = load(&lazy) else {
            panic!("a missing model must stop the start, even loaded lazily")
        };
        assert_eq!(e.to_string(), msg);
    }

    #[test]
    fn cosine_is_the_dot_product_of_unit_vectors() {
        assert!((cosine(&[1.0, 0.0], &[0.6, 0.8]) - 0.6).abs() < 1e-6);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        // Every element counts, those past the last group of eight included.
        for n in [1usize, 7, 8, 9, 16, 383, 384] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 10.0).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            assert!((f64::from(cosine(&a, &b)) - naive).abs() < 1e-4, "{n}");
            let mut c = a.clone();
            c[n - 1] += 1.0;
            assert!(
                (f64::from(cosine(&c, &b) - cosine(&a, &b)) - f64::from(b[n - 1])).abs() < 1e-4
            );
        }
    }
}
