//! The product's vocabulary: conversations, messages, files, their ids, roles and statuses.
//!
//! These types are what the HTTP API returns (see `API.md`) and what every store adapter persists.
//! The owner of a record is never part of these types: every store call takes it separately, so a
//! handler cannot forget to scope a read.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn generate() -> Self {
                Self(Uuid::now_v7().to_string())
            }
            /// The id as it travels on the wire and in stores.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a conversation.
    ConversationId
);
id_type!(
    /// Identifies a message.
    MessageId
);
id_type!(
    /// Identifies an uploaded file.
    FileId
);

/// The user a record belongs to. Without authentication every record belongs to `local`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// The owner used when authentication is off.
    pub fn local() -> Self {
        Self("local".to_owned())
    }
    /// Wraps a user id; callers have validated it (letters, digits, `-`, `_`, `.`, `@`).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    /// The user id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A point in time, UTC, rendered as RFC 3339 with milliseconds (`2026-02-28T10:00:00.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-02-28T10:00:00.123Z")]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to milliseconds so that what is stored equals what is read back.
    pub fn now() -> Self {
        Self::from_millis(Utc::now().timestamp_millis())
    }
    /// From milliseconds since the Unix epoch.
    pub fn from_millis(ms: i64) -> Self {
        Self(Utc.timestamp_millis_opt(ms).single().unwrap_or_default())
    }
    /// Milliseconds since the Unix epoch.
    pub fn millis(&self) -> i64 {
        self.0.timestamp_millis()
    }
    /// RFC 3339 with milliseconds and `Z`; sorts lexicographically in time order.
    pub fn to_rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
    /// Parses RFC 3339.
    pub fn parse(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| Self(d.with_timezone(&Utc)))
    }
    /// The wrapped chrono value.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}")))
    }
}

/// The title a conversation has until the automatic title replaces it.
pub const DEFAULT_TITLE: &str = "New conversation";

/// The longest title accepted, in characters, after trimming.
pub const MAX_TITLE_CHARS: usize = 200;

/// A conversation as listed and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    /// Opaque id.
    pub id: ConversationId,
    /// `"New conversation"` until the automatic title (or the user) replaces it.
    pub title: String,
    /// Stored messages of both roles.
    pub message_count: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// Moves when a message is added or the user renames; not when the automatic title lands.
    pub updated_at: Timestamp,
    /// The leaf of the branch shown: `GET …/messages` returns the path from the first message to
    /// it (`null` while the conversation has no message).
    #[serde(default)]
    pub current_message_id: Option<MessageId>,
    /// The answer being generated now, or `null`: its events can be followed with
    /// `GET /api/chat/stream/{message_id}`.
    #[serde(default)]
    pub generating_message_id: Option<MessageId>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Fully written (every user message; an answer after `done`).
    Complete,
    /// An answer cut short (a model failure, or stopped); holds the text received so far. An
    /// answer being generated is stored `incomplete` and empty until it ends (the conversation's
    /// `generating_message_id` names it).
    Incomplete,
    /// An answer that failed before any text.
    Error,
}

impl MessageStatus {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageStatus::Complete => "complete",
            MessageStatus::Incomplete => "incomplete",
            MessageStatus::Error => "error",
        }
    }
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "complete" => Some(MessageStatus::Complete),
            "incomplete" => Some(MessageStatus::Incomplete),
            "error" => Some(MessageStatus::Error),
            _ => None,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// Opaque id.
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// The message it follows in the conversation's tree (`null` for a first message): an
    /// answer's parent is the user message it answers; a user message's parent is the answer it
    /// follows. Siblings are alternative answers (regenerated) or edits.
    #[serde(default)]
    pub parent_id: Option<MessageId>,
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Files attached to it (user messages).
    pub files: Vec<FileMeta>,
    /// Tokens of `content` (the provider's count for answers when it gives one).
    pub token_count: u64,
    /// How it ended.
    pub status: MessageStatus,
    /// When it was created.
    pub created_at: Timestamp,
    /// The receipt of an answer: the model that gave it and what it took (`null` on user
    /// messages, and on answers no model started).
    #[serde(default)]
    pub usage: Option<Receipt>,
    /// The passages of files an answer cites with `[n]`, in order of first citation (empty on user
    /// messages, on answers that cite nothing, and on answers stored before citations).
    #[serde(default)]
    pub citations: Vec<Citation>,
}

/// A passage that an answer cites: `[n]` in the answer's text points here. A passage of a file
/// names the file (and its page or sheet); a passage of memory (`CONVERSA_MEMORY=on`) also names
/// the other conversation it comes from, and a message of that conversation has no file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Citation {
    /// The number the answer cites it by (`[n]`), as the prompt numbered the passage.
    pub n: u32,
    /// The file the passage comes from; `null` for a message of another conversation (memory).
    #[schema(required = true)]
    pub file_id: Option<FileId>,
    /// The file's name; `null` for a message of another conversation (memory).
    #[schema(required = true)]
    pub filename: Option<String>,
    /// The page the passage is on (PDF, and documents the extractor labels by page); `null` when
    /// the file has no pages.
    pub page: Option<u32>,
    /// The sheet the passage is on (spreadsheets); `null` otherwise.
    pub sheet: Option<String>,
    /// A short verbatim excerpt of the passage (at most 300 characters), the part that best
    /// matches what the answer says where it cites it.
    pub snippet: String,
    /// Set when the passage is memory: it comes from another of the user's conversations (a
    /// message of it, or a file attached to it). Absent for passages of this conversation's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySource>,
}

