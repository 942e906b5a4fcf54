//! The OpenAPI 3 document, generated from the handlers' annotations and the types' schemas. The
//! constraints a schema states are the ones the server checks: the helpers below build them from
//! the same limits the services use.

use utoipa::openapi::schema::{KnownFormat, Object, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{admin, auth, chat, conversations, files, health, keys, models, search, sse, usage};
use crate::domain;
use crate::llm::Registry;
use crate::service::conversations::{DEFAULT_LIMIT, MAX_LIMIT};

#[derive(OpenApi)]
#[openapi(
    info(title = "Conversa API", description = "Chat with your files: streamed answers, conversations, uploads."),
    paths(
        chat::send, chat::send_simple, chat::regenerate, chat::stream, chat::stop, models::list,
        conversations::list, conversations::get_one, conversations::messages, conversations::set_current, conversations::rename,
        conversations::delete, conversations::export,
        files::upload, files::get_one, files::download, files::text, files::presign, files::complete,
        health::health, health::index, health::openapi,
        auth::config, auth::me, auth::register, auth::login, auth::refresh, auth::logout,
        keys::create, keys::list, keys::remove,
        admin::list_users, admin::create_user, admin::change_user, admin::usage,
        usage::usage, search::search,
    ),
    components(schemas(
        domain::Conversation, domain::Message, domain::FileMeta, domain::Role, domain::MessageStatus,
        domain::FileType, domain::FileStatus, domain::Page<domain::Conversation>, domain::Page<domain::Message>,
        super::ErrorBody, super::ErrorDetail, chat::ChatRequestBody, chat::ChatForm, chat::SimpleReply,
        chat::RegenerateBody, chat::StopReply, conversations::CurrentBody,
        crate::service::chat::TurnMeta, sse::TurnEventSchema, conversations::RenameBody, conversations::Export,
        files::FileText, files::UploadForm, files::PresignBody, files::PresignReply,
        health::Health, health::Index,
        models::ModelList, models::ModelItem, crate::llm::Provider, crate::llm::registry::Price, domain::Receipt, domain::Citation, domain::MemorySource,
        auth::AuthConfigReply, auth::OidcReply, auth::Me, auth::RegisterBody, auth::LoginBody, auth::RefreshBody,
        auth::SessionReply, crate::auth::Role, crate::auth::AuthMode,
        keys::NewKeyBody, keys::NewKey, keys::KeyItem, domain::Page<keys::KeyItem>,
        admin::AdminUser, usage::UsageTotals, admin::NewUserBody, admin::UserChangeBody, domain::Page<admin::AdminUser>,
        admin::AdminUsage, admin::UsageGroup, admin::GroupByParam,
        usage::UsageReply, usage::DayUsage, usage::ModelUsage, usage::BudgetReply, usage::BudgetUsed, usage::BudgetResets,
        crate::ledger::TierLimits, search::SearchReply, search::SearchItem, search::HitKind,
    )),
    modifiers(&BearerAuth),
    tags((name = "chat"), (name = "conversations"), (name = "files"), (name = "auth"), (name = "usage"), (name = "admin"), (name = "meta"))
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
    if let Some(components) = doc.components.as_mut() {
        let mut object = |name: &str, edit: &dyn Fn(&mut Object)| {
            if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(name) {
                edit(o);
            }
        };
        object("ChatRequestBody", &|o| {
            keyword(&mut o.extensions, "anyOf", chat::something_to_send(false));
        });
        object("ChatForm", &|o| {
            keyword(&mut o.extensions, "anyOf", chat::something_to_send(true));
            o.property_names = Some(Box::new(form_field_name().into()));
        });
        object("UploadForm", &|o| {
            o.property_names = Some(Box::new(form_field_name().into()));
        });
    }
    doc
}

/// The name of a form's part: no control character but tab, line feed and carriage return (a
/// client percent-encodes those three in the part's header, as HTML forms do; any other control
/// character makes the header unreadable, and the form is refused with 400). Parts the form does
/// not name are ignored.
fn form_field_name() -> Object {
    string_with_pattern(
        r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$".into(),
        "A part's name.",
    )
}

