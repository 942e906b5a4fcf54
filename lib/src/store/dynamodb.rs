//! The DynamoDB store: one table (`pk`/`sk` strings, GSI `gsi1` on `gsi1pk`/`gsi1sk` projecting
//! everything, TTL attribute `ttl`), every key scoped by owner.
//!
//! | item | `pk` | `sk` | `gsi1pk` / `gsi1sk` |
//! |---|---|---|---|
//! | conversation | `U#{owner}` | `C#{id}` | `U#{owner}#UPD` / `{updated_at}#{id}` |
//! | message | `U#{owner}#C#{conversation}` | `M#{created_at}#{id}` | — |
//! | message pointer | `U#{owner}` | `MSG#{id}` (holds the message's `sk`) | — |
//! | file | `U#{owner}` | `F#{id}` | — |
//!
//! Owners are `[A-Za-z0-9-_.@]` (no `#`), so an owner's prefix never reaches another owner's items.
//! Timestamps are fixed-width RFC 3339 with milliseconds, so `{updated_at}#{id}` sorts like
//! `(updated_at, id)`: conversations list newest first through `gsi1` (`ScanIndexForward=false`)
//! with keyset cursors (`store::cursor`). Lists read the index, which is eventually consistent;
//! everything else reads the table with strongly consistent reads.
//!
//! Message trees: a message item holds `parent_id` (a string, or NULL for a first message), a
//! conversation item `current_message_id` and `generating_message_id`. Items written before trees
//! lack these attributes; a conversation read in that state is migrated once, in place (its
//! messages linked one after the other, its last message made the current leaf:
//! [`DynamoStore::upgrade`]).
//!
//! A message is written in one `TransactWriteItems` with the conversation's `message_count` and
//! `updated_at` (optimistic: the update is conditioned on the `updated_at` it read, and retried:
//! [`DynamoStore::optimistic`]). Every multi-page read follows `LastEvaluatedKey` through one pager
//! ([`Pages`]). File metadata is stored as the JSON of `store::record::FileRecord`.
//! Search (`q`) walks the owner's conversations newest first and reads each one's messages until the
//! page is full: DynamoDB has no case-insensitive substring index, and at one person's scale (hundreds
//! of conversations) this is acceptable; a search index is the next step if it is not.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, PutRequest, ReturnValue,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;

use super::cursor::page;
use super::record::{self, Fields};
use super::tree::Walk;
use super::{PageRequest, Store, StoreError, TurnStart};
use crate::domain::{
    Conversation, ConversationId, FileId, FileMeta, Message, MessageId, Owner, Page, Timestamp,
    DEFAULT_TITLE,
};

/// An item as the SDK holds it.
pub type Item = HashMap<String, AttributeValue>;

/// The name of the global secondary index.
pub const GSI: &str = "gsi1";

/// Ids longer than this cannot be ours (keys are capped at 1–2 KB): they read as absent.
const MAX_ID_BYTES: usize = 512;

/// Attempts of an optimistic update before giving up.
const ATTEMPTS: usize = 8;

/// A DynamoDB table and the client that reaches it (the store and the rate limiter share one).
#[derive(Clone)]
pub struct Table {
    client: Client,
    name: String,
}