/// Where a passage of memory comes from: another conversation of the same user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemorySource {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message, when the passage is one; `null` for a file attached to that conversation.
    #[schema(required = true)]
    pub message_id: Option<MessageId>,
    /// The conversation's title (when the answer was given).
    pub title: String,
}

/// What an answer took, and which model gave it: carried by the stored answer and by `done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// The id of the model that answered (a fallback's, when the one asked for failed before its
    /// first token).
    pub model: String,
    /// Who served it: `openai`, `anthropic`, `bedrock` or `local`.
    pub provider: String,
    /// Tokens of the request (the provider's count, else the server's estimate).
    pub prompt_tokens: u64,
    /// Tokens of the answer (the provider's count, else the server's estimate).
    pub completion_tokens: u64,
    /// What it cost, from the model's price; `null` when the model has none.
    pub cost_usd: Option<f64>,
    /// From the request to the model until its first token, when one came.
    pub time_to_first_token_ms: Option<u64>,
    /// From the request to the model until the answer ended.
    pub duration_ms: u64,
}

/// The family of an uploaded file, decided from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// PDF.
    Pdf,
    /// Word (Office Open XML).
    Docx,
    /// Excel (Office Open XML, including xlsm/xlsb).
    Xlsx,
    /// Excel 97-2003 (OLE).
    Xls,
    /// OpenDocument spreadsheet.
    Ods,
    /// Comma- or otherwise-separated values.
    Csv,
    /// Plain text and Markdown.
    Text,
    /// JSON.
    Json,
    /// PNG, JPEG, WEBP or GIF.
    Image,
}

impl FileType {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            FileType::Pdf => "pdf",
            FileType::Docx => "docx",
            FileType::Xlsx => "xlsx",
            FileType::Xls => "xls",
            FileType::Ods => "ods",
            FileType::Csv => "csv",
            FileType::Text => "text",
            FileType::Json => "json",
            FileType::Image => "image",
        }
    }
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pdf" => FileType::Pdf,
            "docx" => FileType::Docx,
            "xlsx" => FileType::Xlsx,
            "xls" => FileType::Xls,
            "ods" => FileType::Ods,
            "csv" => FileType::Csv,
            "text" => FileType::Text,
            "json" => FileType::Json,
            "image" => FileType::Image,
            _ => return None,
        })
    }
}

/// Where a file's extraction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Extraction is under way (large files are processed as jobs).
    Processing,
    /// The text (or image) is ready to be used in a chat.
    Ready,
    /// Extraction failed; `error` says why.
    Failed,
}

impl FileStatus {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            FileStatus::Processing => "processing",
            FileStatus::Ready => "ready",
            FileStatus::Failed => "failed",
        }
    }
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "processing" => Some(FileStatus::Processing),
            "ready" => Some(FileStatus::Ready),
            "failed" => Some(FileStatus::Failed),
            _ => None,
        }
    }
}

/// What is known about an uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileMeta {
    /// Opaque id.
    pub id: FileId,
    /// The conversation it is attached to, once it is.
    pub conversation_id: Option<ConversationId>,
    /// The name the client gave, stripped of any path.
    pub filename: String,
    /// The media type of the stored bytes.
    pub content_type: String,
    /// Bytes as uploaded.
    pub size: u64,
    /// Family decided from the bytes.
    pub file_type: FileType,
    /// Extraction state.
    pub status: FileStatus,
    /// Characters of extracted text.
    pub char_count: Option<u64>,
    /// Tokens of extracted text.
    pub token_count: Option<u64>,
    /// Pages (PDF) or sheets (spreadsheets).
    pub pages: Option<u32>,
    /// Why extraction failed, in plain words.
    pub error: Option<String>,
    /// A remark on the extraction (e.g. a scanned PDF without a text layer, a sheet that was cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Extraction progress, 0–100, while `processing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// When it was uploaded.
    pub created_at: Timestamp,
}

impl FileMeta {
    /// A new record for a file of this name, type and size, not attached to a conversation, with
    /// nothing extracted yet.
    pub fn new(
        filename: String,
        content_type: String,
        size: u64,
        file_type: FileType,
        status: FileStatus,
    ) -> Self {
        Self {
            id: FileId::generate(),
            conversation_id: None,
            filename,
            content_type,
            size,
            file_type,
            status,
            char_count: None,
            token_count: None,
            pages: None,
            error: None,
            note: None,
            progress: None,
            created_at: Timestamp::now(),
        }
    }
}

/// One page of a list, with the cursor of the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `?cursor=` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_milliseconds() {
        let t = Timestamp::from_millis(1_772_272_800_123);
        assert_eq!(t.to_rfc3339(), "2026-02-28T10:00:00.123Z");
        assert_eq!(Timestamp::parse(&t.to_rfc3339()), Some(t));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-02-28T10:00:00.123Z\"");
    }

    #[test]
    fn generated_ids_are_time_ordered() {
        let a = MessageId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MessageId::generate();
        assert!(a < b, "{a} should sort before {b}");
    }

    #[test]
    fn wire_names_round_trip() {
        for t in [
            FileType::Pdf,
            FileType::Docx,
            FileType::Xlsx,
            FileType::Xls,
            FileType::Ods,
            FileType::Csv,
            FileType::Text,
            FileType::Json,
            FileType::Image,
        ] {
            assert_eq!(FileType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.as_str().into())
            );
        }
        for s in [
            MessageStatus::Complete,
            MessageStatus::Incomplete,
            MessageStatus::Error,
        ] {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
        for s in [
            FileStatus::Processing,
            FileStatus::Ready,
            FileStatus::Failed,
        ] {
            assert_eq!(FileStatus::parse(s.as_str()), Some(s));
        }
    }
}