/// The routes that take no credentials in any mode.
const PUBLIC: &[&str] = &[
    "/health",
    "/api",
    "/api/openapi.json",
    "/api/auth/config",
    "/api/auth/register",
    "/api/auth/login",
    "/api/auth/refresh",
    "/api/auth/logout",
];

/// The document as a server serves it: [`document`], with the ids of the models on offer as the
/// only model names a chat request may give, and — when people sign in (every `mode` but `none`)
/// — the bearer token every route but the public ones requires, with its two refusals: 401
/// (credentials missing, wrong or expired) and 403 (a disabled account).
pub fn document_for(models: &Registry, mode: crate::auth::AuthMode) -> utoipa::openapi::OpenApi {
    let mut doc = document();
    if mode != crate::auth::AuthMode::None {
        let bearer = vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )];
        let refusal = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        let unauthorized = refusal("The credentials are missing, not valid, or expired.");
        let forbidden = refusal("Signed in, but the account is disabled.");
        for (path, item) in doc.paths.paths.iter_mut() {
            if PUBLIC.contains(&path.as_str()) {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.security = Some(bearer.clone());
                let responses = &mut op.responses.responses;
                responses
                    .entry("401".into())
                    .or_insert_with(|| unauthorized.clone());
                responses
                    .entry("403".into())
                    .or_insert_with(|| forbidden.clone());
            }
        }
    }
    let pattern = model_id_pattern(&models.ids());
    if let Some(components) = doc.components.as_mut() {
        for name in ["ChatRequestBody", "ChatForm", "RegenerateBody"] {
            if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(name) {
                if let Some(RefOr::T(Schema::Object(model))) = o.properties.get_mut("model") {
                    model.pattern = Some(pattern.clone());
                    model.description = Some(format!(
                        "The id of a model of `GET /api/models` ({}); absent or blank means the default model.",
                        models.ids().join(", ")
                    ));
                }
            }
        }
    }
    doc
}

/// One of `ids` (that is a valid model name), with whitespace around it, or blank.
fn model_id_pattern(ids: &[String]) -> String {
    let alternatives: Vec<String> = ids
        .iter()
        .filter(|id| crate::service::chat::resolve::valid_model_name(id))
        .map(|id| escape(id))
        .collect();
    format!(
        "^[{WHITESPACE}]*(?:{})?[{WHITESPACE}]*$",
        alternatives.join("|")
    )
}

/// `text` as a regex that matches it literally.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What `str::trim` removes (Unicode `White_Space`), as the inside of a regex class.
const WHITESPACE: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// What `char::is_control` finds (Unicode `Cc`), as the inside of a regex class.
const CONTROLS: &str = r"\u0000-\u001f\u007f-\u009f";

/// The pattern of a one-line text that, trimmed, has 1 to `max` (at least 2) characters and no
/// control character; with `blank`, an empty or all-whitespace text matches too.
pub(crate) fn trimmed_line_pattern(max: usize, blank: bool) -> String {
    let edge = format!("[^{WHITESPACE}{CONTROLS}]");
    let inner = format!("[^{CONTROLS}]{{0,{}}}", max.saturating_sub(2));
    let optional = if blank { "?" } else { "" };
    format!("^[{WHITESPACE}]*(?:{edge}(?:{inner}{edge})?){optional}[{WHITESPACE}]*$")
}

/// The pattern of a text with something in it besides whitespace and the characters of
/// `separators`.
pub(crate) fn not_blank_pattern(separators: &str) -> String {
    format!("[^{WHITESPACE}{separators}]")
}

/// Sets a JSON Schema keyword utoipa's schema types have no field for (`contains`,
/// `contentSchema`, `anyOf` beside `properties`…): their extensions are written into the schema
/// object as they are.
pub(crate) fn keyword(
    extensions: &mut Option<utoipa::openapi::extensions::Extensions>,
    name: &str,
    value: serde_json::Value,
) {
    extensions
        .get_or_insert_with(Default::default)
        .insert(name.into(), value);
}

/// A string schema with `pattern` and a description.
pub(crate) fn string_with_pattern(pattern: String, description: &str) -> Object {
    let mut s = Object::with_type(Type::String);
    s.pattern = Some(pattern);
    s.description = Some(description.into());
    s
}