impl Table {
    /// Uses an SDK client and a table (which must exist: see [`ensure_table`]).
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// A client from the process's AWS configuration.
    pub async fn from_env(name: impl Into<String>) -> Self {
        Self::new(Client::new(crate::aws::sdk_config().await), name)
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A cheap round trip proving the table answers (a read of a key that never exists).
    pub async fn health(&self) -> Result<(), StoreError> {
        self.get_item(key("HEALTH".into(), "HEALTH".into()))
            .await
            .map(|_| ())
    }

    /// One item by key, read consistently.
    pub(crate) async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// A query on this table.
    pub(crate) fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.name)
    }

    /// Deletes keys 25 at a time, retrying what DynamoDB leaves unprocessed.
    pub(crate) async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        let requests = keys
            .into_iter()
            .map(|k| {
                build(DeleteRequest::builder().set_key(Some(k)).build())
                    .map(|d| WriteRequest::builder().delete_request(d).build())
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write_batches(requests).await
    }

    /// Puts items 25 at a time, retrying what DynamoDB leaves unprocessed.
    pub(crate) async fn put_items(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests = items
            .into_iter()
            .map(|i| {
                build(PutRequest::builder().set_item(Some(i)).build())
                    .map(|p| WriteRequest::builder().put_request(p).build())
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write_batches(requests).await
    }

    /// Sends writes in `BatchWriteItem`s of 25, retrying (with a back-off) what DynamoDB throttles.
    async fn write_batches(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut requests = chunk.to_vec();
            for attempt in 0..ATTEMPTS {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.name, requests)
                    .send()
                    .await
                    .map_err(unavailable)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.name))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    // Back off before retrying what DynamoDB throttled.
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
            if !requests.is_empty() {
                return Err(StoreError::Unavailable(
                    "DynamoDB kept throttling a batch write".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The pages of a query, one `Query` call each, following `LastEvaluatedKey` to the end.
pub(crate) struct Pages {
    query: QueryFluentBuilder,
    start: Option<Item>,
    done: bool,
}

impl Pages {
    pub(crate) fn new(query: QueryFluentBuilder) -> Self {
        Self {
            query,
            start: None,
            done: false,
        }
    }

    /// The next page's items; `None` after the last page.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Item>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let out = self
            .query
            .clone()
            .set_exclusive_start_key(self.start.take())
            .send()
            .await
            .map_err(unavailable)?;
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => self.start = Some(k),
            _ => self.done = true,
        }
        Ok(Some(out.items.unwrap_or_default()))
    }

    /// Every item, page after page, until at least `enough` are gathered or the query ends.
    pub(crate) async fn collect(mut self, enough: usize) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        while items.len() < enough {
            match self.next().await? {
                Some(page) => items.extend(page),
                None => break,
            }
        }
        Ok(items)
    }
}

/// What one try of an optimistic update came to.
enum Attempt<T> {
    /// It was written.
    Done(T),
    /// Another writer changed the conversation first: read it again and retry.
    Conflict,
}

/// Conversations, messages and file records in one DynamoDB table.
#[derive(Clone)]
pub struct DynamoStore {
    table: Table,
}

pub(crate) fn unavailable<E: ProvideErrorMetadata + std::error::Error>(e: E) -> StoreError {
    StoreError::Unavailable(crate::aws::describe(&e))
}

pub(crate) fn build<T>(r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Unavailable(format!("bad DynamoDB request: {e}")))
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A string, or NULL for `None`.
fn s_or_null(v: Option<&str>) -> AttributeValue {
    match v {
        Some(v) => s(v),
        None => AttributeValue::Null(true),
    }
}

pub(crate) fn get_s<'a>(item: &'a Item, k: &str) -> Result<&'a str, StoreError> {
    match item.get(k) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!("item lacks string `{k}`"))),
    }
}

pub(crate) fn get_n(item: &Item, k: &str) -> Result<i64, StoreError> {
    match item.get(k) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("`{k}` is not a whole number: {v}"))),
        _ => Err(StoreError::Corrupt(format!("item lacks number `{k}`"))),
    }
}

fn get_ts(item: &Item, k: &str) -> Result<Timestamp, StoreError> {
    record::time(get_s(item, k)?)
}

pub(crate) fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES
}

fn user_pk(owner: &Owner) -> String {
    format!("U#{}", owner.as_str())
}

fn updated_pk(owner: &Owner) -> String {
    format!("U#{}#UPD", owner.as_str())
}

fn messages_pk(owner: &Owner, conversation: &ConversationId) -> String {
    format!("U#{}#C#{}", owner.as_str(), conversation.as_str())
}

fn conversation_sk(id: &ConversationId) -> String {
    format!("C#{}", id.as_str())
}

fn updated_sk(updated_at: &str, id: &str) -> String {
    format!("{updated_at}#{id}")
}

fn message_sk(m: &Message) -> String {
    format!("M#{}#{}", m.created_at.to_rfc3339(), m.id.as_str())
}

fn pointer_sk(id: &MessageId) -> String {
    format!("MSG#{}", id.as_str())
}

fn file_sk(id: &FileId) -> String {
    format!("F#{}", id.as_str())
}

/// The stored form of a conversation.
fn conversation_record(owner: &Owner, c: &Conversation) -> Item {
    let updated = c.updated_at.to_rfc3339();
    let mut item = key(user_pk(owner), conversation_sk(&c.id));
    item.extend([
        ("gsi1pk".to_owned(), s(updated_pk(owner))),
        ("gsi1sk".to_owned(), s(updated_sk(&updated, c.id.as_str()))),
        ("id".to_owned(), s(c.id.as_str())),
        ("title".to_owned(), s(c.title.clone())),
        (
            "title_default".to_owned(),
            AttributeValue::Bool(c.title == DEFAULT_TITLE),
        ),
        ("message_count".to_owned(), n(c.message_count)),
        ("created_at".to_owned(), s(c.created_at.to_rfc3339())),
        ("updated_at".to_owned(), s(updated)),
        (
            "current_message_id".to_owned(),
            s_or_null(c.current_message_id.as_ref().map(MessageId::as_str)),
        ),
        (
            "generating_message_id".to_owned(),
            s_or_null(c.generating_message_id.as_ref().map(MessageId::as_str)),
        ),
    ]);
    item
}

