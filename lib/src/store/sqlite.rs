//! The embedded store: SQLite in one file under the data directory, WAL mode, versioned migrations
//! (`PRAGMA user_version`). One thread owns the connection and runs the calls, first come first
//! served, each answered through its own channel: a thousand turns waiting on the store cost a
//! queued closure each, not a parked thread. Writes nobody waits on to go on (the turn log's
//! batches, the search log) wait until no other call is queued, so that a turn's first writes do
//! not queue behind them.

use std::path::Path;
use std::sync::{mpsc, Arc};

use async_trait::async_trait;
use rusqlite::{params, Connection, Row};

use super::cursor::page;
use super::record::{self, Fields};
use super::{PageRequest, Store, StoreError, TurnStart};
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
    // Message trees: each message names its parent; a conversation its current leaf and the answer
    // being generated. A history written before is linear: each message's parent is the one before
    // it, and the last one is the current leaf.
    r#"
ALTER TABLE messages ADD COLUMN parent_id TEXT;
ALTER TABLE conversations ADD COLUMN current_message_id TEXT;
ALTER TABLE conversations ADD COLUMN generating_message_id TEXT;
UPDATE messages SET parent_id = (
    SELECT p.id FROM messages p
    WHERE p.owner = messages.owner AND p.conversation_id = messages.conversation_id
      AND (p.created_at < messages.created_at OR (p.created_at = messages.created_at AND p.id < messages.id))
    ORDER BY p.created_at DESC, p.id DESC LIMIT 1
);
UPDATE conversations SET current_message_id = (
    SELECT m.id FROM messages m
    WHERE m.owner = conversations.owner AND m.conversation_id = conversations.id
    ORDER BY m.created_at DESC, m.id DESC LIMIT 1
);
"#,
    // The turn log (`turns::sqlite`): one row per turn, one per batch of its events.
    r#"
CREATE TABLE turn_logs (
    owner TEXT NOT NULL,
    turn TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    stop INTEGER NOT NULL DEFAULT 0,
    last_id INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (owner, turn)
) WITHOUT ROWID;
CREATE INDEX turn_logs_by_expiry ON turn_logs (expires_at);
CREATE INDEX turn_logs_by_conversation ON turn_logs (owner, conversation_id);
CREATE TABLE turn_log_entries (
    owner TEXT NOT NULL,
    turn TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (owner, turn, last_id)
) WITHOUT ROWID;
"#,
    crate::ledger::sqlite::MIGRATION,
    // The passages an answer cites (JSON; NULL when it cites none).
    r#"
ALTER TABLE messages ADD COLUMN citations TEXT;
"#,
    crate::search::sqlite::MIGRATION,
];

/// A call waiting for the store's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A call, and whether it may wait behind the others ([`SqliteStore::with_later`]).
struct Call {
    job: Job,
    later: bool,
}

/// SQLite on its own thread, fed by a channel (cheap to clone: every clone queues on the same
/// thread). The thread ends, closing the database, when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    jobs: mpsc::Sender<Call>,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
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

    /// This store, with the accounts and the turn log in its database, as the application holds
    /// them.
    pub fn with_turn_log(self) -> crate::app::Stores {
        let turns = crate::turns::sqlite::SqliteTurnLog::new(self.clone());
        let search = Arc::new(self.clone());
        crate::app::Stores::of(self, Arc::new(turns)).with_search(search)
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
        let (jobs, queue) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("conversa-sqlite".into())
            .spawn(move || serve(conn, queue))
            .map_err(|e| StoreError::Unavailable(format!("the store thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the connection, on the store's thread, after the calls queued before it. A call
    /// whose caller has gone still runs (a write is not lost halfway); its answer is dropped.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call(f, false).await
    }

    /// As [`SqliteStore::with`], for a write nobody waits on to go on (the turn log's batches, the
    /// search log): it runs once no call made with `with` is queued, in order with the other such
    /// writes. Each caller awaits its own calls, so what one caller does stays in its order.
    pub(crate) async fn with_later<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call(f, true).await
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        later: bool,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |c: &mut Connection| {
            let _ = reply.send(f(c));
        });
        self.jobs
            .send(Call { job, later })
            .map_err(|_| StoreError::Unavailable("the store thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the store call failed before answering".into()))?
    }
}

