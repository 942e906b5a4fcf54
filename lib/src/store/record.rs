//! The stored form of the records, apart from the API's types: each adapter reads its rows, items or
//! documents into these structs and converts them here, so a change to the API's JSON is never a
//! data migration, and a stored value is parsed in one place.
//!
//! File metadata (a file's row and a message's attachments) is stored as the JSON of
//! [`FileRecord`], whose field names are fixed here. They are the names the API used when files were
//! stored as its JSON, so rows written then read back unchanged.

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::{
    Citation, Conversation, FileMeta, FileStatus, FileType, MemorySource, Message, MessageStatus,
    Receipt, Role, Timestamp,
};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A stored time (RFC 3339).
pub fn time(s: &str) -> Result<Timestamp, StoreError> {
    Timestamp::parse(s).ok_or_else(|| corrupt(format!("bad timestamp {s}")))
}

/// A stored count: negative values (never written) read as 0.
fn count(n: i64) -> u64 {
    n.max(0) as u64
}

/// A file's metadata as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's id.
    pub id: String,
    /// The conversation it is attached to.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// The client's name for it.
    pub filename: String,
    /// The media type of the stored bytes.
    pub content_type: String,
    /// Bytes as uploaded.
    pub size: u64,
    /// The family (`pdf`, `docx`, …, the names of [`FileType::as_str`]).
    pub file_type: String,
    /// `processing`, `ready` or `failed`.
    pub status: String,
    /// Characters of extracted text.
    #[serde(default)]
    pub char_count: Option<u64>,
    /// Tokens of extracted text.
    #[serde(default)]
    pub token_count: Option<u64>,
    /// Pages or sheets.
    #[serde(default)]
    pub pages: Option<u32>,
    /// Why extraction failed.
    #[serde(default)]
    pub error: Option<String>,
    /// A remark on the extraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Extraction progress, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// When it was uploaded (RFC 3339).
    pub created_at: String,
}

impl From<&FileMeta> for FileRecord {
    fn from(f: &FileMeta) -> Self {
        Self {
            id: f.id.as_str().to_owned(),
            conversation_id: f.conversation_id.as_ref().map(|c| c.as_str().to_owned()),
            filename: f.filename.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
            file_type: f.file_type.as_str().to_owned(),
            status: f.status.as_str().to_owned(),
            char_count: f.char_count,
            token_count: f.token_count,
            pages: f.pages,
            error: f.error.clone(),
            note: f.note.clone(),
            progress: f.progress,
            created_at: f.created_at.to_rfc3339(),
        }
    }
}

impl TryFrom<FileRecord> for FileMeta {
    type Error = StoreError;

    fn try_from(r: FileRecord) -> Result<Self, StoreError> {
        Ok(Self {
            file_type: FileType::parse(&r.file_type)
                .ok_or_else(|| corrupt(format!("bad file type {}", r.file_type)))?,
            status: FileStatus::parse(&r.status)
                .ok_or_else(|| corrupt(format!("bad file status {}", r.status)))?,
            created_at: time(&r.created_at)?,
            id: r.id.into(),
            conversation_id: r.conversation_id.map(Into::into),
            filename: r.filename,
            content_type: r.content_type,
            size: r.size,
            char_count: r.char_count,
            token_count: r.token_count,
            pages: r.pages,
            error: r.error,
            note: r.note,
            progress: r.progress,
        })
    }
}

/// A file's metadata as the stored JSON text.
pub fn file_json(f: &FileMeta) -> Result<String, StoreError> {
    serde_json::to_string(&FileRecord::from(f)).map_err(corrupt)
}

/// A file's metadata from the stored JSON text.
pub fn file_from_json(json: &str) -> Result<FileMeta, StoreError> {
    serde_json::from_str::<FileRecord>(json)
        .map_err(corrupt)?
        .try_into()
}

/// A message's attachments as the stored JSON text (an array of [`FileRecord`]).
pub fn files_json(files: &[FileMeta]) -> Result<String, StoreError> {
    serde_json::to_string(&files.iter().map(FileRecord::from).collect::<Vec<_>>()).map_err(corrupt)
}

/// A message's attachments from the stored JSON text.
pub fn files_from_json(json: &str) -> Result<Vec<FileMeta>, StoreError> {
    serde_json::from_str::<Vec<FileRecord>>(json)
        .map_err(corrupt)?
        .into_iter()
        .map(FileMeta::try_from)
        .collect()
}

