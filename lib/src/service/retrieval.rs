//! Choosing what of long documents fits the model: split files into labelled chunks (by page,
//! sheet, then size), rank them against the question with BM25 and, when the chunks have vectors,
//! by meaning (cosine), fuse the two rankings by reciprocal rank, and keep the best within a token
//! budget, in document order, saying what was left out.

use std::collections::HashMap;

/// A file's text, ready to be cut.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The file name, for labels.
    pub name: String,
    /// The extracted text (with `[page N]` / `## Sheet: X` markers when the extractor made them).
    pub text: String,
}

/// A labelled piece of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Which document (index into the docs given).
    pub doc: usize,
    /// Position within the document.
    pub seq: usize,
    /// `page 250`, `sheet Revenue`, `part 3`.
    pub label: String,
    /// The text.
    pub text: String,
    /// Estimated tokens.
    pub tokens: u64,
}

/// About how many tokens one chunk holds.
pub const CHUNK_TOKENS: u64 = 350;

/// Names how [`chunk`] cuts a document; stored with a file's chunk vectors, which are made again
/// when it changes. Change it whenever `chunk` changes what it produces.
pub const CHUNKER_ID: &str = "chunk-v1/350";

/// The `k` of reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009).
pub const RRF_K: f64 = 60.0;

/// Splits text into sections at `[page N]` and `## Sheet: X` markers: `(label, text)`, the label
/// `page N`, `sheet X`, or empty for text before the first marker.
pub fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut label = String::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        let marker = t
            .strip_prefix("[page ")
            .and_then(|r| r.strip_suffix(']'))
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
            .map(|n| format!("page {n}"))
            .or_else(|| t.strip_prefix("## Sheet: ").map(|s| format!("sheet {s}")));
        if let Some(m) = marker {
            if !cur.trim().is_empty() || !label.is_empty() {
                out.push((std::mem::take(&mut label), std::mem::take(&mut cur)));
            }
            label = m;
            cur.clear();
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() || !label.is_empty() {
        out.push((label, cur));
    }
    out
}

/// Cuts documents into chunks of about [`CHUNK_TOKENS`], never across a page or sheet.
pub fn chunk(docs: &[Doc]) -> Vec<Chunk> {
    let mut out = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let mut seq = 0;
        let mut part = 0;
        for (label, body) in sections(&doc.text) {
            let mut cur = String::new();
            let mut pieces = Vec::new();
            for para in body.split("\n\n") {
                for line in para.lines() {
                    if crate::tokens::estimate(&cur) + crate::tokens::estimate(line) > CHUNK_TOKENS
                        && !cur.trim().is_empty()
                    {
                        pieces.push(std::mem::take(&mut cur));
                    }
                    cur.push_str(line);
                    cur.push('\n');
                }
                cur.push('\n');
            }
            if !cur.trim().is_empty() {
                pieces.push(cur);
            }
            for text in pieces {
                let label = if label.is_empty() {
                    part += 1;
                    format!("part {part}")
                } else {
                    label.clone()
                };
                let tokens = crate::tokens::estimate(&text);
                out.push(Chunk {
                    doc: d,
                    seq,
                    label,
                    text: text.trim().to_owned(),
                    tokens,
                });
                seq += 1;
            }
        }
    }
    out
}

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from",
    "how", "i", "in", "is", "it", "its", "me", "my", "of", "on", "or", "that", "the", "their",
    "there", "this", "to", "was", "we", "what", "when", "where", "which", "who", "why", "will",
    "with", "you", "your", "about", "please", "tell",
];

/// Whether a lower-cased word says nothing about a text's subject (`the`, `what`, `please`).
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains(&word)
}

/// Lower-cased words of letters and digits, without stop words.
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !is_stopword(w))
        .collect()
}

/// BM25 scores of each chunk for the query (k1 = 1.2, b = 0.75).
pub fn bm25(chunks: &[Chunk], query: &str) -> Vec<f64> {
    let q: Vec<String> = {
        let mut t = terms(query);
        t.sort();
        t.dedup();
        t
    };
    let docs: Vec<Vec<String>> = chunks.iter().map(|c| terms(&c.text)).collect();
    let n = docs.len().max(1) as f64;
    let avg = docs.iter().map(Vec::len).sum::<usize>() as f64 / n;
    let mut df: HashMap<&str, usize> = HashMap::new();
    for d in &docs {
        let mut seen: Vec<&str> = d
            .iter()
            .map(String::as_str)
            .filter(|w| q.iter().any(|t| t == w))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for w in seen {
            *df.entry(w).or_default() += 1;
        }
    }
    docs.iter()
        .map(|d| {
            let len = d.len() as f64;
            q.iter()
                .map(|t| {
                    let tf = d.iter().filter(|w| *w == t).count() as f64;
                    if tf == 0.0 {
                        return 0.0;
                    }
                    let nq = *df.get(t.as_str()).unwrap_or(&0) as f64;
                    let idf = ((n - nq + 0.5) / (nq + 0.5) + 1.0).ln();
                    idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / avg.max(1.0)))
                })
                .sum()
        })
        .collect()
}

