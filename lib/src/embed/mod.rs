//! The `Embedder` port: text to unit-length sentence vectors, so that passages can be found by
//! meaning as well as by their words.
//!
//! The adapters are an in-process model ([`minilm`], all-MiniLM-L6-v2 run with candle, behind the
//! `embedder` feature) and the embedding Lambda function that runs it ([`remote`], behind the
//! `embed-lambda` feature; [`answer`] is that function's side). Vectors of a file's chunks are stored beside its text in the blob store
//! ([`vectors`] is their format) and reused on later turns.

use std::path::PathBuf;

#[cfg(feature = "embedder")]
pub mod minilm;
#[cfg(feature = "embed-lambda")]
pub mod remote;
pub mod vectors;

/// Text beyond this many characters is never embedded: far more than the model's longest input.
pub const MAX_CHARS: usize = 8_000;

/// The beginning of `text`, at most `chars` characters of it.
pub fn prefix(text: &str, chars: usize) -> &str {
    let end = text
        .char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// What the embedding Lambda function is sent (JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmbedRequest {
    /// The texts to embed; none to ask only for the model's id and dimension.
    pub texts: Vec<String>,
    /// Each text from at most this many word pieces of its beginning (see
    /// [`Embedder::embed_prefix`]); the model's own limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pieces: Option<usize>,
}

/// What the embedding Lambda function answers (JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EmbedResponse {
    /// The model's id ([`Embedder::id`]).
    pub model: String,
    /// The length of every vector.
    pub dim: usize,
    /// One unit-length vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
}

/// The embedding function's answer to `request` with `embedder`. Blocking: CPU work.
pub fn answer(
    embedder: &dyn Embedder,
    request: &EmbedRequest,
) -> Result<EmbedResponse, EmbedError> {
    let texts: Vec<&str> = request.texts.iter().map(String::as_str).collect();
    let vectors = match request.pieces {
        _ if texts.is_empty() => Vec::new(),
        Some(pieces) => embedder.embed_prefix(&texts, pieces)?,
        None => embedder.embed(&texts)?,
    };
    Ok(EmbedResponse {
        model: embedder.id().to_owned(),
        dim: embedder.dim(),
        vectors,
    })
}

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
    /// The embedding Lambda function named by `CONVERSA_EMBED_FUNCTION` (the `embed-lambda`
    /// feature), which runs all-MiniLM-L6-v2.
    Lambda,
}

/// Where the embedding model's files are when `CONVERSA_EMBED_MODEL` is not set, relative to the
/// working directory.
pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";
/// The script that fetches the default embedding model.
pub const FETCH_SCRIPT: &str = "scripts/fetch-embedder.sh";

/// The embedding settings (`CONVERSA_EMBEDDER`, `CONVERSA_EMBED_MODEL`,
/// `CONVERSA_EMBED_FUNCTION`).
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
    /// The embedding Lambda function's name or ARN ([`EmbedderKind::Lambda`]).
    pub function: Option<String>,
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
        EmbedderKind::Lambda => lambda(settings),
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

/// The embedding function's client ([`EmbedderKind::Lambda`]).
#[cfg(feature = "embed-lambda")]
fn lambda(settings: &EmbedSettings) -> Result<Option<std::sync::Arc<dyn Embedder>>, EmbedError> {
    let function = settings
        .function
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            EmbedError::Missing(
                "CONVERSA_EMBED_FUNCTION: CONVERSA_EMBEDDER=lambda needs the name or ARN of the \
                 embedding function"
                    .into(),
            )
        })?;
    let client = remote::LambdaEmbedder::new(function)?;
    tracing::info!(function, "embedding by the embedding function");
    Ok(Some(std::sync::Arc::new(client)))
}

#[cfg(not(feature = "embed-lambda"))]
fn lambda(_: &EmbedSettings) -> Result<Option<std::sync::Arc<dyn Embedder>>, EmbedError> {
    Err(EmbedError::Missing(
        "CONVERSA_EMBEDDER: lambda is not built into this binary (build it with the \
         `embed-lambda` feature, or set CONVERSA_EMBEDDER=off)"
            .into(),
    ))
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
            function: None,
        };
        assert!(load(&off).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        // By default, a model that is not there leaves ranking to words (the tests' working
        // directory has no models/).
        let auto = EmbedSettings {
            kind: EmbedderKind::Auto,
            model_dir: None,
            lazy: false,
            function: None,
        };
        assert!(load(&auto).unwrap().is_none());
        // Named, it must be there.
        let named = EmbedSettings {
            kind: EmbedderKind::Auto,
            model_dir: Some(dir.path().join("nothing-here")),
            lazy: false,
            function: None,
        };
        assert!(load(&named).is_err());
        let missing = EmbedSettings {
            kind: EmbedderKind::MiniLm,
            model_dir: Some(dir.path().join("nothing-here")),
            lazy: false,
            function: None,
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
    fn the_embedding_function_must_be_named() {
        let unnamed = EmbedSettings {
            kind: EmbedderKind::Lambda,
            model_dir: None,
            lazy: true,
            function: Some("  ".into()),
        };
        let Err(e) = load(&unnamed) else {
            panic!("an unnamed embedding function must stop the start")
        };
        let msg = e.to_string();
        if cfg!(feature = "embed-lambda") {
            assert!(msg.contains("CONVERSA_EMBED_FUNCTION"), "{msg}");
        } else {
            assert!(msg.contains("CONVERSA_EMBEDDER"), "{msg}");
        }
    }

    #[test]
    fn the_embedding_function_answers_in_order_with_the_model_id() {
        /// Vectors that say which text they are for.
        struct Lengths;
        impl Embedder for Lengths {
            fn id(&self) -> &str {
                "lengths"
            }
            fn dim(&self) -> usize {
                2
            }
            fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
                Ok(texts.iter().map(|t| vec![t.len() as f32, 0.0]).collect())
            }
            fn embed_prefix(
                &self,
                texts: &[&str],
                pieces: usize,
            ) -> Result<Vec<Vec<f32>>, EmbedError> {
                Ok(texts
                    .iter()
                    .map(|t| vec![t.len().min(pieces) as f32, 1.0])
                    .collect())
            }
        }
        let request: EmbedRequest =
            serde_json::from_str(r#"{"texts": ["a", "bbb", "cc"]}"#).unwrap();
        let answer = answer(&Lengths, &request).unwrap();
        assert_eq!(answer.model, "lengths");
        assert_eq!(answer.dim, 2);
        assert_eq!(
            answer.vectors,
            vec![vec![1.0, 0.0], vec![3.0, 0.0], vec![2.0, 0.0]]
        );
        let bounded = EmbedRequest {
            texts: vec!["bbb".into()],
            pieces: Some(2),
        };
        assert_eq!(answer_of(&bounded), vec![vec![2.0, 1.0]]);
        // No texts: the model's id and dimension only.
        let ask = EmbedRequest {
            texts: Vec::new(),
            pieces: None,
        };
        let only = super::answer(&Lengths, &ask).unwrap();
        assert_eq!((only.model.as_str(), only.dim), ("lengths", 2));
        assert!(only.vectors.is_empty());

        fn answer_of(request: &EmbedRequest) -> Vec<Vec<f32>> {
            super::answer(&Lengths, request).unwrap().vectors
        }
        // The request travels as JSON: `pieces` is left out when absent.
        assert_eq!(serde_json::to_string(&ask).unwrap(), r#"{"texts":[]}"#);
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
