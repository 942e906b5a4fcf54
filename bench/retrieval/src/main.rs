//! `bench-retrieval`: how well and at what cost passages are found.
//!
//! 1. recall@5 (and @1) of BM25 alone, of cosine alone and of the product's hybrid ranking (both,
//!    fused by reciprocal rank, `service::retrieval::rank`) on the question set
//!    `bench/retrieval/questions.json` over corpus documents (`scripts/corpus.sh`), all documents'
//!    chunks ranked together as when several files are attached. A question is answered when one of
//!    the first five chunks is on a page of its file whose text holds its phrase.
//! 2. Embedding speed: chunks and word pieces per second, over the same chunks.
//! 3. With `--large PDF` (the 300-page PDF of `bench/extract/gen_large.py`): extraction time against
//!    the time to embed all its chunks, and the memory the model adds.
//!
//! `bench-retrieval [--corpus DIR] [--model DIR] [--questions FILE] [--large PDF]`

use std::collections::{BTreeSet, HashMap};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use conversa::domain::FileType;
use conversa::embed::minilm::MiniLm;
use conversa::embed::{cosine, Embedder, DEFAULT_MODEL_DIR};
use conversa::extract::{extract, Limits};
use conversa::service::retrieval::{self, Chunk, Doc};
use conversa::service::search::QUERY_PIECES;
use serde::Deserialize;

#[derive(Deserialize)]
struct Set {
    documents: Vec<String>,
    questions: Vec<Question>,
}

#[derive(Deserialize)]
struct Question {
    kind: String,
    file: String,
    q: String,
    phrase: String,
}

/// A field of `/proc/self/status` in MB (Linux only).
fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn extract_pdf(path: &Path) -> Result<(String, f64), Box<dyn Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let started = Instant::now();
    let out = extract(FileType::Pdf, &bytes, &Limits::default())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((out.text, started.elapsed().as_secs_f64()))
}

/// Vectors, and the seconds they took.
type Timed = (Vec<Vec<f32>>, f64);