/// The update of a stored answer to `m`: its text, count, status, receipt and citations (the last
/// two removed when absent).
fn answer_update(
    update: UpdateItemFluentBuilder,
    m: &Message,
) -> Result<UpdateItemFluentBuilder, StoreError> {
    let mut set = vec!["#c = :c", "token_count = :t", "#s = :s"];
    let mut remove = Vec::new();
    let mut update = update
        .expression_attribute_names("#c", "content")
        .expression_attribute_names("#s", "status")
        .expression_attribute_names("#u", "usage")
        .expression_attribute_names("#r", "citations")
        .expression_attribute_values(":c", s(m.content.clone()))
        .expression_attribute_values(":t", n(m.token_count))
        .expression_attribute_values(":s", s(m.status.as_str()));
    match record::receipt_json(m.usage.as_ref())? {
        Some(usage) => {
            set.push("#u = :u");
            update = update.expression_attribute_values(":u", s(usage));
        }
        None => remove.push("#u"),
    }
    match record::citations_json(&m.citations)? {
        Some(citations) => {
            set.push("#r = :r");
            update = update.expression_attribute_values(":r", s(citations));
        }
        None => remove.push("#r"),
    }
    let mut expression = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    Ok(update.update_expression(expression))
}

/// The stored form of a message, and the pointer that finds it by id.
fn message_records(owner: &Owner, m: &Message) -> Result<(Item, Item), StoreError> {
    let files = record::files_json(&m.files)?;
    let msk = message_sk(m);
    let mut message = key(messages_pk(owner, &m.conversation_id), msk.clone());
    message.extend([
        ("id".to_owned(), s(m.id.as_str())),
        ("conversation_id".to_owned(), s(m.conversation_id.as_str())),
        (
            "parent_id".to_owned(),
            s_or_null(m.parent_id.as_ref().map(MessageId::as_str)),
        ),
        ("role".to_owned(), s(m.role.as_str())),
        ("content".to_owned(), s(m.content.clone())),
        ("files".to_owned(), s(files)),
        ("token_count".to_owned(), n(m.token_count)),
        ("status".to_owned(), s(m.status.as_str())),
        ("created_at".to_owned(), s(m.created_at.to_rfc3339())),
    ]);
    if let Some(usage) = record::receipt_json(m.usage.as_ref())? {
        message.insert("usage".to_owned(), s(usage));
    }
    if let Some(citations) = record::citations_json(&m.citations)? {
        message.insert("citations".to_owned(), s(citations));
    }
    let mut pointer = key(user_pk(owner), pointer_sk(&m.id));
    pointer.extend([
        ("conversation_id".to_owned(), s(m.conversation_id.as_str())),
        ("msk".to_owned(), s(msk)),
    ]);
    Ok((message, pointer))
}

pub(crate) fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

impl Fields for Item {
    const ID: &'static str = "id";

    fn text(&self, name: &str) -> Result<String, StoreError> {
        get_s(self, name).map(str::to_owned)
    }

    fn whole(&self, name: &str) -> Result<i64, StoreError> {
        get_n(self, name)
    }

    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(_) => get_s(self, name).map(|v| Some(v.to_owned())),
        }
    }
}

/// Converts every item of a read.
fn all<T>(items: &[Item], from: fn(&Item) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    items.iter().map(from).collect()
}

/// Whether a transaction was cancelled because the condition of item `index` failed.
pub(crate) fn condition_failed_at(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
    >,
    index: usize,
) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(t)) => t
            .cancellation_reasons()
            .get(index)
            .and_then(|r| r.code())
            .is_some_and(|c| c == "ConditionalCheckFailed"),
        _ => false,
    }
}

pub(crate) fn is_conditional<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// The `SET` clause that moves a conversation's `updated_at` (and its index key with it), and the
/// condition that nobody moved it since it was read; values from [`bump`].
const BUMP_SET: &str = "updated_at = :u, gsi1sk = :g";
const BUMP_CONDITION: &str = "updated_at = :old";