/// An answer's receipt as stored: JSON text with these field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    /// The id of the model that answered.
    pub model: String,
    /// Its provider.
    pub provider: String,
    /// Tokens of the request.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
    /// What it cost.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Until the first token.
    #[serde(default)]
    pub time_to_first_token_ms: Option<u64>,
    /// Until the end.
    #[serde(default)]
    pub duration_ms: u64,
}

/// A message's receipt as the stored JSON text (`None`: no receipt).
pub fn receipt_json(r: Option<&Receipt>) -> Result<Option<String>, StoreError> {
    r.map(|r| {
        serde_json::to_string(&ReceiptRecord {
            model: r.model.clone(),
            provider: r.provider.clone(),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cost_usd: r.cost_usd,
            time_to_first_token_ms: r.time_to_first_token_ms,
            duration_ms: r.duration_ms,
        })
        .map_err(corrupt)
    })
    .transpose()
}

/// A message's receipt from the stored JSON text.
pub fn receipt_from_json(json: Option<&str>) -> Result<Option<Receipt>, StoreError> {
    json.map(|j| {
        let r: ReceiptRecord = serde_json::from_str(j).map_err(corrupt)?;
        Ok(Receipt {
            model: r.model,
            provider: r.provider,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cost_usd: r.cost_usd,
            time_to_first_token_ms: r.time_to_first_token_ms,
            duration_ms: r.duration_ms,
        })
    })
    .transpose()
}

/// A citation as stored: one element of the JSON array of a message's `citations`, with these
/// field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CitationRecord {
    /// The number the answer cites it by.
    pub n: u32,
    /// The file's id (`null`: a message of another conversation, cited as memory).
    #[serde(default)]
    pub file_id: Option<String>,
    /// The file's name.
    #[serde(default)]
    pub filename: Option<String>,
    /// Its page.
    #[serde(default)]
    pub page: Option<u32>,
    /// Its sheet.
    #[serde(default)]
    pub sheet: Option<String>,
    /// The excerpt.
    #[serde(default)]
    pub snippet: String,
    /// The other conversation a passage of memory comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryRecord>,
}

/// The source of a cited passage of memory, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// The conversation's id.
    pub conversation_id: String,
    /// The message's id (`null`: a file attached to that conversation).
    #[serde(default)]
    pub message_id: Option<String>,
    /// The conversation's title.
    #[serde(default)]
    pub title: String,
}

/// A message's citations as the stored JSON text (`None`: none, so rows of messages that cite
/// nothing stay as they were).
pub fn citations_json(citations: &[Citation]) -> Result<Option<String>, StoreError> {
    if citations.is_empty() {
        return Ok(None);
    }
    let records: Vec<CitationRecord> = citations
        .iter()
        .map(|c| CitationRecord {
            n: c.n,
            file_id: c.file_id.as_ref().map(|f| f.as_str().to_owned()),
            filename: c.filename.clone(),
            page: c.page,
            sheet: c.sheet.clone(),
            snippet: c.snippet.clone(),
            memory: c.memory.as_ref().map(|m| MemoryRecord {
                conversation_id: m.conversation_id.as_str().to_owned(),
                message_id: m.message_id.as_ref().map(|id| id.as_str().to_owned()),
                title: m.title.clone(),
            }),
        })
        .collect();
    serde_json::to_string(&records).map(Some).map_err(corrupt)
}

/// A message's citations from the stored JSON text (absent: none, as on rows written before
/// citations).
pub fn citations_from_json(json: Option<&str>) -> Result<Vec<Citation>, StoreError> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let records: Vec<CitationRecord> = serde_json::from_str(json).map_err(corrupt)?;
    Ok(records
        .into_iter()
        .map(|r| Citation {
            n: r.n,
            file_id: r.file_id.map(Into::into),
            filename: r.filename,
            page: r.page,
            sheet: r.sheet,
            snippet: r.snippet,
            memory: r.memory.map(|m| MemorySource {
                conversation_id: m.conversation_id.into(),
                message_id: m.message_id.map(Into::into),
                title: m.title,
            }),
        })
        .collect())
}

