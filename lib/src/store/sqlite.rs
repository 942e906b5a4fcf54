//! The embedded store: SQLite in one file under the data directory, WAL mode, versioned migrations
//! (`PRAGMA user_version`). Calls run on the blocking pool; one connection serialises writes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, Row};

use super::cursor::page;
use super::record::{self, Fields};
use super::{PageRequest, Store, StoreError};
use crate::domain::{
    Conversation, ConversationId, FileId, FileMeta, Message, MessageId, Owner, Page, Timestamp,
    DEFAULT_TITLE,
};

/// Migrations in order; `user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE conversations (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    title_is_default INTEGER NOT NULL DEFAULT 1,
    message_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (owner, id)
) WITHOUT ROWID;
CREATE INDEX conversations_by_updated ON conversations (owner, updated_at DESC, id DESC);
CREATE TABLE messages (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    files TEXT NOT NULL,
    token_count INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (owner, id)
) WITHOUT ROWID;
CREATE INDEX messages_by_conversation ON messages (owner, conversation_id, created_at, id);
CREATE TABLE files (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    conversation_id TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (owner, id)
) WITHOUT ROWID;
CREATE INDEX files_by_conversation ON files (owner, conversation_id);
"#,
    r#"
ALTER TABLE messages ADD COLUMN usage TEXT;
"#,
    crate::accounts::sqlite::MIGRATION,
    crate::ledger::sqlite::MIGRATION,
];

/// SQLite behind a mutex.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating when needed) the database file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(unavailable)?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(unavailable)?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(unavailable)?;
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(unavailable)?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "the database is at schema version {version}, newer than this program ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(unavailable)?;
            tx.execute_batch(sql).map_err(unavailable)?;
            tx.pragma_update(None, "user_version", i + 1)
                .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection, on the blocking pool.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Unavailable("the store lock is poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    /// The one row `sql` finds for an owner (`?1`) and an id (`?2`).
    async fn by_id<T: Send + 'static>(
        &self,
        sql: String,
        owner: &Owner,
        id: &str,
        read: Read<T>,
    ) -> Result<Option<T>, StoreError> {
        let (owner, id) = (owner.as_str().to_owned(), id.to_owned());
        self.with(move |c| query_one(c, &sql, params![owner, id], read))
            .await
    }
}

fn insert_conversation(
    c: &Connection,
    owner: &Owner,
    conv: &Conversation,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO conversations (owner, id, title, title_is_default, message_count, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            owner.as_str(),
            conv.id.as_str(),
            conv.title,
            conv.title == DEFAULT_TITLE,
            conv.message_count as i64,
            conv.created_at.to_rfc3339(),
            conv.updated_at.to_rfc3339()
        ])
    })
    .map_err(unavailable)?;
    Ok(())
}

/// Inserts a message and counts it on its conversation (inside the caller's transaction).
fn append_message(
    c: &Connection,
    owner: &Owner,
    m: &Message,
    files_json: &str,
) -> Result<(), StoreError> {
    let usage_json = record::receipt_json(m.usage.as_ref())?;
    let n = c
        .prepare_cached(
            "UPDATE conversations SET message_count = message_count + 1, updated_at = MAX(updated_at, ?3) WHERE owner = ?1 AND id = ?2",
        )
        .and_then(|mut st| {
            st.execute(params![
                owner.as_str(),
                m.conversation_id.as_str(),
                m.created_at.to_rfc3339()
            ])
        })
        .map_err(unavailable)?;
    if n == 0 {
        return Err(StoreError::Corrupt(format!(
            "conversation {} does not exist",
            m.conversation_id
        )));
    }
    c.prepare_cached(&format!(
        "INSERT INTO messages (owner, {MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .and_then(|mut st| {
        st.execute(params![
            owner.as_str(),
            m.id.as_str(),
            m.conversation_id.as_str(),
            m.role.as_str(),
            m.content,
            files_json,
            m.token_count as i64,
            m.status.as_str(),
            m.created_at.to_rfc3339(),
            usage_json
        ])
    })
    .map_err(unavailable)?;
    Ok(())
}

impl Fields for Row<'_> {
    const ID: &'static str = "id";

    fn text(&self, name: &str) -> Result<String, StoreError> {
        self.get(name)
            .map_err(|e| StoreError::Corrupt(format!("`{name}`: {e}")))
    }

    fn whole(&self, name: &str) -> Result<i64, StoreError> {
        self.get(name)
            .map_err(|e| StoreError::Corrupt(format!("`{name}`: {e}")))
    }

    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.get(name)
            .map_err(|e| StoreError::Corrupt(format!("`{name}`: {e}")))
    }
}

