//! The OpenAPI 3 document, generated from the handlers' annotations and the types' schemas.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, auth, chat, conversations, files, health, keys, models};
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
        auth::config, auth::me, auth::register, auth::login, auth::refresh, auth::logout,
        keys::create, keys::list, keys::remove,
        admin::list_users, admin::create_user, admin::change_user,
    ),
    components(schemas(
        domain::Conversation, domain::Message, domain::FileMeta, domain::Role, domain::MessageStatus,
        domain::FileType, domain::FileStatus, domain::Page<domain::Conversation>, domain::Page<domain::Message>,
        super::ErrorBody, super::ErrorDetail, chat::ChatRequestBody, chat::ChatForm, chat::SimpleReply,
        crate::service::chat::TurnMeta, conversations::RenameBody, files::FileText, files::UploadForm, files::PresignBody, files::PresignReply,
        health::Health, health::Index,
        models::ModelList, models::ModelItem, crate::llm::Provider, crate::llm::registry::Price, domain::Receipt,
        auth::AuthConfigReply, auth::OidcReply, auth::Me, auth::RegisterBody, auth::LoginBody, auth::RefreshBody,
        auth::SessionReply, crate::auth::Role, crate::auth::AuthMode,
        keys::NewKeyBody, keys::NewKey, keys::KeyItem, domain::Page<keys::KeyItem>,
        admin::AdminUser, admin::UsageTotals, admin::NewUserBody, admin::UserChangeBody, domain::Page<admin::AdminUser>,
    )),
    modifiers(&BearerAuth),
    tags((name = "chat"), (name = "conversations"), (name = "files"), (name = "auth"), (name = "admin"), (name = "meta"))
)]
struct ApiDoc;

/// The `bearer` security scheme: an access token, an OpenID provider's JWT, a token of
/// `CONVERSA_AUTH_TOKENS`, or an API key (`cvk_…`).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A local access token, an OpenID provider's ID or access token, a token of \
                         CONVERSA_AUTH_TOKENS, or a personal API key (cvk_…).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, with the crate's version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.into();
    doc
}