/// The store's thread: runs the queued calls in order until every sender is gone. A call that
/// panics is logged and answers nothing (its caller gets an error; an open transaction is rolled
/// back as it unwinds); the thread goes on with the next.
fn serve(mut conn: Connection, queue: mpsc::Receiver<Call>) {
    let mut later: std::collections::VecDeque<Job> = std::collections::VecDeque::new();
    loop {
        // Everything queued is taken; a `with` call runs at once, a `with_later` one when nothing
        // else is queued.
        let job = match queue.try_recv() {
            Ok(Call { job, later: false }) => job,
            Ok(Call { job, later: true }) => {
                later.push_back(job);
                continue;
            }
            Err(_) => match later.pop_front() {
                Some(job) => job,
                None => match queue.recv() {
                    Ok(Call { job, later: false }) => job,
                    Ok(Call { job, later: true }) => {
                        later.push_back(job);
                        continue;
                    }
                    Err(_) => return,
                },
            },
        };
        let run = std::panic::AssertUnwindSafe(|| job(&mut conn));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("a store call panicked; the store goes on with the next call");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
}

impl SqliteStore {
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
        "INSERT INTO conversations (owner, id, title, title_is_default, message_count, created_at, updated_at, current_message_id, generating_message_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut st| {
        st.execute(params![
            owner.as_str(),
            conv.id.as_str(),
            conv.title,
            conv.title == DEFAULT_TITLE,
            conv.message_count as i64,
            conv.created_at.to_rfc3339(),
            conv.updated_at.to_rfc3339(),
            conv.current_message_id.as_ref().map(MessageId::as_str),
            conv.generating_message_id.as_ref().map(MessageId::as_str)
        ])
    })
    .map_err(unavailable)?;
    Ok(())
}

/// Counts `n` new messages on a conversation: `message_count`, `updated_at` (never back), the
/// current leaf and, when given, the answer being generated. An error when it does not exist.
fn count_messages(
    c: &Connection,
    owner: &Owner,
    conversation: &ConversationId,
    n: i64,
    at: Timestamp,
    leaf: &MessageId,
    generating: Option<&MessageId>,
) -> Result<(), StoreError> {
    let changed = c
        .prepare_cached(
            "UPDATE conversations SET message_count = message_count + ?3, updated_at = MAX(updated_at, ?4), \
             current_message_id = ?5, generating_message_id = COALESCE(?6, generating_message_id) \
             WHERE owner = ?1 AND id = ?2",
        )
        .and_then(|mut st| {
            st.execute(params![
                owner.as_str(),
                conversation.as_str(),
                n,
                at.to_rfc3339(),
                leaf.as_str(),
                generating.map(MessageId::as_str)
            ])
        })
        .map_err(unavailable)?;
    if changed == 0 {
        return Err(StoreError::Corrupt(format!(
            "conversation {conversation} does not exist"
        )));
    }
    Ok(())
}