/// A batch of a turn's log as stored: the JSON array `[[id, name, data], …]` (`data` is the
/// event's JSON document as text).
pub fn log_events_json(events: &[crate::turns::LoggedEvent]) -> Result<String, StoreError> {
    let rows: Vec<(u64, &str, &str)> = events
        .iter()
        .map(|e| (e.id, e.name.as_str(), e.data.as_str()))
        .collect();
    serde_json::to_string(&rows).map_err(corrupt)
}

/// A batch of a turn's log from the stored JSON text.
pub fn log_events_from_json(json: &str) -> Result<Vec<crate::turns::LoggedEvent>, StoreError> {
    let rows: Vec<(u64, String, String)> = serde_json::from_str(json).map_err(corrupt)?;
    Ok(rows
        .into_iter()
        .map(|(id, name, data)| crate::turns::LoggedEvent { id, name, data })
        .collect())
}

/// A stored row read by field name (a SQLite row, a DynamoDB item, a MongoDB document), and the
/// records read from it.
pub trait Fields {
    /// The field that holds a record's id.
    const ID: &'static str;

    /// A text field.
    fn text(&self, name: &str) -> Result<String, StoreError>;

    /// A text field that may be absent (or null): rows written before it existed.
    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// A whole-number field.
    fn whole(&self, name: &str) -> Result<i64, StoreError>;

    /// The conversation stored in this row.
    fn conversation(&self) -> Result<Conversation, StoreError> {
        ConversationRecord {
            id: self.text(Self::ID)?,
            title: self.text("title")?,
            message_count: self.whole("message_count")?,
            created_at: self.text("created_at")?,
            updated_at: self.text("updated_at")?,
            current_message_id: self.optional_text("current_message_id")?,
            generating_message_id: self.optional_text("generating_message_id")?,
        }
        .try_into()
    }

    /// The message stored in this row.
    fn message(&self) -> Result<Message, StoreError> {
        MessageRecord {
            id: self.text(Self::ID)?,
            conversation_id: self.text("conversation_id")?,
            parent_id: self.optional_text("parent_id")?,
            role: self.text("role")?,
            content: self.text("content")?,
            files: self.text("files")?,
            token_count: self.whole("token_count")?,
            status: self.text("status")?,
            created_at: self.text("created_at")?,
            usage: self.optional_text("usage")?,
            citations: self.optional_text("citations")?,
        }
        .try_into()
    }

    /// The file metadata stored as JSON text in this row's `body`.
    fn file(&self) -> Result<FileMeta, StoreError> {
        file_from_json(&self.text("body")?)
    }
}

/// A conversation as stored: what an adapter reads from its row before conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    /// The id.
    pub id: String,
    /// The title.
    pub title: String,
    /// Messages counted on it.
    pub message_count: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The leaf of the branch shown (absent on records written before message trees).
    pub current_message_id: Option<String>,
    /// The answer being generated.
    pub generating_message_id: Option<String>,
}

impl TryFrom<ConversationRecord> for Conversation {
    type Error = StoreError;

    fn try_from(r: ConversationRecord) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id.into(),
            title: r.title,
            message_count: count(r.message_count),
            created_at: time(&r.created_at)?,
            updated_at: time(&r.updated_at)?,
            current_message_id: r.current_message_id.map(Into::into),
            generating_message_id: r.generating_message_id.map(Into::into),
        })
    }
}

/// A message as stored: what an adapter reads from its row before conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// The id.
    pub id: String,
    /// Its conversation's id.
    pub conversation_id: String,
    /// The message it follows (`None` for a first message, and on records written before message
    /// trees, which the stores link when they migrate a conversation).
    pub parent_id: Option<String>,
    /// `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// The attachments' JSON ([`files_json`]).
    pub files: String,
    /// Tokens of the text.
    pub token_count: i64,
    /// `complete`, `incomplete` or `error`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// The receipt's JSON ([`receipt_json`]); absent on user messages and on rows written before
    /// receipts.
    pub usage: Option<String>,
    /// The citations' JSON ([`citations_json`]); absent when the message cites nothing, and on
    /// rows written before citations.
    pub citations: Option<String>,
}

impl TryFrom<MessageRecord> for Message {
    type Error = StoreError;

