//! What the model sees for a turn: the system prompt, recent history, the text of attached files
//! (labelled with their names) and images for vision models — always within the model's context
//! window. When the files of the turn and of the history window exceed their share of it, they are
//! cut into labelled chunks and only those most relevant to the question are sent, with a note
//! saying what was left out.

use bytes::Bytes;

use super::retrieval::{self, Doc};
use crate::api::ApiError;
use crate::blobs::keys;
use crate::domain::{FileMeta, FileType, Message, MessageStatus, Owner, Role};
use crate::llm::{ChatMessage, ChatRole, Part};
use crate::AppState;

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

fn image_mime(data: &Bytes) -> String {
    if data.starts_with(b"\x89PNG") {
        "image/png".into()
    } else if data.starts_with(b"GIF8") {
        "image/gif".into()
    } else if data.len() > 12 && &data[8..12] == b"WEBP" {
        "image/webp".into()
    } else {
        "image/jpeg".into()
    }
}

/// The token budget for file text in one request to `model`.
pub fn file_budget(state: &AppState, model: &str) -> u64 {
    let window = state.config.context_window(model) as f64;
    (window * state.config.file_context_share) as u64
}

/// A text file of the turn or of the history window, with its text.
struct Loaded {
    meta: FileMeta,
    text: String,
}

async fn load(
    state: &AppState,
    owner: &Owner,
    files: &[FileMeta],
) -> Result<Vec<Loaded>, ApiError> {
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.file_type != FileType::Image) {
        let bytes = state
            .blobs
            .get(&keys::text(owner, &f.id))
            .await?
            .unwrap_or_default();
        out.push(Loaded {
            meta: f.clone(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    Ok(out)
}

/// The text block of every loaded file, in order, fitting `budget` tokens together.
fn blocks(model: &str, loaded: &[Loaded], question: &str, budget: u64) -> Vec<String> {
    let total: u64 = loaded
        .iter()
        .map(|l| crate::tokens::estimate(&l.text))
        .sum();
    if total <= budget {
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
    let chunks = retrieval::chunk(&docs);
    let kept = retrieval::select(&chunks, question, budget);
    tracing::debug!(
        model,
        total,
        budget,
        chunks = chunks.len(),
        kept = kept.len(),
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
            let note = format!(
                "[{} is too long to send whole: only the parts most relevant to the question are included ({}; {} of {} parts). The rest was left out; say so if the answer may be there.]",
                l.meta.filename,
                labels.join(", "),
                mine.len(),
                all
            );
            file_block(&l.meta, &body, Some(&note))
        })
        .collect()
}

/// The messages for one turn. `history` is the window before the current message, oldest first.
pub async fn build(
    state: &AppState,
    owner: &Owner,
    model: &str,
    history: &[Message],
    text: &str,
    files: &[FileMeta],
) -> Result<Vec<ChatMessage>, ApiError> {
    let history: Vec<&Message> = history
        .iter()
        .filter(|m| !(m.status == MessageStatus::Error && m.content.is_empty()))
        .collect();
    // Every text file in play: the history window's, then this turn's.
    let mut all_files: Vec<FileMeta> = history
        .iter()
        .flat_map(|m| m.files.iter().cloned())
        .collect();
    all_files.extend(files.iter().cloned());
    let loaded = load(state, owner, &all_files).await?;
    // The question decides which parts of long files matter; the previous user message helps
    // follow-ups such as "and on the next page?".
    let previous = history
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let question = format!("{text}\n{previous}");
    let mut blocks = blocks(model, &loaded, &question, file_budget(state, model)).into_iter();
    let mut by_id = std::collections::HashMap::new();
    for l in &loaded {
        if let Some(b) = blocks.next() {
            by_id.insert(l.meta.id.clone(), b);
        }
    }

    let mut out = vec![ChatMessage::text(
        ChatRole::System,
        state.config.system_prompt.clone(),
    )];
    for m in history {
        match m.role {
            Role::Assistant => out.push(ChatMessage::text(ChatRole::Assistant, m.content.clone())),
            Role::User => {
                let mut parts = Vec::new();
                for f in &m.files {
                    match f.file_type {
                        // Images of earlier turns are named, not sent again.
                        FileType::Image => parts.push(Part::Text(format!(
                            "[An image, {}, was attached earlier.]",
                            f.filename
                        ))),
                        _ => parts.extend(by_id.get(&f.id).cloned().map(Part::Text)),
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
    for f in files {
        if f.file_type == FileType::Image {
            match state.blobs.get(&keys::image(owner, &f.id)).await? {
                Some(data) => current.push(Part::Image {
                    mime: image_mime(&data),
                    data,
                    name: f.filename.clone(),
                }),
                None => current.push(Part::Text(format!(
                    "[The image {} is no longer available.]",
                    f.filename
                ))),
            }
        } else {
            current.extend(by_id.get(&f.id).cloned().map(Part::Text));
        }
    }
    current.push(Part::Text(if text.is_empty() {
        "(The user sent the files above without a message.)".to_owned()
    } else {
        text.to_owned()
    }));
    out.push(ChatMessage {
        role: ChatRole::User,
        parts: current,
    });
    Ok(out)
}