/// `limit` of a list: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub(crate) fn page_limit() -> Object {
    let mut s = Object::with_type(Type::Integer);
    s.minimum = Some(1.into());
    s.maximum = Some(MAX_LIMIT.into());
    s.default = Some(DEFAULT_LIMIT.into());
    s.description = Some(format!("Items per page, 1–{MAX_LIMIT}."));
    s
}

/// `cursor` of a list: opaque, base64url as the API gives it in `next_cursor`; empty means the
/// first page. Any other text is refused (400).
pub(crate) fn page_cursor() -> Object {
    string_with_pattern(
        "^[A-Za-z0-9_-]*$".into(),
        "`next_cursor` of the previous page, as it came: a cursor the API did not give is refused (400).",
    )
}

/// Bytes of any media type: `{type: string, format: binary}`.
pub(crate) fn binary_object(description: &str) -> Object {
    let mut s = Object::with_type(Type::String);
    s.format = Some(SchemaFormat::KnownFormat(KnownFormat::Binary));
    s.description = Some(description.into());
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::domain::MAX_TITLE_CHARS;
    use crate::service::chat::MAX_MODEL_CHARS;

    /// Whether `text` matches `pattern` as a JSON Schema validator reads it (anchored only where
    /// the pattern says so).
    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    /// The pattern the served document states at `pointer`.
    fn pattern_at(pointer: &str) -> String {
        let doc = serde_json::to_value(document()).unwrap();
        doc.pointer(pointer)
            .and_then(|p| p.as_str())
            .unwrap_or_else(|| panic!("no pattern at {pointer}"))
            .to_owned()
    }

    /// Texts around every edge the patterns draw: whitespace of every kind at the ends and
    /// inside, control characters, commas, lengths at and past `max`.
    fn samples(max: usize) -> Vec<String> {
        let mut out: Vec<String> = [
            "",
            " ",
            "\t\n",
            "a",
            " a ",
            "\u{3000}a\u{3000}",
            "a b",
            "a\u{7}b",
            "\u{7}",
            "a\u{85}",
            "\u{85}a",
            "a\u{a0}",
            "\u{1c}",
            "\u{1c}a",
            "a\u{9f}b",
            "\u{2028}x",
            "é",
            "日本",
            "a\nb",
            "\u{feff}a",
            ",",
            " , ",
            "a,",
            ",,b",
            ", \u{3000},",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for n in [max - 1, max, max + 1] {
            out.push("x".repeat(n));
            out.push(format!("  {}  ", "é".repeat(n)));
            out.push(format!("a{}b", " ".repeat(n.saturating_sub(2))));
        }
        out
    }

    #[test]
    fn the_title_pattern_is_the_rename_rule() {
        let pattern = pattern_at("/components/schemas/RenameBody/properties/title/pattern");
        for text in samples(MAX_TITLE_CHARS) {
            let accepted = crate::service::conversations::check_title(&text).is_ok();
            assert_eq!(matches(&pattern, &text), accepted, "{text:?}");
        }
    }

    #[test]
    fn the_search_query_pattern_is_the_search_rule() {
        let doc = serde_json::to_value(document()).unwrap();
        let params = doc
            .pointer("/paths/~1api~1search/get/parameters")
            .and_then(|p| p.as_array())
            .unwrap();
        let q = params.iter().find(|p| p["name"] == "q").unwrap();
        let pattern = q["schema"]["pattern"].as_str().unwrap();
        assert_eq!(pattern, not_blank_pattern(""));
        for text in samples(40)
            .into_iter()
            .chain(["\u{85}".into(), " x ".into()])
        {
            assert_eq!(matches(pattern, &text), !text.trim().is_empty(), "{text:?}");
        }
    }

    #[test]
    fn the_model_pattern_is_the_chat_rule() {
        for schema in ["ChatRequestBody", "ChatForm"] {
            let pattern = pattern_at(&format!(
                "/components/schemas/{schema}/properties/model/pattern"
            ));
            for text in samples(MAX_MODEL_CHARS) {
                // A blank model means the configured one.
                let t = text.trim();
                let accepted = t.is_empty() || crate::service::chat::resolve::valid_model_name(t);
                assert_eq!(matches(&pattern, &text), accepted, "{schema}: {text:?}");
            }
        }
    }

    #[test]
    fn the_served_model_pattern_names_the_models_on_offer() {
        use crate::llm::registry::ModelEntry;
        use crate::llm::Provider;
        let chat: Arc<dyn crate::llm::ChatModel> = Arc::new(
            crate::llm::openai::OpenAiModel::new(Some("k"), Some("http://127.0.0.1:9"), "m")
                .unwrap(),
        );
        let ids = ["gpt-4o", "anthropic.claude-3-5:0", "a+b(c)|d"];
        let entries = ids
            .iter()
            .map(|id| ModelEntry::new(id, Provider::OpenAi, id, chat.clone()))
            .collect();
        let registry = Registry::from_entries(entries, None, None, Duration::from_secs(1)).unwrap();
        let doc =
            serde_json::to_value(document_for(&registry, crate::auth::AuthMode::None)).unwrap();
        let mut texts = samples(MAX_MODEL_CHARS);
        for id in ids {
            texts.extend([
                id.to_owned(),
                format!(" {id}\t"),
                format!("{id}x"),
                id.replace('.', "x"),
            ]);
        }
        texts.extend(["a+b(c)".into(), "d".into(), "anthropic".into()]);
        for schema in ["ChatRequestBody", "ChatForm"] {
            let pointer = format!("/components/schemas/{schema}/properties/model/pattern");
            let pattern = doc.pointer(&pointer).and_then(|p| p.as_str()).unwrap();
            for text in &texts {
                // A blank model means the default one; any other must be a model on offer.
                let t = text.trim();
                let accepted = t.is_empty()
                    || (crate::service::chat::resolve::valid_model_name(t)
                        && registry.resolve(Some(t)).is_ok());
                assert_eq!(matches(pattern, text), accepted, "{schema}: {text:?}");
            }
        }
    }

    #[test]
    fn done_always_carries_citations_and_a_message_may_omit_them() {
        let doc = serde_json::to_value(document()).unwrap();
        let required = |schema: &str| -> Vec<String> {
            doc.pointer(&format!("/components/schemas/{schema}/required"))
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(required("DoneData").contains(&"citations".to_owned()));
        assert!(!required("Message").contains(&"citations".to_owned()));
        let citation = required("Citation");
        for field in ["n", "file_id", "filename", "snippet"] {
            assert!(
                citation.contains(&field.to_owned()),
                "{field}: {citation:?}"
            );
        }
        assert_eq!(
            doc.pointer("/components/schemas/DoneData/properties/citations/items/$ref"),
            Some(&serde_json::json!("#/components/schemas/Citation"))
        );
        // Memory: a cited message of another conversation has no file (present, null), and says
        // which conversation and message it comes from; a file of this conversation has no
        // `memory` at all.
        for field in ["file_id", "filename"] {
            let types = doc
                .pointer(&format!("/components/schemas/Citation/properties/{field}"))
                .map(|s| s.to_string())
                .unwrap_or_default();
            assert!(types.contains("null"), "{field} is nullable: {types}");
        }
        assert!(!citation.contains(&"memory".to_owned()));
        let memory = doc
            .pointer("/components/schemas/Citation/properties/memory")
            .map(|s| s.to_string())
            .unwrap_or_default();
        assert!(
            memory.contains("#/components/schemas/MemorySource"),
            "{memory}"
        );
        let source = required("MemorySource");
        for field in ["conversation_id", "message_id", "title"] {
            assert!(source.contains(&field.to_owned()), "{field}: {source:?}");
        }
    }

    #[test]
    fn something_to_send_is_a_message_or_an_id_that_is_not_blank() {
        for text in samples(4) {
            assert_eq!(
                matches(&not_blank_pattern(""), &text),
                !text.trim().is_empty(),
                "{text:?}"
            );
            // A form's file ids are split on commas.
            let ids = text.split(',').map(str::trim).filter(|s| !s.is_empty());
            assert_eq!(
                matches(&not_blank_pattern(","), &text),
                ids.count() > 0,
                "{text:?}"
            );
        }
    }
}