    fn try_from(r: MessageRecord) -> Result<Self, StoreError> {
        Ok(Self {
            role: Role::parse(&r.role).ok_or_else(|| corrupt(format!("bad role {}", r.role)))?,
            status: MessageStatus::parse(&r.status)
                .ok_or_else(|| corrupt(format!("bad status {}", r.status)))?,
            files: files_from_json(&r.files)?,
            created_at: time(&r.created_at)?,
            id: r.id.into(),
            conversation_id: r.conversation_id.into(),
            parent_id: r.parent_id.map(Into::into),
            content: r.content,
            token_count: count(r.token_count),
            usage: receipt_from_json(r.usage.as_deref())?,
            citations: citations_from_json(r.citations.as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::{ConversationId, FileId};

    fn meta() -> FileMeta {
        FileMeta {
            id: FileId::from("0190a1b2-0000-7000-8000-000000000001"),
            conversation_id: Some(ConversationId::from("c1")),
            filename: "report.pdf".into(),
            content_type: "application/pdf".into(),
            size: 1234,
            file_type: FileType::Pdf,
            status: FileStatus::Ready,
            char_count: Some(900),
            token_count: Some(210),
            pages: Some(3),
            error: None,
            note: Some("page 2 has no text layer".into()),
            progress: None,
            created_at: Timestamp::from_millis(1_772_272_800_123),
        }
    }

    /// A file row exactly as the stores wrote it when they stored the API's JSON of `FileMeta`.
    const STORED_BEFORE_RECORDS: &str = r#"{"id":"0190a1b2-0000-7000-8000-000000000001","conversation_id":"c1","filename":"report.pdf","content_type":"application/pdf","size":1234,"file_type":"pdf","status":"ready","char_count":900,"token_count":210,"pages":3,"error":null,"note":"page 2 has no text layer","created_at":"2026-02-28T10:00:00.123Z"}"#;

    #[test]
    fn a_file_row_written_before_records_reads_back() {
        assert_eq!(file_from_json(STORED_BEFORE_RECORDS).unwrap(), meta());
        let files = format!("[{STORED_BEFORE_RECORDS}]");
        assert_eq!(files_from_json(&files).unwrap(), vec![meta()]);
        assert_eq!(files_from_json("[]").unwrap(), vec![]);
    }

    #[test]
    fn records_round_trip_with_fixed_field_names() {
        let json = file_json(&meta()).unwrap();
        assert_eq!(file_from_json(&json).unwrap(), meta());
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["file_type"], "pdf");
        assert_eq!(value["created_at"], "2026-02-28T10:00:00.123Z");
        assert_eq!(
            value,
            serde_json::from_str::<serde_json::Value>(STORED_BEFORE_RECORDS).unwrap(),
            "records are written in the shape already stored"
        );
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let minimal = r#"{"id":"f","filename":"a.txt","content_type":"text/plain","size":1,"file_type":"text","status":"processing","created_at":"2026-02-28T10:00:00.123Z"}"#;
        let f = file_from_json(minimal).unwrap();
        assert_eq!(f.conversation_id, None);
        assert_eq!(f.status, FileStatus::Processing);
        assert_eq!((f.char_count, f.pages, f.progress), (None, None, None));
    }

    #[test]
    fn unknown_stored_values_are_corrupt_not_defaulted() {
        let bad = STORED_BEFORE_RECORDS.replace("\"pdf\"", "\"tiff\"");
        assert!(matches!(file_from_json(&bad), Err(StoreError::Corrupt(_))));
        let message = MessageRecord {
            id: "m".into(),
            conversation_id: "c".into(),
            parent_id: None,
            role: "robot".into(),
            content: String::new(),
            files: "[]".into(),
            token_count: 0,
            status: "complete".into(),
            created_at: "2026-02-28T10:00:00.123Z".into(),
            usage: None,
            citations: None,
        };
        assert!(matches!(
            Message::try_from(message),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn stored_rows_convert_to_the_domain() {
        let c = Conversation::try_from(ConversationRecord {
            id: "c".into(),
            title: "T".into(),
            message_count: -1,
            created_at: "2026-02-28T10:00:00.123Z".into(),
            updated_at: "2026-02-28T10:00:01.000Z".into(),
            current_message_id: Some("m".into()),
            generating_message_id: None,
        })
        .unwrap();
        assert_eq!(c.message_count, 0);
        assert_eq!(c.updated_at, Timestamp::from_millis(1_772_272_801_000));
        let m = Message::try_from(MessageRecord {
            id: "m".into(),
            conversation_id: "c".into(),
            parent_id: Some("u".into()),
            role: "assistant".into(),
            content: "hi".into(),
            files: format!("[{STORED_BEFORE_RECORDS}]"),
            token_count: 2,
            status: "incomplete".into(),
            created_at: "2026-02-28T10:00:00.123Z".into(),
            usage: Some(r#"{"model":"sonnet","provider":"anthropic","prompt_tokens":12,"completion_tokens":3,"cost_usd":null,"time_to_first_token_ms":420,"duration_ms":900}"#.into()),
            citations: Some(r#"[{"n":2,"file_id":"f","filename":"r.pdf","page":7,"sheet":null,"snippet":"Revenue grew."},{"n":5,"file_id":"g","filename":"b.xlsx","sheet":"Costs"}]"#.into()),
        })
        .unwrap();
        assert_eq!(
            m.citations,
            vec![
                Citation {
                    n: 2,
                    file_id: Some("f".into()),
                    filename: Some("r.pdf".into()),
                    page: Some(7),
                    sheet: None,
                    snippet: "Revenue grew.".into(),
                    memory: None,
                },
                Citation {
                    n: 5,
                    file_id: Some("g".into()),
                    filename: Some("b.xlsx".into()),
                    page: None,
                    sheet: Some("Costs".into()),
                    snippet: String::new(),
                    memory: None,
                },
            ]
        );
        assert_eq!(
            citations_from_json(citations_json(&m.citations).unwrap().as_deref()).unwrap(),
            m.citations,
            "citations read back as they were written"
        );
        assert_eq!(citations_json(&[]).unwrap(), None);
        // Memory: a message of another conversation (no file), and a file of another one.
        let memory = vec![
            Citation {
                n: 3,
                file_id: None,
                filename: None,
                page: None,
                sheet: None,
                snippet: "The gate code is 4417.".into(),
                memory: Some(MemorySource {
                    conversation_id: "c1".into(),
                    message_id: Some("m1".into()),
                    title: "Moving house".into(),
                }),
            },
            Citation {
                n: 4,
                file_id: Some("f2".into()),
                filename: Some("lease.pdf".into()),
                page: Some(2),
                sheet: None,
                snippet: "Rent is due monthly.".into(),
                memory: Some(MemorySource {
                    conversation_id: "c2".into(),
                    message_id: None,
                    title: "Lease".into(),
                }),
            },
        ];
        let json = citations_json(&memory).unwrap().unwrap();
        assert!(json.contains(r#""file_id":null"#), "{json}");
        assert_eq!(citations_from_json(Some(&json)).unwrap(), memory);
        assert!(
            !citations_json(&m.citations)
                .unwrap()
                .unwrap()
                .contains("memory"),
            "file citations of the conversation itself carry no memory key"
        );
        assert!(matches!(
            citations_from_json(Some("{not json")),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            (m.role, m.status),
            (Role::Assistant, MessageStatus::Incomplete)
        );
        assert_eq!(m.files, vec![meta()]);
        let usage = m.usage.unwrap();
        assert_eq!(
            (usage.model.as_str(), usage.provider.as_str()),
            ("sonnet", "anthropic")
        );
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 3));
        assert_eq!(
            (
                usage.time_to_first_token_ms,
                usage.duration_ms,
                usage.cost_usd
            ),
            (Some(420), 900, None)
        );
    }

    #[test]
    fn receipts_round_trip_and_may_be_absent() {
        let r = Receipt {
            model: "gpt".into(),
            provider: "openai".into(),
            prompt_tokens: 1,
            completion_tokens: 2,
            cost_usd: Some(0.0125),
            time_to_first_token_ms: None,
            duration_ms: 30,
        };
        let json = receipt_json(Some(&r)).unwrap();
        assert_eq!(receipt_from_json(json.as_deref()).unwrap(), Some(r));
        assert_eq!(receipt_json(None).unwrap(), None);
        assert_eq!(receipt_from_json(None).unwrap(), None);
        assert!(matches!(
            receipt_from_json(Some("{\"model\":1}")),
            Err(StoreError::Corrupt(_))
        ));
    }
}
