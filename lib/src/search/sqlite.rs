//! The search log in the embedded SQLite database, beside the conversations (one more schema
//! version, [`MIGRATION`]). The watermark is the row sequence: a read asks for `seq > watermark`.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{EntryKind, LogPage, SearchEntry, SearchLog};
use crate::domain::{ConversationId, FileId, Owner, Timestamp};
use crate::store::sqlite::{unavailable, SqliteStore};
use crate::store::StoreError;

/// Entries per owner in append order, and each owner's generation.
pub const MIGRATION: &str = r#"
CREATE TABLE search_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    conversation_id TEXT,
    message_id TEXT,
    file_id TEXT,
    chunk INTEGER,
    label TEXT,
    created_at INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (owner, id)
);
CREATE INDEX search_entries_by_owner ON search_entries (owner, seq);
CREATE INDEX search_entries_by_conversation ON search_entries (owner, conversation_id);
CREATE INDEX search_entries_by_file ON search_entries (owner, file_id);
CREATE TABLE search_generations (
    owner TEXT NOT NULL PRIMARY KEY,
    generation INTEGER NOT NULL
) WITHOUT ROWID;
"#;

fn generation(c: &Connection, owner: &str) -> Result<u64, StoreError> {
    let g: Option<i64> = c
        .query_row(
            "SELECT generation FROM search_generations WHERE owner = ?1",
            params![owner],
            |r| r.get(0),
        )
        .optional()
        .map_err(unavailable)?;
    Ok(g.unwrap_or(0).max(0) as u64)
}

fn bump(c: &Connection, owner: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO search_generations (owner, generation) VALUES (?1, 1)
         ON CONFLICT (owner) DO UPDATE SET generation = generation + 1",
        params![owner],
    )
    .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl SearchLog for SqliteStore {
    async fn append(&self, owner: &Owner, entries: &[SearchEntry]) -> Result<(), StoreError> {
        let owner = owner.as_str().to_owned();
        let entries = entries.to_vec();
        self.with_later(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            for e in &entries {
                // A new row (a new seq) for an id appended again, so that readers see it again.
                tx.execute(
                    "DELETE FROM search_entries WHERE owner = ?1 AND id = ?2",
                    params![owner, e.id],
                )
                .map_err(unavailable)?;
                tx.execute(
                    "INSERT INTO search_entries (owner, id, kind, conversation_id, message_id, \
                     file_id, chunk, label, created_at, text, vector) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        owner,
                        e.id,
                        e.kind.as_str(),
                        e.conversation_id.as_ref().map(|x| x.as_str().to_owned()),
                        e.message_id.as_ref().map(|x| x.as_str().to_owned()),
                        e.file_id.as_ref().map(|x| x.as_str().to_owned()),
                        e.chunk,
                        e.label,
                        e.created_at.millis(),
                        e.text,
                        e.vector,
                    ],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn read(&self, owner: &Owner, after: Option<&str>) -> Result<LogPage, StoreError> {
        let after: i64 = match after {
            None => 0,
            Some(w) => w.parse().map_err(|_| StoreError::InvalidCursor)?,
        };
        let owner = owner.as_str().to_owned();
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let generation = generation(&tx, &owner)?;
            let mut last = after;
            let mut entries = Vec::new();
            {
                let mut stmt = tx
                    .prepare(
                        "SELECT seq, id, kind, conversation_id, message_id, file_id, chunk, label, \
                         created_at, text, vector FROM search_entries \
                         WHERE owner = ?1 AND seq > ?2 ORDER BY seq",
                    )
                    .map_err(unavailable)?;
                let mut rows = stmt.query(params![owner, after]).map_err(unavailable)?;
                while let Some(r) = rows.next().map_err(unavailable)? {
                    let seq: i64 = r.get(0).map_err(unavailable)?;
                    let kind: String = r.get(2).map_err(unavailable)?;
                    let kind = EntryKind::parse(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("search entry of unknown kind {kind}"))
                    })?;
                    last = last.max(seq);
                    entries.push(SearchEntry {
                        id: r.get(1).map_err(unavailable)?,
                        kind,
                        conversation_id: r
                            .get::<_, Option<String>>(3)
                            .map_err(unavailable)?
                            .map(ConversationId::from),
                        message_id: r
                            .get::<_, Option<String>>(4)
                            .map_err(unavailable)?
                            .map(Into::into),
                        file_id: r
                            .get::<_, Option<String>>(5)
                            .map_err(unavailable)?
                            .map(FileId::from),
                        chunk: r.get(6).map_err(unavailable)?,
                        label: r.get(7).map_err(unavailable)?,
                        created_at: Timestamp::from_millis(r.get(8).map_err(unavailable)?),
                        text: r.get(9).map_err(unavailable)?,
                        vector: r.get(10).map_err(unavailable)?,
                    });
                }
            }
            tx.commit().map_err(unavailable)?;
            Ok(LogPage {
                entries,
                watermark: (last > 0).then(|| last.to_string()),
                generation,
            })
        })
        .await
    }

    async fn remove_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<(), StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), id.as_str().to_owned());
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            tx.execute(
                "DELETE FROM search_entries WHERE owner = ?1 AND conversation_id = ?2",
                params![owner, id],
            )
            .map_err(unavailable)?;
            bump(&tx, &owner)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn remove_file(&self, owner: &Owner, id: &FileId) -> Result<(), StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), id.as_str().to_owned());
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            tx.execute(
                "DELETE FROM search_entries WHERE owner = ?1 AND file_id = ?2",
                params![owner, id],
            )
            .map_err(unavailable)?;
            bump(&tx, &owner)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::contract::Subject;
    use crate::store::sqlite::SqliteStore;

    crate::search_log_contract_tests!(contract, async {
        Some(Subject::new(SqliteStore::in_memory().unwrap()))
    });
}