/// Inserts a message row (inside the caller's transaction).
fn insert_message(c: &Connection, owner: &Owner, m: &Message) -> Result<(), StoreError> {
    let files_json = record::files_json(&m.files)?;
    let usage_json = record::receipt_json(m.usage.as_ref())?;
    let citations_json = record::citations_json(&m.citations)?;
    c.prepare_cached(&format!(
        "INSERT INTO messages (owner, {MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
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
            usage_json,
            m.parent_id.as_ref().map(MessageId::as_str),
            citations_json
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

const CONVERSATION_COLUMNS: &str =
    "id, title, message_count, created_at, updated_at, current_message_id, generating_message_id";
const MESSAGE_COLUMNS: &str = "id, conversation_id, role, content, files, token_count, status, created_at, usage, parent_id, citations";

/// [`MESSAGE_COLUMNS`] of the table aliased `m`.
fn message_columns_of_m() -> String {
    MESSAGE_COLUMNS
        .split(", ")
        .map(|c| format!("m.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

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

    async fn begin_turn(&self, owner: &Owner, turn: &TurnStart) -> Result<(), StoreError> {
        let (owner, turn) = (owner.clone(), turn.clone());
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            if turn.created {
                insert_conversation(&tx, &owner, &turn.conversation)?;
            }
            let mut n = 1;
            if let Some(user) = &turn.user {
                insert_message(&tx, &owner, user)?;
                n += 1;
            }
            insert_message(&tx, &owner, &turn.answer)?;
            let a = &turn.answer;
            count_messages(
                &tx,
                &owner,
                &a.conversation_id,
                n,
                a.created_at,
                &a.id,
                Some(&a.id),
            )?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn finish_turn(&self, owner: &Owner, answer: &Message) -> Result<(), StoreError> {
        let (owner, m) = (owner.clone(), answer.clone());
        let usage = record::receipt_json(m.usage.as_ref())?;
        let citations = record::citations_json(&m.citations)?;
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let n = tx
                .execute(
                    "UPDATE messages SET content = ?3, token_count = ?4, status = ?5, usage = ?6, citations = ?7 WHERE owner = ?1 AND id = ?2",
                    params![owner.as_str(), m.id.as_str(), m.content, m.token_count as i64, m.status.as_str(), usage, citations],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Err(StoreError::Corrupt(format!("answer {} is not stored", m.id)));
            }
            tx.execute(
                "UPDATE conversations SET generating_message_id = NULL \
                 WHERE owner = ?1 AND id = ?2 AND generating_message_id = ?3",
                params![owner.as_str(), m.conversation_id.as_str(), m.id.as_str()],
            )
            .map_err(unavailable)?;
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
            // The turn logs of its answers go too (they hold the answers' text).
            tx.execute(
                "DELETE FROM turn_log_entries WHERE owner = ?1 AND turn IN \
                 (SELECT turn FROM turn_logs WHERE owner = ?1 AND conversation_id = ?2)",
                params![owner.as_str(), id.as_str()],
            )
            .map_err(unavailable)?;
            tx.execute(
                "DELETE FROM turn_logs WHERE owner = ?1 AND conversation_id = ?2",
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
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            count_messages(
                &tx,
                &owner,
                &m.conversation_id,
                1,
                m.created_at,
                &m.id,
                None,
            )?;
            insert_message(&tx, &owner, &m)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn update_message(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        let (owner, m) = (owner.clone(), m.clone());
        let usage = record::receipt_json(m.usage.as_ref())?;
        let citations = record::citations_json(&m.citations)?;
        self.with(move |c| {
            c.execute(
                "UPDATE messages SET content = ?3, token_count = ?4, status = ?5, usage = ?6, citations = ?7 WHERE owner = ?1 AND id = ?2",
                params![owner.as_str(), m.id.as_str(), m.content, m.token_count as i64, m.status.as_str(), usage, citations],
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

    async fn branch(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        leaf: &MessageId,
        limit: Option<u32>,
    ) -> Result<Vec<Message>, StoreError> {
        let (owner, conv, leaf) = (owner.clone(), conversation.clone(), leaf.clone());
        let limit = limit.map_or(i64::MAX, i64::from);
        self.with(move |c| {
            if limit == 0 {
                return Ok(vec![]);
            }
            let m_columns = message_columns_of_m();
            query(
                c,
                &format!(
                    "WITH RECURSIVE up AS ( \
                       SELECT {MESSAGE_COLUMNS}, 1 AS depth FROM messages WHERE owner = ?1 AND conversation_id = ?2 AND id = ?3 \
                       UNION ALL \
                       SELECT {m_columns}, up.depth + 1 FROM messages m JOIN up ON m.owner = ?1 AND m.conversation_id = ?2 AND m.id = up.parent_id \
                       WHERE up.depth < ?4) \
                     SELECT {MESSAGE_COLUMNS} FROM up ORDER BY depth DESC"
                ),
                params![owner.as_str(), conv.as_str(), leaf.as_str(), limit],
                message,
            )
        })
        .await
    }

    async fn set_current(
        &self,
        owner: &Owner,
        id: &ConversationId,
        leaf: &MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        let (owner, conv, leaf) = (owner.clone(), id.clone(), leaf.clone());
        self.with(move |c| {
            let set = query_one(
                c,
                &format!(
                    "UPDATE conversations SET current_message_id = ?3 WHERE owner = ?1 AND id = ?2 \
                     AND EXISTS (SELECT 1 FROM messages WHERE owner = ?1 AND conversation_id = ?2 AND id = ?3) \
                     RETURNING {CONVERSATION_COLUMNS}"
                ),
                params![owner.as_str(), conv.as_str(), leaf.as_str()],
                conversation,
            )?;
            if set.is_some() {
                return Ok(set);
            }
            let exists = query_one(
                c,
                &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE owner = ?1 AND id = ?2"),
                params![owner.as_str(), conv.as_str()],
                conversation,
            )?;
            match exists {
                None => Ok(None),
                Some(_) => Err(StoreError::Corrupt(format!(
                    "message {leaf} is not in conversation {conv}"
                ))),
            }
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

    /// Calls run in the order they were made, one at a time, however many wait at once.
    #[tokio::test]
    async fn concurrent_calls_run_one_at_a_time_in_the_order_they_were_made() {
        let store = SqliteStore::in_memory().unwrap();
        let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
        let calls = (0..500).map(|i| {
            let (store, ran) = (store.clone(), ran.clone());
            async move {
                store
                    .with(move |c| {
                        ran.lock().unwrap().push(i);
                        c.query_row("SELECT ?1", [i], |r| r.get::<_, i64>(0))
                            .map_err(unavailable)
                    })
                    .await
            }
        });
        // `join_all` polls each call once in order, so each is queued in that order.
        let answers = futures::future::join_all(calls).await;
        let answers: Vec<i64> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, (0..500).collect::<Vec<_>>());
        assert_eq!(*ran.lock().unwrap(), (0..500).collect::<Vec<_>>());
    }

    /// A call that fails, or panics inside a transaction, answers with an error and rolls back; the
    /// store goes on serving.
    #[tokio::test]
    async fn the_store_survives_a_failing_or_panicking_call() {
        let store = SqliteStore::in_memory().unwrap();
        let failed = store
            .with(|c| c.execute_batch("NOT SQL").map_err(unavailable))
            .await;
        assert!(matches!(failed, Err(StoreError::Unavailable(_))));
        let panicked = store
            .with(|c| -> Result<(), StoreError> {
                let tx = c.transaction().map_err(unavailable)?;
                tx.execute_batch(
                    "INSERT INTO files (owner, id, conversation_id, body) VALUES ('o', 'f', NULL, '{}')",
                )
                .map_err(unavailable)?;
                panic!("a bug in a store call");
            })
            .await;
        assert!(matches!(panicked, Err(StoreError::Unavailable(_))));
        let rows: i64 = store
            .with(|c| {
                c.query_row("SELECT COUNT(*) FROM files", [], |r| r.get(0))
                    .map_err(unavailable)
            })
            .await
            .unwrap();
        assert_eq!(rows, 0, "the panicking call's write was rolled back");
        store.health().await.unwrap();
    }

    /// A caller that gives up while its call waits (or runs) does not stop the store: its call still
    /// runs, and the calls behind it are answered.
    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_wedge_the_store() {
        let store = SqliteStore::in_memory().unwrap();
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        // The first call blocks the store's thread until released.
        let blocker = store.with(move |_| {
            let _ = started.send(());
            held.recv().map_err(unavailable)
        });
        let write = store.with(|c| {
            c.execute_batch(
                "INSERT INTO files (owner, id, conversation_id, body) VALUES ('o', 'gone', NULL, '{}')",
            )
            .map_err(unavailable)
        });
        {
            // Both are queued, then both callers give up.
            let mut blocker = Box::pin(blocker);
            let mut write = Box::pin(write);
            assert!(futures::poll!(blocker.as_mut()).is_pending());
            assert!(futures::poll!(write.as_mut()).is_pending());
            running.await.unwrap();
        }
        hold.send(()).unwrap();
        let rows: i64 = store
            .with(|c| {
                c.query_row("SELECT COUNT(*) FROM files WHERE id = 'gone'", [], |r| {
                    r.get(0)
                })
                .map_err(unavailable)
            })
            .await
            .unwrap();
        assert_eq!(rows, 1, "the abandoned write still ran");
    }

    /// A call someone waits on goes before the writes queued with `with_later`; those keep their
    /// own order.
    #[tokio::test]
    async fn a_waited_on_call_goes_before_queued_later_writes() {
        let store = SqliteStore::in_memory().unwrap();
        let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let blocker = store.with(move |_| {
            let _ = started.send(());
            held.recv().map_err(unavailable)
        });
        let mark = |what: &'static str| {
            let ran = ran.clone();
            move |_: &mut Connection| {
                ran.lock().unwrap().push(what);
                Ok::<_, StoreError>(())
            }
        };
        let mut blocker = Box::pin(blocker);
        assert!(futures::poll!(blocker.as_mut()).is_pending());
        running.await.unwrap();
        // Queued while the thread is busy: two later writes, then a call someone waits on.
        let mut first = Box::pin(store.with_later(mark("later 1")));
        let mut second = Box::pin(store.with_later(mark("later 2")));
        let mut now = Box::pin(store.with(mark("now")));
        assert!(futures::poll!(first.as_mut()).is_pending());
        assert!(futures::poll!(second.as_mut()).is_pending());
        assert!(futures::poll!(now.as_mut()).is_pending());
        hold.send(()).unwrap();
        blocker.await.unwrap();
        now.await.unwrap();
        first.await.unwrap();
        second.await.unwrap();
        assert_eq!(*ran.lock().unwrap(), vec!["now", "later 1", "later 2"]);
    }

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
            current_message_id: None,
            generating_message_id: None,
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

    /// A database written by the release before message trees (`conversa-local` of that release,
    /// three conversations sent through its API: two turns; one turn with a file; one turn whose
    /// model failed) is migrated when opened: each history becomes one branch, its last message
    /// the current leaf, and it continues from there.
    #[tokio::test]
    async fn a_database_of_the_release_before_message_trees_is_migrated() {
        use crate::store::TurnStart;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conversa.db");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/sqlite-before-message-trees.db"
            ),
            &path,
        )
        .unwrap();
        let store = SqliteStore::open(&path).unwrap();
        let owner = Owner::local();
        let two_turns = ConversationId::from("01a232a2-5546-7051-9149-70ee074ba9b7");
        let ids = [
            "01a232a2-5546-7051-9149-70ef4b4fd2eb",
            "01a232a2-5546-7051-9149-70f02316e39a",
            "01a232a2-573a-7001-963f-28bc0e3b389f",
            "01a232a2-573a-7001-963f-28bd9486dab1",
        ];
        let c = store
            .get_conversation(&owner, &two_turns)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.current_message_id, Some(MessageId::from(ids[3])));
        assert_eq!(c.generating_message_id, None);
        assert_eq!(c.message_count, 4);
        let branch = store
            .branch(&owner, &two_turns, &MessageId::from(ids[3]), None)
            .await
            .unwrap();
        let got: Vec<&str> = branch.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(got, ids);
        assert_eq!(branch[0].parent_id, None);
        for pair in branch.windows(2) {
            assert_eq!(pair[1].parent_id.as_ref(), Some(&pair[0].id));
        }
        assert!(branch[1].usage.is_some(), "receipts survive");
        // Every conversation has its leaf, the failed answer's one too.
        let listed = store
            .list_conversations(
                &owner,
                &PageRequest {
                    limit: 10,
                    cursor: None,
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 3);
        let failed = listed
            .items
            .iter()
            .find(|c| c.id.as_str() == "01a232a2-58fe-72de-89bb-763db686e941")
            .unwrap();
        assert_eq!(
            failed.current_message_id,
            Some(MessageId::from("01a232a2-58ff-755f-a4a0-3081cd7126b0"))
        );
        let with_file = store
            .get_message(
                &owner,
                &MessageId::from("01a232a2-57c5-73d9-8cf1-e42c089729d8"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(with_file.files[0].filename, "notes.txt");
        // The conversation goes on from its leaf.
        let now = Timestamp::now();
        let question = Message {
            id: MessageId::generate(),
            conversation_id: two_turns.clone(),
            parent_id: Some(MessageId::from(ids[3])),
            role: crate::domain::Role::User,
            content: "And by the sea?".into(),
            files: vec![],
            token_count: 4,
            status: crate::domain::MessageStatus::Complete,
            created_at: now,
            usage: None,
            citations: vec![],
        };
        let answer = Message {
            id: MessageId::generate(),
            parent_id: Some(question.id.clone()),
            role: crate::domain::Role::Assistant,
            content: String::new(),
            status: crate::domain::MessageStatus::Incomplete,
            ..question.clone()
        };
        store
            .begin_turn(
                &owner,
                &TurnStart {
                    conversation: c,
                    created: false,
                    user: Some(question),
                    answer: answer.clone(),
                },
            )
            .await
            .unwrap();
        let branch = store
            .branch(&owner, &two_turns, &answer.id, None)
            .await
            .unwrap();
        assert_eq!(branch.len(), 6);
        assert_eq!(branch[3].id.as_str(), ids[3]);
    }
}