/// The chunks to send: the best-scoring within `budget` tokens, back in document order. When
/// nothing matches the query, the beginning of each document (round-robin) is kept instead.
pub fn select(chunks: &[Chunk], query: &str, budget: u64) -> Vec<Chunk> {
    select_hybrid(chunks, query, None, budget)
}

/// Reciprocal rank fusion: each item scores `Σ 1 / (k + rank)` over the lists it is in (ranks
/// from 1). Best first; ties by index.
pub fn rrf(lists: &[Vec<usize>], k: f64) -> Vec<(usize, f64)> {
    let mut score: HashMap<usize, f64> = HashMap::new();
    for list in lists {
        for (rank, &i) in list.iter().enumerate() {
            *score.entry(i).or_default() += 1.0 / (k + rank as f64 + 1.0);
        }
    }
    let mut out: Vec<(usize, f64)> = score.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// A question's vector and the stored vectors of each document's chunks (one per chunk, by
/// `seq`); `None` for a document whose vectors are not there.
#[derive(Debug, Clone, Default)]
pub struct Dense {
    /// The question's vector.
    pub query: Vec<f32>,
    /// Per document (as given to [`chunk`]), its chunks' vectors.
    pub docs: Vec<Option<Vec<Vec<f32>>>>,
}

impl Dense {
    /// The cosine of each chunk with the question; `None` where a chunk has no vector.
    pub fn scores(&self, chunks: &[Chunk]) -> Vec<Option<f32>> {
        chunks
            .iter()
            .map(|c| {
                let v = self.docs.get(c.doc)?.as_ref()?.get(c.seq)?;
                Some(crate::embed::cosine(&self.query, v))
            })
            .collect()
    }
}

/// The order in which chunks are worth sending for `query`: BM25 over the chunks that share a
/// word with it and, when `dense` gives their cosine with it, the chunks that have a vector by
/// cosine, fused by reciprocal rank ([`RRF_K`]); the other chunks follow in document order. When
/// neither ranks anything, the documents' openings, round-robin.
pub fn rank(chunks: &[Chunk], query: &str, dense: Option<&[Option<f32>]>) -> Vec<usize> {
    let scores = bm25(chunks, query);
    let mut words: Vec<usize> = (0..chunks.len()).filter(|&i| scores[i] > 0.0).collect();
    words.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let cosine = |i: usize| dense.and_then(|d| d.get(i).copied().flatten());
    let mut meaning: Vec<usize> = (0..chunks.len()).filter(|&i| cosine(i).is_some()).collect();
    meaning.sort_by(|&a, &b| {
        let (x, y) = (cosine(a).unwrap_or(0.0), cosine(b).unwrap_or(0.0));
        y.total_cmp(&x).then(a.cmp(&b))
    });
    if words.is_empty() && meaning.is_empty() {
        // Interleave documents so each gets its opening pages.
        let mut order: Vec<usize> = (0..chunks.len()).collect();
        order.sort_by_key(|&i| (chunks[i].seq, chunks[i].doc));
        return order;
    }
    let mut order: Vec<usize> = rrf(&[words, meaning], RRF_K)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let ranked: std::collections::HashSet<usize> = order.iter().copied().collect();
    order.extend((0..chunks.len()).filter(|i| !ranked.contains(i)));
    order
}

/// [`select`], with the chunks also ranked by meaning when `dense` gives their cosine with the
/// question (see [`rank`]).
pub fn select_hybrid(
    chunks: &[Chunk],
    query: &str,
    dense: Option<&[Option<f32>]>,
    budget: u64,
) -> Vec<Chunk> {
    let mut kept = Vec::new();
    let mut used = 0;
    for i in rank(chunks, query, dense) {
        let c = &chunks[i];
        if used + c.tokens > budget {
            continue;
        }
        used += c.tokens;
        kept.push(c.clone());
    }
    kept.sort_by_key(|c| (c.doc, c.seq));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_doc() -> Doc {
        let mut text = String::new();
        for p in 1..=300 {
            text.push_str(&format!("[page {p}]\n"));
            if p == 250 {
                text.push_str(
                    "The secret ingredient of the house soup is saffron from La Mancha.\n",
                );
            } else {
                text.push_str(&format!("Page {p} discusses quarterly logistics, shipping routes and warehouse capacity.\n"));
            }
        }
        Doc {
            name: "manual.pdf".into(),
            text,
        }
    }

    #[test]
    fn chunks_follow_pages_and_sheets() {
        let docs = vec![
            long_doc(),
            Doc {
                name: "book.xlsx".into(),
                text: "## Sheet: Revenue\n| a | b |\n## Sheet: Costs\n| c | d |\n".into(),
            },
            Doc {
                name: "notes.txt".into(),
                text: "plain text with no markers".into(),
            },
        ];
        let chunks = chunk(&docs);
        assert_eq!(chunks.iter().filter(|c| c.doc == 0).count(), 300);
        assert_eq!(chunks[249].label, "page 250");
        assert!(chunks[249].text.contains("saffron"));
        let sheets: Vec<&str> = chunks
            .iter()
            .filter(|c| c.doc == 1)
            .map(|c| c.label.as_str())
            .collect();
        assert_eq!(sheets, ["sheet Revenue", "sheet Costs"]);
        assert_eq!(chunks.iter().find(|c| c.doc == 2).unwrap().label, "part 1");
    }

    #[test]
    fn long_sections_are_cut_to_size() {
        let text = format!(
            "[page 1]\n{}",
            "A fairly ordinary sentence about nothing much.\n".repeat(400)
        );
        let chunks = chunk(&[Doc {
            name: "x".into(),
            text,
        }]);
        assert!(chunks.len() > 5);
        assert!(chunks
            .iter()
            .all(|c| c.label == "page 1" && c.tokens <= CHUNK_TOKENS + 20));
    }

    #[test]
    fn the_page_that_answers_the_question_is_selected() {
        let chunks = chunk(&[long_doc()]);
        let kept = select(&chunks, "What is the secret ingredient of the soup?", 200);
        assert!(kept.iter().any(|c| c.label == "page 250"));
        let scores = bm25(&chunks, "What is the secret ingredient of the soup?");
        let best = (0..scores.len())
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        assert_eq!(chunks[best].label, "page 250");
        assert!(kept.iter().map(|c| c.tokens).sum::<u64>() <= 200);
    }

    #[test]
    fn reciprocal_rank_fusion_adds_one_over_k_plus_rank() {
        let fused = rrf(&[vec![3, 1], vec![1, 2]], 60.0);
        let score = |i: usize| fused.iter().find(|(j, _)| *j == i).unwrap().1;
        assert!((score(1) - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert!((score(3) - 1.0 / 61.0).abs() < 1e-12);
        assert!((score(2) - 1.0 / 62.0).abs() < 1e-12);
        // In both lists beats first in one; equal scores go by index.
        assert_eq!(fused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 3, 2]);
    }

    #[test]
    fn a_chunk_ranked_by_meaning_alone_is_kept_beside_the_word_matches() {
        let chunks = chunk(&[long_doc()]);
        let question = "What is the secret ingredient of the soup?";
        // Room for two chunks. Only page 250 shares words with the question; page 40 is the one
        // closest in meaning.
        let budget = chunks[0].tokens * 2;
        let words_only = select(&chunks, question, budget);
        assert!(!words_only.iter().any(|c| c.label == "page 40"));
        let mut dense: Vec<Option<f32>> = vec![Some(0.1); chunks.len()];
        dense[39] = Some(0.9);
        dense[10] = None;
        let both = select_hybrid(&chunks, question, Some(&dense), budget);
        let labels: Vec<&str> = both.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["page 40", "page 250"]);
        // The cosines of stored vectors, by document and position.
        let d = Dense {
            query: vec![1.0, 0.0],
            docs: vec![Some(vec![vec![0.0, 1.0]; 300]), None],
        };
        let two = chunk(&[long_doc(), long_doc()]);
        let s = d.scores(&two);
        assert_eq!(s[0], Some(0.0));
        assert_eq!(s[300], None);
    }

    #[test]
    fn without_a_match_the_openings_are_kept() {
        let docs = vec![long_doc(), long_doc()];
        let kept = select(&chunk(&docs), "zzz qqq", 100);
        assert!(kept.iter().any(|c| c.doc == 0 && c.seq == 0));
        assert!(kept.iter().any(|c| c.doc == 1 && c.seq == 0));
    }
}
