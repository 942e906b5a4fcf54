//! What the model sees for a turn: the system prompt, recent history, the text of attached files
//! (labelled with their names), and images for vision models.

use bytes::Bytes;

use crate::api::ApiError;
use crate::blobs::keys;
use crate::domain::{FileMeta, FileType, Message, MessageStatus, Owner, Role};
use crate::llm::{ChatMessage, ChatRole, Part};
use crate::AppState;

/// Upper bound on file text sent in one request, in characters (about 100k tokens).
pub const MAX_FILE_CHARS: usize = 400_000;

/// Wraps a file's text so the model knows where it starts, ends and comes from.
pub fn file_block(meta: &FileMeta, text: &str) -> String {
    let mut attrs = format!(
        "name=\"{}\" type=\"{}\"",
        meta.filename.replace('"', "'"),
        meta.file_type.as_str()
    );
    if let Some(p) = meta.pages {
        attrs.push_str(&format!(" pages=\"{p}\""));
    }
    format!("<file {attrs}>\n{}\n</file>", text.trim())
}

async fn file_parts(
    state: &AppState,
    owner: &Owner,
    files: &[FileMeta],
    budget: &mut usize,
) -> Result<Vec<Part>, ApiError> {
    let mut parts = Vec::new();
    for f in files {
        if f.file_type == FileType::Image {
            match state.blobs.get(&keys::image(owner, &f.id)).await? {
                Some(data) => parts.push(Part::Image {
                    mime: image_mime(&data),
                    data,
                    name: f.filename.clone(),
                }),
                None => parts.push(Part::Text(format!(
                    "[The image {} is no longer available.]",
                    f.filename
                ))),
            }
            continue;
        }
        let text = state
            .blobs
            .get(&keys::text(owner, &f.id))
            .await?
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        if text.trim().is_empty() {
            parts.push(Part::Text(format!(
                "[The file {} has no readable text.]",
                f.filename
            )));
            continue;
        }
        let n = text.chars().count();
        if n <= *budget {
            *budget -= n;
            parts.push(Part::Text(file_block(f, &text)));
        } else {
            let kept: String = text.chars().take(*budget).collect();
            parts.push(Part::Text(format!(
                "{}\n[Only the first {} of {} characters of {} fit in this request; the rest was left out.]",
                file_block(f, &kept),
                kept.chars().count(),
                n,
                f.filename
            )));
            *budget = 0;
        }
    }
    Ok(parts)
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

/// The messages for one turn. `history` is the window before the current message, oldest first.
pub async fn build(
    state: &AppState,
    owner: &Owner,
    history: &[Message],
    text: &str,
    files: &[FileMeta],
) -> Result<Vec<ChatMessage>, ApiError> {
    let mut budget = MAX_FILE_CHARS;
    // The current turn's files come first in the budget: they matter most.
    let mut current = file_parts(state, owner, files, &mut budget).await?;
    let mut out = vec![ChatMessage::text(
        ChatRole::System,
        state.config.system_prompt.clone(),
    )];
    for m in history {
        if m.status == MessageStatus::Error && m.content.is_empty() {
            continue;
        }
        match m.role {
            Role::Assistant => out.push(ChatMessage::text(ChatRole::Assistant, m.content.clone())),
            Role::User => {
                let mut parts = file_parts(state, owner, &m.files, &mut budget).await?;
                // Images of earlier turns are named, not re-sent.
                for p in parts.iter_mut() {
                    if let Part::Image { name, .. } = p {
                        *p = Part::Text(format!("[An image, {name}, was attached earlier.]"));
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
    if !text.is_empty() {
        current.push(Part::Text(text.to_owned()));
    } else {
        current.push(Part::Text(
            "(The user sent the files above without a message.)".into(),
        ));
    }
    out.push(ChatMessage {
        role: ChatRole::User,
        parts: current,
    });
    Ok(out)
}
