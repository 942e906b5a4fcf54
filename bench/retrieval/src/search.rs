//! `bench-search`: search latency over 10,000 entries of one user.
//!
//! Seeds one owner's search log (SQLite, on disk) with `--entries` message entries spread over 100
//! conversations: texts of 30 words drawn from a 2,000-word vocabulary, and seeded random unit
//! vectors (what search costs does not depend on the vectors' values). Queries are embedded by the
//! real model (all-MiniLM-L6-v2), as in the product. Reports the first (cold) search, which reads
//! the whole log, and percentiles of warm searches, with the same searches by words alone (no
//! embedder) as the baseline of the same run, and the query embedding alone. Every timed query is
//! new to the service; the same queries asked again (their vectors kept) are reported apart.
//!
//! `bench-search [--model DIR] [--entries N] [--runs N]`

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conversa::blobs::local::LocalBlobs;
use conversa::domain::{Conversation, ConversationId, MessageId, Owner, Timestamp};
use conversa::embed::minilm::MiniLm;
use conversa::embed::DEFAULT_MODEL_DIR;
use conversa::search::{encode_vector, EntryKind, SearchEntry, SearchLog};
use conversa::service::search::{SearchService, QUERY_PIECES};
use conversa::service::vectors::PassageVectors;
use conversa::store::sqlite::SqliteStore;
use conversa::store::Store;

const DIM: usize = 384;
const CONVERSATIONS: usize = 100;

/// SplitMix64: a seeded, reproducible stream (benchmark data only).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn word(i: u64) -> String {
    // Pronounceable made-up words: syllables from a seed.
    const S: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "be", "do", "fu", "ga", "hi", "jo", "pe",
        "so",
    ];
    let mut w = String::new();
    let mut n = i;
    for _ in 0..3 {
        w.push_str(S[(n % 16) as usize]);
        n /= 16;
    }
    w
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64 * 1000.0;
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        times.len(),
        mean,
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        percentile(&times, 0.99)
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut model = PathBuf::from(DEFAULT_MODEL_DIR);
    let mut entries = 10_000usize;
    let mut runs = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--model" => model = PathBuf::from(v),
            "--entries" => entries = v.parse()?,
            "--runs" => runs = v.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("conversa.db"))?;
    let owner = Owner::new("bench");
    let mut rng = Rng(15);

    let mut conversations = Vec::new();
    for i in 0..CONVERSATIONS {
        let c = Conversation {
            id: ConversationId::generate(),
            title: format!("Conversation {i}"),
            message_count: 0,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            current_message_id: None,
            generating_message_id: None,
        };
        store.create_conversation(&owner, &c).await?;
        conversations.push(c.id);
    }
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..entries {
        let text: Vec<String> = (0..30).map(|_| word(rng.next() % 2_000)).collect();
        let mut v: Vec<f32> = (0..DIM).map(|_| rng.unit()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        let id = MessageId::generate();
        batch.push(SearchEntry {
            id: id.as_str().to_owned(),
            kind: EntryKind::Message,
            conversation_id: Some(conversations[i % CONVERSATIONS].clone()),
            message_id: Some(id),
            file_id: None,
            chunk: None,
            label: None,
            created_at: Timestamp::now(),
            text: text.join(" "),
            vector: encode_vector(&v),
        });
        if batch.len() == 500 {
            store.append(&owner, &batch).await?;
            batch.clear();
        }
    }
    store.append(&owner, &batch).await?;
    println!(
        "seeded {entries} entries over {CONVERSATIONS} conversations in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let store = Arc::new(store);
    let log: Arc<dyn SearchLog> = store.clone();
    let embedder = Arc::new(MiniLm::load(&model)?);
    let blobs = Arc::new(LocalBlobs::new(dir.path().join("blobs"))?);
    let vectors = PassageVectors::new(blobs, embedder);
    let hybrid = SearchService::new(Some(log.clone()), store.clone(), Some(vectors.clone()));
    let words = SearchService::new(Some(log), store.clone(), None);

    // Queries: two or three vocabulary words, and a sentence, in turn; all different, so that
    // every timed search embeds its query (the service keeps the vectors of recent queries).
    let mut seen = std::collections::HashSet::new();
    let queries: Vec<String> = (0..)
        .map(|i| {
            if i % 4 == 3 {
                format!(
                    "what did we decide about the {} plan last week",
                    word(rng.next() % 2_000)
                )
            } else {
                (0..2 + i % 2)
                    .map(|_| word(rng.next() % 2_000))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        })
        .filter(|q| seen.insert(q.clone()))
        .take(runs + 1)
        .collect();
    let (cold, queries) = queries.split_at(1);

    let t = Instant::now();
    let first = hybrid.search(&owner, &cold[0], 20).await?;
    let cold_hybrid = t.elapsed();
    let t = Instant::now();
    words.search(&owner, &cold[0], 20).await?;
    let cold_words = t.elapsed();
    println!(
        "cold first search (reads all {entries} entries): hybrid {:.1} ms, words alone {:.1} ms; {} hits",
        cold_hybrid.as_secs_f64() * 1000.0,
        cold_words.as_secs_f64() * 1000.0,
        first.len()
    );

    let (mut h, mut w, mut e) = (Vec::new(), Vec::new(), Vec::new());
    for q in queries {
        let t = Instant::now();
        let hits = hybrid.search(&owner, q, 20).await?;
        h.push(t.elapsed());
        if hits.is_empty() {
            return Err(format!("no hits for {q}").into());
        }
        let t = Instant::now();
        words.search(&owner, q, 20).await?;
        w.push(t.elapsed());
        let t = Instant::now();
        vectors.query_within(q, Some(QUERY_PIECES)).await?;
        e.push(t.elapsed());
    }
    // The same queries asked again: their vectors are kept.
    let mut again = Vec::new();
    for q in queries {
        let t = Instant::now();
        hybrid.search(&owner, q, 20).await?;
        again.push(t.elapsed());
    }
    println!(
        "| search ({entries} entries, limit 20) | runs | mean ms | p50 ms | p95 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|");
    summary(
        "hybrid, each query new (embed query + cosine + BM25 + RRF + titles)",
        h,
    );
    summary("words alone (BM25 + titles; baseline)", w);
    summary("query embedding alone", e);
    summary("hybrid, the same queries asked again (vector kept)", again);
    Ok(())
}