/// Embeds chunk texts in batches of 16 (as the product does).
fn embed_all(model: &MiniLm, texts: &[&str]) -> Result<Timed, Box<dyn Error>> {
    let started = Instant::now();
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(16) {
        out.extend(model.embed(batch)?);
    }
    Ok((out, started.elapsed().as_secs_f64()))
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let corpus = PathBuf::from(arg(&args, "--corpus").unwrap_or_else(|| "corpus".into()));
    let model_dir =
        PathBuf::from(arg(&args, "--model").unwrap_or_else(|| DEFAULT_MODEL_DIR.into()));
    let questions =
        arg(&args, "--questions").unwrap_or_else(|| "bench/retrieval/questions.json".into());
    let set: Set = serde_json::from_slice(&std::fs::read(&questions)?)?;

    let rss_before = status_mb("VmRSS:");
    let started = Instant::now();
    let model = MiniLm::load(&model_dir)?;
    let load_s = started.elapsed().as_secs_f64();
    let rss_loaded = status_mb("VmRSS:");
    println!(
        "model {} loaded in {load_s:.2} s; RSS {rss_before:.0} MB before, {rss_loaded:.0} MB after",
        model.id()
    );

    // The documents, chunked together.
    let mut docs = Vec::new();
    for d in &set.documents {
        let (text, _) = extract_pdf(&corpus.join(d))?;
        let name = d.rsplit('/').next().unwrap_or(d).to_owned();
        docs.push(Doc { name, text });
    }
    let chunks: Vec<Chunk> = retrieval::chunk(&docs);
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    let pieces: usize = texts
        .iter()
        .map(|t| model.token_ids(t).map(|v| v.len()))
        .sum::<Result<usize, _>>()?;
    let (vectors, embed_s) = embed_all(&model, &texts)?;
    println!(
        "{} documents, {} chunks, {pieces} word pieces read (≤ 256 a chunk): embedded in {embed_s:.1} s = {:.1} chunks/s, {:.0} word pieces/s",
        docs.len(),
        chunks.len(),
        chunks.len() as f64 / embed_s,
        pieces as f64 / embed_s
    );

    // Each page's text, for the answers.
    let mut pages: HashMap<(usize, String), String> = HashMap::new();
    for c in &chunks {
        let page = pages.entry((c.doc, c.label.clone())).or_default();
        page.push_str(&c.text);
        page.push('\n');
    }
    let pages: HashMap<(usize, String), String> =
        pages.into_iter().map(|(k, v)| (k, normalise(&v))).collect();

    // Ranking methods: words (BM25), meaning (cosine), hybrid (the product's).
    // The last two read each question as search reads a query: at most QUERY_PIECES word pieces.
    let capped_cosine = format!("cosine alone, question ≤ {QUERY_PIECES} word pieces");
    let capped_hybrid = format!("hybrid, question ≤ {QUERY_PIECES} word pieces");
    let methods = [
        "BM25 alone",
        "cosine alone",
        "hybrid (RRF, k = 60)",
        capped_cosine.as_str(),
        capped_hybrid.as_str(),
    ];
    let mut longer = 0usize;
    let mut hits5: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
    let mut hits1: HashMap<&str, usize> = HashMap::new();
    let mut query_s = 0.0;
    let mut misses: Vec<String> = Vec::new();
    for q in &set.questions {
        let doc = docs
            .iter()
            .position(|d| d.name == q.file)
            .ok_or_else(|| format!("{}: not among the documents", q.file))?;
        let phrase = normalise(&q.phrase);
        let gold: BTreeSet<&str> = pages
            .iter()
            .filter(|((d, _), text)| *d == doc && text.contains(&phrase))
            .map(|((_, label), _)| label.as_str())
            .collect();
        if gold.is_empty() {
            return Err(format!("{:?} is on no page of {}", q.phrase, q.file).into());
        }
        let t = Instant::now();
        let qv = model.embed(&[q.q.as_str()])?.remove(0);
        query_s += t.elapsed().as_secs_f64();
        let cos: Vec<Option<f32>> = vectors.iter().map(|v| Some(cosine(&qv, v))).collect();
        if model.token_ids(&q.q)?.len() > QUERY_PIECES {
            longer += 1;
        }
        let capped = model.embed_prefix(&[q.q.as_str()], QUERY_PIECES)?.remove(0);
        let capped: Vec<Option<f32>> = vectors.iter().map(|v| Some(cosine(&capped, v))).collect();
        let none: Vec<Option<f32>> = vec![None; chunks.len()];
        let by_cosine = |cos: &[Option<f32>]| {
            let mut o: Vec<usize> = (0..chunks.len()).collect();
            o.sort_by(|&a, &b| {
                cos[b]
                    .unwrap_or(0.0)
                    .total_cmp(&cos[a].unwrap_or(0.0))
                    .then(a.cmp(&b))
            });
            o
        };
        let orders = [
            retrieval::rank(&chunks, &q.q, Some(none.as_slice())),
            by_cosine(&cos),
            retrieval::rank(&chunks, &q.q, Some(cos.as_slice())),
            by_cosine(&capped),
            retrieval::rank(&chunks, &q.q, Some(capped.as_slice())),
        ];
        for (&method, order) in methods.iter().zip(&orders) {
            let right =
                |i: &usize| chunks[*i].doc == doc && gold.contains(chunks[*i].label.as_str());
            let at5 = order.iter().take(5).any(right);
            let e = hits5.entry((method, q.kind.as_str())).or_default();
            e.0 += usize::from(at5);
            e.1 += 1;
            if order.first().is_some_and(right) {
                *hits1.entry(method).or_default() += 1;
            }
            if !at5 && method == methods[2] {
                misses.push(format!("{} ({} {:?})", q.q, q.file, gold));
            }
        }
    }
    let n = set.questions.len();
    let kinds = ["words", "meaning"];
    println!();
    println!(
        "| ranking | recall@5, all {n} | words ({}) | meaning ({}) | recall@1 |",
        hits5.get(&(methods[0], kinds[0])).map_or(0, |h| h.1),
        hits5.get(&(methods[0], kinds[1])).map_or(0, |h| h.1)
    );
    println!("|---|---|---|---|---|");
    for m in methods {
        let (w, wn) = hits5.get(&(m, kinds[0])).copied().unwrap_or((0, 0));
        let (p, pn) = hits5.get(&(m, kinds[1])).copied().unwrap_or((0, 0));
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
        println!(
            "| {m} | {:.0}% ({}/{n}) | {:.0}% | {:.0}% | {:.0}% |",
            pct(w + p, n),
            w + p,
            pct(w, wn),
            pct(p, pn),
            pct(hits1.get(m).copied().unwrap_or(0), n)
        );
    }
    println!();
    println!(
        "question embedding: {:.1} ms on average ({n} questions); {longer} of them longer than {QUERY_PIECES} word pieces",
        1000.0 * query_s / n as f64
    );
    for m in &misses {
        println!("hybrid misses: {m}");
    }

    if let Some(large) = arg(&args, "--large") {
        let (text, extract_s) = extract_pdf(Path::new(&large))?;
        let chunks = retrieval::chunk(&[Doc {
            name: "large.pdf".into(),
            text,
        }]);
        let mut unique: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        unique.sort_unstable();
        unique.dedup();
        let pieces: usize = unique
            .iter()
            .map(|t| model.token_ids(t).map(|v| v.len()))
            .sum::<Result<usize, _>>()?;
        let (_, embed_s) = embed_all(&model, &unique)?;
        println!();
        println!(
            "{large}: extraction {extract_s:.2} s; {} chunks ({} distinct, {pieces} word pieces) embedded in {embed_s:.1} s ({:.1} chunks/s); embedding = {:.0}% of extraction time (×{:.0}); RSS after: {:.0} MB (peak {:.0} MB)",
            chunks.len(),
            unique.len(),
            unique.len() as f64 / embed_s,
            100.0 * embed_s / extract_s,
            embed_s / extract_s,
            status_mb("VmRSS:"),
            status_mb("VmHWM:")
        );
    }
    Ok(())
}