/// Reads one row of a query.
type Read<T> = fn(&Row<'_>) -> Result<T, StoreError>;

/// A row of [`CONVERSATION_COLUMNS`].
fn conversation(r: &Row<'_>) -> Result<Conversation, StoreError> {
    r.conversation()
}

/// A row of [`MESSAGE_COLUMNS`].
fn message(r: &Row<'_>) -> Result<Message, StoreError> {
    r.message()
}

/// A file row's `body`.
fn file(r: &Row<'_>) -> Result<FileMeta, StoreError> {
    r.file()
}

/// Runs a query and reads every row it returns.
fn query<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: Read<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
    let mut rows = stmt.query(params).map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        out.push(read(row)?);
    }
    Ok(out)
}

/// The first row a query returns, or `None`.
fn query_one<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: Read<T>,
) -> Result<Option<T>, StoreError> {
    Ok(query(c, sql, params, read)?.into_iter().next())
}

fn like_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

const CONVERSATION_COLUMNS: &str = "id, title, message_count, created_at, updated_at";
const MESSAGE_COLUMNS: &str =
    "id, conversation_id, role, content, files, token_count, status, created_at, usage";

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable))
            .await
    }

    async fn create_conversation(
        &self,
        owner: &Owner,
        conv: &Conversation,
    ) -> Result<(), StoreError> {
        let (owner, conv) = (owner.clone(), conv.clone());
        self.with(move |c| insert_conversation(c, &owner, &conv))
            .await
    }

    async fn start_conversation(
        &self,
        owner: &Owner,
        conv: &Conversation,
        first: &Message,
    ) -> Result<(), StoreError> {
        let (owner, conv, first) = (owner.clone(), conv.clone(), first.clone());
        let files = record::files_json(&first.files)?;
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            insert_conversation(&tx, &owner, &conv)?;
            append_message(&tx, &owner, &first, &files)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn get_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE owner = ?1 AND id = ?2"
        );
        self.by_id(sql, owner, id.as_str(), conversation).await
    }

    async fn list_conversations(
        &self,
        owner: &Owner,
        request: &PageRequest,
        search: Option<&str>,
    ) -> Result<Page<Conversation>, StoreError> {
        let (owner, request) = (owner.clone(), request.clone());
        let after = request.after()?;
        let pattern = search
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(like_pattern);
        self.with(move |c| {
            let (after_key, after_id) = after.unwrap_or_else(|| ("\u{10FFFF}".to_owned(), String::new()));
            let sql = format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations cv WHERE owner = ?1 \
                 AND (updated_at < ?2 OR (updated_at = ?2 AND id < ?3) OR ?3 = '') \
                 AND (?4 IS NULL OR title LIKE ?4 ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m WHERE m.owner = cv.owner AND m.conversation_id = cv.id AND m.content LIKE ?4 ESCAPE '\\')) \
                 ORDER BY updated_at DESC, id DESC LIMIT ?5"
            );
            let fetch = request.fetch() as i64;
            let rows = query(c, &sql, params![owner.as_str(), after_key, after_id, pattern, fetch], conversation)?;
            Ok(page(rows, &request))
        })
        .await
    }

    async fn rename_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
        at: Timestamp,
    ) -> Result<Option<Conversation>, StoreError> {
        let (owner, id, title) = (owner.clone(), id.clone(), title.to_owned());
        self.with(move |c| {
            query_one(
                c,
                &format!("UPDATE conversations SET title = ?3, title_is_default = 0, updated_at = MAX(updated_at, ?4) WHERE owner = ?1 AND id = ?2 RETURNING {CONVERSATION_COLUMNS}"),
                params![owner.as_str(), id.as_str(), title, at.to_rfc3339()],
                conversation,
            )
        })
        .await
    }

    async fn set_auto_title(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
    ) -> Result<bool, StoreError> {
        let (owner, id, title) = (owner.clone(), id.clone(), title.to_owned());
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE conversations SET title = ?3, title_is_default = 0 WHERE owner = ?1 AND id = ?2 AND title_is_default = 1",
                    params![owner.as_str(), id.as_str(), title],
                )
                .map_err(unavailable)?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Vec<FileMeta>>, StoreError> {
        let (owner, id) = (owner.clone(), id.clone());
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let n = tx
                .execute(
                    "DELETE FROM conversations WHERE owner = ?1 AND id = ?2",
                    params![owner.as_str(), id.as_str()],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Ok(None);
            }
            let files = query(
                &tx,
                "DELETE FROM files WHERE owner = ?1 AND conversation_id = ?2 RETURNING body",
                params![owner.as_str(), id.as_str()],
                file,
            )?;
            tx.execute(
                "DELETE FROM messages WHERE owner = ?1 AND conversation_id = ?2",
                params![owner.as_str(), id.as_str()],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(Some(files))
        })
        .await
    }

    async fn add_message(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        let (owner, m) = (owner.clone(), m.clone());
        let files = record::files_json(&m.files)?;
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            append_message(&tx, &owner, &m, &files)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn update_message(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        let (owner, m) = (owner.clone(), m.clone());
        let usage = record::receipt_json(m.usage.as_ref())?;
        self.with(move |c| {
            c.execute(
                "UPDATE messages SET content = ?3, token_count = ?4, status = ?5, usage = ?6 WHERE owner = ?1 AND id = ?2",
                params![owner.as_str(), m.id.as_str(), m.content, m.token_count as i64, m.status.as_str(), usage],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn get_message(
        &self,
        owner: &Owner,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE owner = ?1 AND id = ?2");
        self.by_id(sql, owner, id.as_str(), message).await
    }

    async fn list_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        request: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let (owner, conv, request) = (owner.clone(), conversation.clone(), request.clone());
        let after = request.after()?;
        self.with(move |c| {
            let (after_key, after_id) = after.unwrap_or_default();
            let rows = query(
                c,
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE owner = ?1 AND conversation_id = ?2 \
                     AND (created_at > ?3 OR (created_at = ?3 AND id > ?4)) ORDER BY created_at, id LIMIT ?5"
                ),
                params![owner.as_str(), conv.as_str(), after_key, after_id, request.fetch() as i64],
                message,
            )?;
            Ok(page(rows, &request))
        })
        .await
    }

    async fn recent_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let (owner, conv) = (owner.clone(), conversation.clone());
        self.with(move |c| {
            let mut items: Vec<Message> = query(
                c,
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE owner = ?1 AND conversation_id = ?2 ORDER BY created_at DESC, id DESC LIMIT ?3"
                ),
                params![owner.as_str(), conv.as_str(), i64::from(limit)],
                message,
            )?;
            items.reverse();
            Ok(items)
        })
        .await
    }

    async fn put_file(&self, owner: &Owner, f: &FileMeta) -> Result<(), StoreError> {
        let owner = owner.clone();
        let body = record::file_json(f)?;
        let (id, conv) = (f.id.clone(), f.conversation_id.clone());
        self.with(move |c| {
            c.execute(
                "INSERT INTO files (owner, id, conversation_id, body) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (owner, id) DO UPDATE SET conversation_id = excluded.conversation_id, body = excluded.body",
                params![owner.as_str(), id.as_str(), conv.as_ref().map(ConversationId::as_str), body],
            )
            .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn get_file(&self, owner: &Owner, id: &FileId) -> Result<Option<FileMeta>, StoreError> {
        let sql = "SELECT body FROM files WHERE owner = ?1 AND id = ?2".to_owned();
        self.by_id(sql, owner, id.as_str(), file).await
    }

    async fn delete_file(&self, owner: &Owner, id: &FileId) -> Result<bool, StoreError> {
        let (owner, id) = (owner.clone(), id.clone());
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM files WHERE owner = ?1 AND id = ?2",
                    params![owner.as_str(), id.as_str()],
                )
                .map_err(unavailable)?;
            Ok(n > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Subject;

    crate::store_contract_tests!(contract, async {
        Some(Subject::new(SqliteStore::in_memory().unwrap()))
    });

    #[tokio::test]
    async fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conversa.db");
        let owner = Owner::local();
        let conv = Conversation {
            id: ConversationId::generate(),
            title: DEFAULT_TITLE.into(),
            message_count: 0,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create_conversation(&owner, &conv).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.get_conversation(&owner, &conv.id).await.unwrap(),
            Some(conv)
        );
    }

    /// A file row and a message's attachments exactly as written before the store had its own
    /// records (the API's JSON of `FileMeta`).
    #[tokio::test]
    async fn rows_written_in_the_earlier_format_read_back() {
        use crate::store::contract::{reads_back_the_earlier_format, EARLIER_FILE_JSON as BODY};
        let store = SqliteStore::in_memory().unwrap();
        store
            .with(move |c| {
                c.execute_batch(&format!(
                    "INSERT INTO files VALUES ('local', 'f-old', 'c-old', '{BODY}');
                     INSERT INTO messages (owner, id, conversation_id, role, content, files, token_count, status, created_at)
                         VALUES ('local', 'm-old', 'c-old', 'user', 'hi', '[{BODY}]', 1, 'complete', '2026-02-28T10:00:00.123Z');"
                ))
                .map_err(unavailable)
            })
            .await
            .unwrap();
        reads_back_the_earlier_format(&store, &Owner::local()).await;
    }

    /// A database written at the first schema version (messages without receipts) is migrated
    /// when opened, and its rows read back.
    #[tokio::test]
    async fn a_database_of_the_first_schema_is_migrated() {
        use crate::store::contract::{reads_back_the_earlier_format, EARLIER_FILE_JSON as BODY};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conversa.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute_batch(&format!(
                "INSERT INTO files VALUES ('local', 'f-old', 'c-old', '{BODY}');
                 INSERT INTO messages VALUES ('local', 'm-old', 'c-old', 'user', 'hi', '[{BODY}]', 1, 'complete', '2026-02-28T10:00:00.123Z');"
            ))
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        reads_back_the_earlier_format(&store, &Owner::local()).await;
        let version: usize = store
            .with(|c| {
                c.pragma_query_value(None, "user_version", |r| r.get(0))
                    .map_err(unavailable)
            })
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }
}