/// The values of [`BUMP_SET`] and [`BUMP_CONDITION`]: `updated_at` moves to `at`, never back, from
/// what `current` holds.
fn bump(
    id: &ConversationId,
    current: &Item,
    at: Timestamp,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let old = get_ts(current, "updated_at")?;
    let new = old.max(at).to_rfc3339();
    Ok(HashMap::from([
        (":g".to_owned(), s(updated_sk(&new, id.as_str()))),
        (":u".to_owned(), s(new)),
        (":old".to_owned(), s(old.to_rfc3339())),
    ]))
}

impl DynamoStore {
    /// Keeps its records in `table` (which must exist: see [`ensure_table`]).
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    /// A client from the process's AWS configuration.
    pub async fn from_env(table: impl Into<String>) -> Self {
        Self::new(Table::from_env(table).await)
    }

    fn client(&self) -> &Client {
        &self.table.client
    }

    /// The table underneath.
    pub(crate) fn table(&self) -> &Table {
        &self.table
    }

    fn name(&self) -> &str {
        &self.table.name
    }

    /// A transaction step that writes `item` only if no item has its key yet.
    fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        build(
            Put::builder()
                .table_name(self.name())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )
        .map(|p| TransactWriteItem::builder().put(p).build())
    }

    async fn conversation_item(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Item>, StoreError> {
        if !id_ok(id.as_str()) {
            return Ok(None);
        }
        self.table
            .get_item(key(user_pk(owner), conversation_sk(id)))
            .await
    }

    async fn pointer(&self, owner: &Owner, id: &MessageId) -> Result<Option<Item>, StoreError> {
        if !id_ok(id.as_str()) {
            return Ok(None);
        }
        self.table
            .get_item(key(user_pk(owner), pointer_sk(id)))
            .await
    }

    /// A query of a conversation's messages, oldest first.
    fn messages_query(&self, owner: &Owner, conversation: &ConversationId) -> QueryFluentBuilder {
        self.table
            .query()
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s(messages_pk(owner, conversation)))
    }

    /// Whether a conversation's title or any of its messages contains `needle` (lowercased).
    async fn matches(&self, owner: &Owner, item: &Item, needle: &str) -> Result<bool, StoreError> {
        if get_s(item, "title")?.to_lowercase().contains(needle) {
            return Ok(true);
        }
        let id = ConversationId::from(get_s(item, "id")?);
        let mut pages = Pages::new(
            self.messages_query(owner, &id)
                .projection_expression("#c")
                .expression_attribute_names("#c", "content"),
        );
        while let Some(messages) = pages.next().await? {
            for m in &messages {
                if get_s(m, "content")?.to_lowercase().contains(needle) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The conversations of `pages` that [`matches`](Self::matches) `needle`, in order, until
    /// `enough` are found.
    async fn search(
        &self,
        owner: &Owner,
        mut pages: Pages,
        needle: &str,
        enough: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        while let Some(items) = pages.next().await? {
            for item in items {
                if self.matches(owner, &item, needle).await? {
                    found.push(item);
                    if found.len() >= enough {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }

    /// An optimistic update of a conversation: reads it, lets `write` try a change conditioned on
    /// what it read, and starts again (up to [`ATTEMPTS`] times) when another writer changed it in
    /// between. `None` when the conversation does not exist.
    async fn optimistic<T, F, Fut>(
        &self,
        owner: &Owner,
        id: &ConversationId,
        mut write: F,
    ) -> Result<Option<T>, StoreError>
    where
        F: FnMut(Item) -> Fut,
        Fut: Future<Output = Result<Attempt<T>, StoreError>>,
    {
        for _ in 0..ATTEMPTS {
            let Some(current) = self.conversation_item(owner, id).await? else {
                return Ok(None);
            };
            if let Attempt::Done(written) = write(current).await? {
                return Ok(Some(written));
            }
        }
        Err(StoreError::Unavailable(format!(
            "conversation {id} kept changing while it was being updated"
        )))
    }

    /// Writes an answer's content, status, usage and citations onto its stored message: the
    /// message's conversation, or `None` when the message is not stored.
    async fn write_answer(
        &self,
        owner: &Owner,
        m: &Message,
    ) -> Result<Option<ConversationId>, StoreError> {
        let Some(pointer) = self.pointer(owner, &m.id).await? else {
            return Ok(None);
        };
        let conversation = ConversationId::from(get_s(&pointer, "conversation_id")?);
        let update = self
            .client()
            .update_item()
            .table_name(self.name())
            .set_key(Some(key(
                messages_pk(owner, &conversation),
                get_s(&pointer, "msk")?.to_owned(),
            )))
            .condition_expression("attribute_exists(pk)");
        match answer_update(update, m)?.send().await {
            Ok(_) => Ok(Some(conversation)),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Adds `messages` to an existing conversation in one transaction with its count, its
    /// `updated_at` (moved to `at`, never back), its current leaf `leaf` and, when given, the
    /// answer being generated.
    async fn append(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        messages: &[&Message],
        at: Timestamp,
        leaf: &MessageId,
        generating: Option<&MessageId>,
    ) -> Result<(), StoreError> {
        let records = messages
            .iter()
            .map(|m| message_records(owner, m))
            .collect::<Result<Vec<_>, _>>()?;
        let added = self
            .optimistic(owner, conversation, |current| {
                let records = records.clone();
                async move {
                    let mut values = bump(conversation, &current, at)?;
                    values.insert(":k".to_owned(), n(records.len()));
                    values.insert(":leaf".to_owned(), s(leaf.as_str()));
                    let mut set = format!(
                        "SET message_count = message_count + :k, {BUMP_SET}, current_message_id = :leaf"
                    );
                    if let Some(g) = generating {
                        values.insert(":gen".to_owned(), s(g.as_str()));
                        set.push_str(", generating_message_id = :gen");
                    }
                    let update = build(
                        Update::builder()
                            .table_name(self.name())
                            .set_key(Some(key(user_pk(owner), conversation_sk(conversation))))
                            .update_expression(set)
                            .condition_expression(BUMP_CONDITION)
                            .set_expression_attribute_values(Some(values))
                            .build(),
                    )?;
                    let mut transaction = self
                        .client()
                        .transact_write_items()
                        .transact_items(TransactWriteItem::builder().update(update).build());
                    for (message, pointer) in &records {
                        transaction = transaction
                            .transact_items(self.put_new(message.clone())?)
                            .transact_items(self.put_new(pointer.clone())?);
                    }
                    match transaction.send().await {
                        Ok(_) => Ok(Attempt::Done(())),
                        Err(e) if (1..=2 * records.len()).any(|i| condition_failed_at(&e, i)) => {
                            Err(StoreError::Corrupt("a message of this turn already exists".into()))
                        }
                        Err(e) if condition_failed_at(&e, 0) => Ok(Attempt::Conflict),
                        Err(e) => Err(unavailable(e)),
                    }
                }
            })
            .await?;
        added.ok_or_else(|| {
            StoreError::Corrupt(format!("conversation {conversation} does not exist"))
        })
    }

    /// A conversation item as this version stores it: an item written before message trees
    /// (without `current_message_id`) is migrated first — each of its messages gets the one before
    /// it as parent, its last message becomes the current leaf — idempotently, so instances that
    /// meet it at once agree. `None` when it was deleted meanwhile.
    async fn upgrade(&self, owner: &Owner, item: Item) -> Result<Option<Item>, StoreError> {
        if item.contains_key("current_message_id") {
            return Ok(Some(item));
        }
        let id = ConversationId::from(get_s(&item, "id")?);
        let messages = Pages::new(
            self.messages_query(owner, &id)
                .projection_expression("pk, sk, id, parent_id")
                .consistent_read(true),
        )
        .collect(usize::MAX)
        .await?;
        let mut previous: Option<String> = None;
        for m in &messages {
            let mid = get_s(m, "id")?.to_owned();
            if !m.contains_key("parent_id") {
                let linked = self
                    .client()
                    .update_item()
                    .table_name(self.name())
                    .set_key(Some(key(
                        get_s(m, "pk")?.to_owned(),
                        get_s(m, "sk")?.to_owned(),
                    )))
                    .update_expression("SET parent_id = :p")
                    .condition_expression(
                        "attribute_exists(pk) AND attribute_not_exists(parent_id)",
                    )
                    .expression_attribute_values(":p", s_or_null(previous.as_deref()))
                    .send()
                    .await;
                match linked {
                    Ok(_) => {}
                    Err(e) if e.as_service_error().is_some_and(is_conditional) => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            previous = Some(mid);
        }
        let upgraded = self
            .client()
            .update_item()
            .table_name(self.name())
            .set_key(Some(key(user_pk(owner), conversation_sk(&id))))
            .update_expression("SET current_message_id = :c, generating_message_id = :g")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(current_message_id)",
            )
            .expression_attribute_values(":c", s_or_null(previous.as_deref()))
            .expression_attribute_values(":g", AttributeValue::Null(true))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match upgraded {
            Ok(out) => Ok(out.attributes),
            // Another instance upgraded it first, or it was deleted.
            Err(e) if e.as_service_error().is_some_and(is_conditional) => {
                self.conversation_item(owner, &id).await
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Conversations of `items`, each upgraded when it needs it.
    async fn conversations(
        &self,
        owner: &Owner,
        items: Vec<Item>,
    ) -> Result<Vec<Conversation>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(item) = self.upgrade(owner, item).await? {
                out.push(item.conversation()?);
            }
        }
        Ok(out)
    }
}

/// Creates the table with its index and TTL when it does not exist (tests, local setups; deployed
/// tables come from the template).
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let attr = |name: &str| {
        build(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build(),
        )
    };
    let key_elem = |name: &str, kt: KeyType| {
        build(
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kt)
                .build(),
        )
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(attr("gsi1pk")?)
        .attribute_definitions(attr("gsi1sk")?)
        .key_schema(key_elem("pk", KeyType::Hash)?)
        .key_schema(key_elem("sk", KeyType::Range)?)
        .global_secondary_indexes(build(
            GlobalSecondaryIndex::builder()
                .index_name(GSI)
                .key_schema(key_elem("gsi1pk", KeyType::Hash)?)
                .key_schema(key_elem("gsi1sk", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build(),
        )?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            // A table made before turn logs expired by TTL gets the TTL attribute.
            return ensure_ttl(client, table).await;
        }
        Err(e) => return Err(unavailable(e)),
    }
    for _ in 0..60 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(unavailable)?;
        let active = d
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| s.as_str() == "ACTIVE");
        if active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure_ttl(client, table).await
}

/// Turns on expiry by the `ttl` attribute (turn logs, rate-limit windows, pending uploads) when
/// the table does not have it.
pub async fn ensure_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
    let described = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(unavailable)?;
    let on = described.time_to_live_description().is_some_and(|d| {
        d.attribute_name() == Some("ttl")
            && d.time_to_live_status()
                .is_some_and(|s| matches!(s.as_str(), "ENABLED" | "ENABLING"))
    });
    if on {
        return Ok(());
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(build(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("ttl")
                .build(),
        )?)
        .send()
        .await
        .map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl Store for DynamoStore {
    async fn health(&self) -> Result<(), StoreError> {
        self.table.health().await
    }

    async fn create_conversation(&self, owner: &Owner, c: &Conversation) -> Result<(), StoreError> {
        self.client()
            .put_item()
            .table_name(self.name())
            .set_item(Some(conversation_record(owner, c)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn begin_turn(&self, owner: &Owner, turn: &TurnStart) -> Result<(), StoreError> {
        let answer = &turn.answer;
        let messages = turn.messages();
        if !turn.created {
            return self
                .append(
                    owner,
                    &answer.conversation_id,
                    &messages,
                    answer.created_at,
                    &answer.id,
                    Some(&answer.id),
                )
                .await;
        }
        // A new conversation is written whole, with its messages, in one transaction.
        let started = turn.started();
        let mut transaction = self
            .client()
            .transact_write_items()
            .transact_items(self.put_new(conversation_record(owner, &started))?);
        for m in &messages {
            let (message, pointer) = message_records(owner, m)?;
            transaction = transaction
                .transact_items(self.put_new(message)?)
                .transact_items(self.put_new(pointer)?);
        }
        match transaction.send().await {
            Ok(_) => Ok(()),
            Err(e) if (0..=2 * messages.len()).any(|i| condition_failed_at(&e, i)) => {
                Err(StoreError::Corrupt(format!(
                    "conversation {} or a message of its first turn already exists",
                    started.id
                )))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn finish_turn(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        let Some(conversation) = self.write_answer(owner, m).await? else {
            return Err(StoreError::Corrupt(format!(
                "answer {} is not stored",
                m.id
            )));
        };
        // The answer being generated is cleared only when it is still this one.
        let cleared = self
            .client()
            .update_item()
            .table_name(self.name())
            .set_key(Some(key(user_pk(owner), conversation_sk(&conversation))))
            .update_expression("SET generating_message_id = :null")
            .condition_expression("generating_message_id = :me")
            .expression_attribute_values(":null", AttributeValue::Null(true))
            .expression_attribute_values(":me", s(m.id.as_str()))
            .send()
            .await;
        match cleared {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        let Some(item) = self.conversation_item(owner, id).await? else {
            return Ok(None);
        };
        self.upgrade(owner, item)
            .await?
            .as_ref()
            .map(Item::conversation)
            .transpose()
    }

    async fn list_conversations(
        &self,
        owner: &Owner,
        request: &PageRequest,
        query: Option<&str>,
    ) -> Result<Page<Conversation>, StoreError> {
        let after = request.after()?;
        let needle = query
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        let q = self
            .table
            .query()
            .index_name(GSI)
            .scan_index_forward(false)
            .expression_attribute_values(":p", s(updated_pk(owner)));
        let q = match &after {
            Some((at, id)) => q
                .key_condition_expression("gsi1pk = :p AND gsi1sk < :after")
                .expression_attribute_values(":after", s(updated_sk(at, id))),
            None => q.key_condition_expression("gsi1pk = :p"),
        };
        let fetch = request.fetch();
        let items = match &needle {
            None => Pages::new(q.limit(fetch as i32)).collect(fetch).await?,
            Some(needle) => {
                self.search(owner, Pages::new(q.limit(100)), needle, fetch)
                    .await?
            }
        };
        let rows = self.conversations(owner, items).await?;
        Ok(page(rows, request))
    }

    async fn rename_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
        at: Timestamp,
    ) -> Result<Option<Conversation>, StoreError> {
        let renamed = self
            .optimistic(owner, id, |current| async move {
                let mut values = bump(id, &current, at)?;
                values.insert(":t".to_owned(), s(title));
                values.insert(":f".to_owned(), AttributeValue::Bool(false));
                let sent = self
                    .client()
                    .update_item()
                    .table_name(self.name())
                    .set_key(Some(key(user_pk(owner), conversation_sk(id))))
                    .update_expression(format!("SET {BUMP_SET}, #t = :t, title_default = :f"))
                    .condition_expression(BUMP_CONDITION)
                    .expression_attribute_names("#t", "title")
                    .set_expression_attribute_values(Some(values))
                    .return_values(ReturnValue::AllNew)
                    .send()
                    .await;
                match sent {
                    Ok(out) => Ok(Attempt::Done(out.attributes.unwrap_or_default())),
                    Err(e) if e.as_service_error().is_some_and(is_conditional) => {
                        Ok(Attempt::Conflict)
                    }
                    Err(e) => Err(unavailable(e)),
                }
            })
            .await?;
        renamed.as_ref().map(Item::conversation).transpose()
    }

    async fn set_auto_title(
        &self,
        owner: &Owner,
        id: &ConversationId,
        title: &str,
    ) -> Result<bool, StoreError> {
        if !id_ok(id.as_str()) {
            return Ok(false);
        }
        let result = self
            .client()
            .update_item()
            .table_name(self.name())
            .set_key(Some(key(user_pk(owner), conversation_sk(id))))
            .update_expression("SET #t = :t, title_default = :f")
            .condition_expression("attribute_exists(pk) AND title_default = :yes")
            .expression_attribute_names("#t", "title")
            .expression_attribute_values(":t", s(title))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete_conversation(
        &self,
        owner: &Owner,
        id: &ConversationId,
    ) -> Result<Option<Vec<FileMeta>>, StoreError> {
        if self.conversation_item(owner, id).await?.is_none() {
            return Ok(None);
        }
        // Children first, the conversation last: an interrupted delete can simply be retried.
        let messages = Pages::new(
            self.messages_query(owner, id)
                .projection_expression("pk, sk, id")
                .consistent_read(true),
        )
        .collect(usize::MAX)
        .await?;
        let mut keys = Vec::with_capacity(messages.len() * 2);
        for m in &messages {
            let mid = MessageId::from(get_s(m, "id")?);
            keys.push(key(user_pk(owner), pointer_sk(&mid)));
            keys.push(key(get_s(m, "pk")?.to_owned(), get_s(m, "sk")?.to_owned()));
        }
        let file_items = Pages::new(
            self.table
                .query()
                .key_condition_expression("pk = :p AND begins_with(sk, :f)")
                .filter_expression("conversation_id = :c")
                .expression_attribute_values(":p", s(user_pk(owner)))
                .expression_attribute_values(":f", s("F#"))
                .expression_attribute_values(":c", s(id.as_str()))
                .consistent_read(true),
        )
        .collect(usize::MAX)
        .await?;
        let files = all(&file_items, Item::file)?;
        keys.extend(files.iter().map(|f| key(user_pk(owner), file_sk(&f.id))));
        self.table.delete_keys(keys).await?;
        self.client()
            .delete_item()
            .table_name(self.name())
            .set_key(Some(key(user_pk(owner), conversation_sk(id))))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(Some(files))
    }

    async fn add_message(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        self.append(owner, &m.conversation_id, &[m], m.created_at, &m.id, None)
            .await
    }

    async fn update_message(&self, owner: &Owner, m: &Message) -> Result<(), StoreError> {
        // A message that is not stored (any more) has nothing to update.
        self.write_answer(owner, m).await.map(|_| ())
    }

    async fn get_message(
        &self,
        owner: &Owner,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let Some(pointer) = self.pointer(owner, id).await? else {
            return Ok(None);
        };
        let conversation = ConversationId::from(get_s(&pointer, "conversation_id")?);
        self.table
            .get_item(key(
                messages_pk(owner, &conversation),
                get_s(&pointer, "msk")?.to_owned(),
            ))
            .await?
            .as_ref()
            .map(Item::message)
            .transpose()
    }

    async fn list_messages(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        request: &PageRequest,
    ) -> Result<Page<Message>, StoreError> {
        let after = request.after()?;
        if !id_ok(conversation.as_str()) {
            return Ok(page(vec![], request));
        }
        let fetch = request.fetch();
        let q = self
            .messages_query(owner, conversation)
            .consistent_read(true)
            .limit(fetch as i32);
        let q = match &after {
            Some((at, id)) => q
                .key_condition_expression("pk = :p AND sk > :after")
                .expression_attribute_values(":after", s(format!("M#{at}#{id}"))),
            None => q,
        };
        let rows = all(&Pages::new(q).collect(fetch).await?, Item::message)?;
        Ok(page(rows, request))
    }

    async fn branch(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        leaf: &MessageId,
        limit: Option<u32>,
    ) -> Result<Vec<Message>, StoreError> {
        if limit == Some(0) || !id_ok(conversation.as_str()) || !id_ok(leaf.as_str()) {
            return Ok(vec![]);
        }
        // Newest first: a leaf's ancestors come after it, so the walk stops once it has them.
        let mut walk = Walk::new(leaf, limit);
        let mut pages = Pages::new(
            self.messages_query(owner, conversation)
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(100),
        );
        while let Some(items) = pages.next().await? {
            for item in &items {
                if walk.feed(item.message()?) {
                    return Ok(walk.finish());
                }
            }
        }
        Ok(walk.finish())
    }

    async fn set_current(
        &self,
        owner: &Owner,
        conversation: &ConversationId,
        leaf: &MessageId,
    ) -> Result<Option<Conversation>, StoreError> {
        let in_conversation = match self.pointer(owner, leaf).await? {
            Some(p) => get_s(&p, "conversation_id")? == conversation.as_str(),
            None => false,
        };
        if !in_conversation {
            return match self.conversation_item(owner, conversation).await? {
                None => Ok(None),
                Some(_) => Err(StoreError::Corrupt(format!(
                    "message {leaf} is not in conversation {conversation}"
                ))),
            };
        }
        let set = self
            .client()
            .update_item()
            .table_name(self.name())
            .set_key(Some(key(user_pk(owner), conversation_sk(conversation))))
            .update_expression("SET current_message_id = :m")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":m", s(leaf.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match set {
            Ok(out) => out.attributes.as_ref().map(Item::conversation).transpose(),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn put_file(&self, owner: &Owner, f: &FileMeta) -> Result<(), StoreError> {
        let mut item = key(user_pk(owner), file_sk(&f.id));
        item.insert("id".to_owned(), s(f.id.as_str()));
        item.insert("body".to_owned(), s(record::file_json(f)?));
        if let Some(c) = &f.conversation_id {
            item.insert("conversation_id".to_owned(), s(c.as_str()));
        }
        self.client()
            .put_item()
            .table_name(self.name())
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_file(&self, owner: &Owner, id: &FileId) -> Result<Option<FileMeta>, StoreError> {
        if !id_ok(id.as_str()) {
            return Ok(None);
        }
        self.table
            .get_item(key(user_pk(owner), file_sk(id)))
            .await?
            .as_ref()
            .map(Item::file)
            .transpose()
    }

    async fn delete_file(&self, owner: &Owner, id: &FileId) -> Result<bool, StoreError> {
        if !id_ok(id.as_str()) {
            return Ok(false);
        }
        let out = self
            .client()
            .delete_item()
            .table_name(self.name())
            .set_key(Some(key(user_pk(owner), file_sk(id))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_like_updated_then_id() {
        let a = updated_sk("2026-02-28T10:00:00.123Z", "0190-a");
        let b = updated_sk("2026-02-28T10:00:00.123Z", "0190-b");
        let c = updated_sk("2026-02-28T10:00:01.000Z", "0000");
        assert!(a < b && b < c);
    }

    #[test]
    fn keys_are_scoped_by_owner() {
        let c = ConversationId::from("c1");
        assert_eq!(
            messages_pk(&Owner::new("alice"), &c),
            "U#alice#C#c1".to_owned()
        );
        assert_ne!(user_pk(&Owner::new("al")), user_pk(&Owner::new("alice")));
        assert!(!id_ok(&"x".repeat(MAX_ID_BYTES + 1)));
    }
}
