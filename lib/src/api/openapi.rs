//! The OpenAPI 3 document, generated from the handlers' annotations and the types' schemas.

use utoipa::OpenApi;

use super::{chat, conversations, files, health, models};
use crate::domain;

#[derive(OpenApi)]
#[openapi(
    info(title = "Conversa API", description = "Chat with your files: streamed answers, conversations, uploads."),
    paths(
        chat::send, chat::send_simple, models::list,
        conversations::list, conversations::get_one, conversations::messages, conversations::rename,
        conversations::delete, conversations::export,
        files::upload, files::get_one, files::download, files::text, files::presign, files::complete,
        health::health, health::index, health::openapi,
    ),
    components(schemas(
        domain::Conversation, domain::Message, domain::FileMeta, domain::Role, domain::MessageStatus,
        domain::FileType, domain::FileStatus, domain::Page<domain::Conversation>, domain::Page<domain::Message>,
        super::ErrorBody, super::ErrorDetail, chat::ChatRequestBody, chat::ChatForm, chat::SimpleReply,
        crate::service::chat::TurnMeta, conversations::RenameBody, files::FileText, files::UploadForm, files::PresignBody, files::PresignReply,
        health::Health, health::Index,
        models::ModelList, models::ModelItem, crate::llm::Provider, crate::llm::registry::Price, domain::Receipt,
    )),
    tags((name = "chat"), (name = "conversations"), (name = "files"), (name = "meta"))
)]
struct ApiDoc;

/// The document, with the crate's version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.into();
    doc
}
