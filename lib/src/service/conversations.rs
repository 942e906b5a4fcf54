//! Listing, reading, renaming, deleting and exporting conversations.

use crate::api::ApiError;
use crate::blobs::keys;
use crate::domain::{
    Conversation, ConversationId, Message, Owner, Page, Role, Timestamp, MAX_TITLE_CHARS,
};
use crate::store::PageRequest;
use crate::AppState;

/// The default and largest page sizes of `API.md`.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page size.
pub const MAX_LIMIT: u32 = 200;

/// A page request from `?limit=&cursor=`: 1–200, 50 when absent.
pub fn page_request(limit: Option<u32>, cursor: Option<String>) -> Result<PageRequest, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(PageRequest {
        limit,
        cursor: cursor.filter(|c| !c.is_empty()),
    })
}

/// One conversation, or 404.
pub async fn get(
    state: &AppState,
    owner: &Owner,
    id: &ConversationId,
) -> Result<Conversation, ApiError> {
    state
        .store
        .get_conversation(owner, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("No such conversation.".into()))
}

/// Most recently updated first; `query` filters by title and message text.
pub async fn list(
    state: &AppState,
    owner: &Owner,
    page: PageRequest,
    query: Option<&str>,
) -> Result<Page<Conversation>, ApiError> {
    if query.is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::BadRequest(
            "The search text is too long (200 characters at most).".into(),
        ));
    }
    Ok(state.store.list_conversations(owner, &page, query).await?)
}

/// Messages oldest first.
pub async fn messages(
    state: &AppState,
    owner: &Owner,
    id: &ConversationId,
    page: PageRequest,
) -> Result<Page<Message>, ApiError> {
    get(state, owner, id).await?;
    Ok(state.store.list_messages(owner, id, &page).await?)
}

/// The user renames: 1–200 characters after trimming.
pub async fn rename(
    state: &AppState,
    owner: &Owner,
    id: &ConversationId,
    title: &str,
) -> Result<Conversation, ApiError> {
    let title = title.trim();
    let n = title.chars().count();
    if n == 0 {
        return Err(ApiError::Unprocessable("The title cannot be empty.".into()));
    }
    if n > MAX_TITLE_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "The title is {n} characters; the limit is {MAX_TITLE_CHARS}."
        )));
    }
    if title.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(
            "The title cannot contain control characters.".into(),
        ));
    }
    state
        .store
        .rename_conversation(owner, id, title, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::NotFound("No such conversation.".into()))
}

/// Deletes a conversation, its messages, its file records and their bytes.
pub async fn delete(state: &AppState, owner: &Owner, id: &ConversationId) -> Result<(), ApiError> {
    let files = state
        .store
        .delete_conversation(owner, id)
        .await?
        .ok_or_else(|| ApiError::NotFound("No such conversation.".into()))?;
    for f in files {
        // The records are gone; a blob that fails to go is logged, not fatal to the request.
        if let Err(e) = state
            .blobs
            .delete_prefix(&keys::file_prefix(owner, &f.id))
            .await
        {
            tracing::warn!(file = %f.id, error = %e, "could not delete a deleted conversation's file bytes");
        }
    }
    Ok(())
}

/// Every message of a conversation, oldest first.
pub async fn all_messages(
    state: &AppState,
    owner: &Owner,
    id: &ConversationId,
) -> Result<Vec<Message>, ApiError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .store
            .list_messages(
                owner,
                id,
                &PageRequest {
                    limit: MAX_LIMIT,
                    cursor,
                },
            )
            .await?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// The conversation as a Markdown document.
pub fn to_markdown(conversation: &Conversation, messages: &[Message]) -> String {
    let mut out = format!("# {}\n\n", conversation.title);
    out.push_str(&format!(
        "_Exported from Conversa — created {}_\n\n",
        conversation.created_at.to_rfc3339()
    ));
    for m in messages {
        let who = match m.role {
            Role::User => "You",
            Role::Assistant => "Assistant",
        };
        out.push_str(&format!("## {who} — {}\n\n", m.created_at.to_rfc3339()));
        if !m.files.is_empty() {
            let names: Vec<&str> = m.files.iter().map(|f| f.filename.as_str()).collect();
            out.push_str(&format!("Attached: {}\n\n", names.join(", ")));
        }
        out.push_str(m.content.trim_end());
        out.push_str("\n\n");
    }
    out
}
