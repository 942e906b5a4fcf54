//! Accounts in the store's MongoDB database: collections `users` (`_id` = user id), `logins`
//! (`_id` = a local account's email), `refresh_families` (`_id` = family id), `refresh_tokens`
//! (`_id` = SHA-256 of the token), `api_keys` (`_id` = SHA-256 of the key) and
//! `account_settings` (`_id` = `first-account`, `signing-secret`).
//!
//! Uniqueness rests on `_id` alone (every MongoDB-wire server enforces it): a login, the first
//! account, a family's next token. Without multi-document transactions (a single-node server has
//! none) a step that writes two documents writes the one that decides first and undoes it when
//! the second fails, as the store does for messages.

use ::mongodb::bson::{doc, Bson, Document};
use ::mongodb::error::{ErrorKind, WriteFailure};
use ::mongodb::options::ReturnDocument;
use ::mongodb::{Collection, Database, IndexModel};
use async_trait::async_trait;
use futures::TryStreamExt;

use super::{page_after, Accounts, ApiKey, CreateError, Family, RefreshToken, User, UserPatch};
use crate::auth::Role;
use crate::domain::{Page, Timestamp};
use crate::store::mongodb::MongoStore;
use crate::store::{record, PageRequest, StoreError};

const FIRST_ACCOUNT: &str = "first-account";
const SIGNING_SECRET: &str = "signing-secret";

fn unavailable(e: ::mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Whether an insert failed because its `_id` exists.
fn is_duplicate(e: &::mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000
    ) || matches!(
        e.kind.as_ref(),
        ErrorKind::InsertMany(m) if m.write_errors.as_ref().is_some_and(|es| es.iter().any(|w| w.code == 11000))
    )
}

/// Inserts `d`; `false` when its `_id` exists.
async fn insert_new(c: &Collection<Document>, d: Document) -> Result<bool, StoreError> {
    match c.insert_one(d).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate(&e) => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

fn text(d: &Document, k: &str) -> Result<String, StoreError> {
    match d.get(k) {
        Some(Bson::String(v)) => Ok(v.clone()),
        other => Err(corrupt(format!("`{k}` is not text: {other:?}"))),
    }
}

fn optional_text(d: &Document, k: &str) -> Option<String> {
    match d.get(k) {
        Some(Bson::String(v)) => Some(v.clone()),
        _ => None,
    }
}

fn time(d: &Document, k: &str) -> Result<Timestamp, StoreError> {
    record::time(&text(d, k)?)
}

fn optional_time(d: &Document, k: &str) -> Result<Option<Timestamp>, StoreError> {
    optional_text(d, k).as_deref().map(record::time).transpose()
}

fn flag(d: &Document, k: &str) -> bool {
    matches!(d.get(k), Some(Bson::Boolean(true)))
}

fn or_null(v: Option<String>) -> Bson {
    v.map_or(Bson::Null, Bson::String)
}

fn user_doc(u: &User) -> Document {
    doc! {
        "_id": &u.id,
        "email": or_null(u.email.clone()),
        "name": or_null(u.name.clone()),
        "role": u.role.as_str(),
        "tier": &u.tier,
        "disabled": u.disabled,
        "password_hash": or_null(u.password_hash.clone()),
        "created_at": u.created_at.to_rfc3339(),
        "last_active_at": or_null(u.last_active_at.map(|t| t.to_rfc3339())),
    }
}

fn user(d: &Document) -> Result<User, StoreError> {
    let role = text(d, "role")?;
    Ok(User {
        id: text(d, "_id")?,
        email: optional_text(d, "email"),
        name: optional_text(d, "name"),
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("role {role:?}")))?,
        tier: text(d, "tier")?,
        disabled: flag(d, "disabled"),
        password_hash: optional_text(d, "password_hash"),
        created_at: time(d, "created_at")?,
        last_active_at: optional_time(d, "last_active_at")?,
    })
}

fn token_doc(t: &RefreshToken) -> Document {
    doc! {
        "_id": &t.hash,
        "family_id": &t.family_id,
        "user_id": &t.user_id,
        "created_at": t.created_at.to_rfc3339(),
        "expires_at": t.expires_at.to_rfc3339(),
        "used_at": or_null(t.used_at.map(|u| u.to_rfc3339())),
    }
}

fn token(d: &Document) -> Result<RefreshToken, StoreError> {
    Ok(RefreshToken {
        hash: text(d, "_id")?,
        family_id: text(d, "family_id")?,
        user_id: text(d, "user_id")?,
        created_at: time(d, "created_at")?,
        expires_at: time(d, "expires_at")?,
        used_at: optional_time(d, "used_at")?,
    })
}

fn family(d: &Document) -> Result<Family, StoreError> {
    Ok(Family {
        id: text(d, "_id")?,
        user_id: text(d, "user_id")?,
        created_at: time(d, "created_at")?,
        expires_at: time(d, "expires_at")?,
        revoked: flag(d, "revoked"),
    })
}

fn key_doc(k: &ApiKey) -> Document {
    doc! {
        "_id": &k.hash,
        "id": &k.id,
        "owner": &k.owner,
        "name": &k.name,
        "created_at": k.created_at.to_rfc3339(),
        "last_used_at": or_null(k.last_used_at.map(|t| t.to_rfc3339())),
    }
}

fn api_key(d: &Document) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        hash: text(d, "_id")?,
        id: text(d, "id")?,
        owner: text(d, "owner")?,
        name: text(d, "name")?,
        created_at: time(d, "created_at")?,
        last_used_at: optional_time(d, "last_used_at")?,
    })
}

/// The collections.
struct Collections {
    users: Collection<Document>,
    logins: Collection<Document>,
    families: Collection<Document>,
    tokens: Collection<Document>,
    keys: Collection<Document>,
    settings: Collection<Document>,
}

fn collections(db: &Database) -> Collections {
    Collections {
        users: db.collection("users"),
        logins: db.collection("logins"),
        families: db.collection("refresh_families"),
        tokens: db.collection("refresh_tokens"),
        keys: db.collection("api_keys"),
        settings: db.collection("account_settings"),
    }
}

/// Creates the accounts' indexes (idempotent): users by creation, keys by owner.
pub async fn ensure_indexes(db: &Database) -> Result<(), StoreError> {
    let c = collections(db);
    let index = |keys: Document| IndexModel::builder().keys(keys).build();
    c.users
        .create_index(index(doc! {"created_at": 1, "_id": 1}))
        .await
        .map_err(unavailable)?;
    c.keys
        .create_index(index(doc! {"owner": 1, "created_at": 1, "id": 1}))
        .await
        .map_err(unavailable)?;
    Ok(())
}

async fn find_one(
    c: &Collection<Document>,
    filter: Document,
) -> Result<Option<Document>, StoreError> {
    c.find_one(filter).await.map_err(unavailable)
}

impl MongoStore {
    fn accounts(&self) -> Collections {
        collections(self.database())
    }
}

#[async_trait]
impl Accounts for MongoStore {
    async fn create_account(&self, u: &User, first: bool) -> Result<(), CreateError> {
        let c = self.accounts();
        let email = u
            .email
            .clone()
            .ok_or_else(|| corrupt("a local account without an email"))?;
        let claimed =
            insert_new(&c.settings, doc! {"_id": FIRST_ACCOUNT, "user_id": &u.id}).await?;
        if first && !claimed {
            return Err(CreateError::NotFirst);
        }
        let undo_marker = || async {
            if first {
                let _ = c
                    .settings
                    .delete_one(doc! {"_id": FIRST_ACCOUNT, "user_id": &u.id})
                    .await;
            }
        };
        match insert_new(&c.logins, doc! {"_id": &email, "user_id": &u.id}).await {
            Ok(true) => {}
            Ok(false) => {
                undo_marker().await;
                return Err(CreateError::Taken);
            }
            Err(e) => {
                undo_marker().await;
                return Err(e.into());
            }
        }
        let mut d = user_doc(u);
        d.insert("login", &email);
        if let Err(e) = c.users.insert_one(d).await {
            let _ = c
                .logins
                .delete_one(doc! {"_id": &email, "user_id": &u.id})
                .await;
            undo_marker().await;
            return Err(unavailable(e).into());
        }
        Ok(())
    }

    async fn has_accounts(&self) -> Result<bool, StoreError> {
        Ok(
            find_one(&self.accounts().settings, doc! {"_id": FIRST_ACCOUNT})
                .await?
                .is_some(),
        )
    }

    async fn ensure_user(&self, u: &User) -> Result<User, StoreError> {
        let c = self.accounts();
        insert_new(&c.users, user_doc(u)).await?;
        find_one(&c.users, doc! {"_id": &u.id})
            .await?
            .as_ref()
            .map(user)
            .transpose()?
            .ok_or_else(|| corrupt(format!("user {} vanished", u.id)))
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        find_one(&self.accounts().users, doc! {"_id": id})
            .await?
            .as_ref()
            .map(user)
            .transpose()
    }

    async fn find_login(&self, email: &str) -> Result<Option<User>, StoreError> {
        let Some(login) = find_one(&self.accounts().logins, doc! {"_id": email}).await? else {
            return Ok(None);
        };
        self.get_user(&text(&login, "user_id")?).await
    }

    async fn list_users(&self, request: &PageRequest) -> Result<Page<User>, StoreError> {
        let filter = match request.after()? {
            Some((at, id)) => doc! {"$or": [
                {"created_at": {"$gt": &at}},
                {"created_at": &at, "_id": {"$gt": &id}},
            ]},
            None => doc! {},
        };
        let docs: Vec<Document> = self
            .accounts()
            .users
            .find(filter)
            .sort(doc! {"created_at": 1, "_id": 1})
            .limit(request.fetch() as i64)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let rows = docs.iter().map(user).collect::<Result<Vec<_>, _>>()?;
        Ok(crate::store::cursor::page(rows, request))
    }

    async fn update_user(&self, id: &str, p: &UserPatch) -> Result<Option<User>, StoreError> {
        let c = self.accounts();
        let Some(current) = self.get_user(id).await? else {
            return Ok(None);
        };
        let mut set = Document::new();
        if let Some(role) = p.role {
            set.insert("role", role.as_str());
        }
        if let Some(tier) = &p.tier {
            set.insert("tier", tier);
        }
        if let Some(disabled) = p.disabled {
            set.insert("disabled", disabled);
        }
        if let Some(email) = p.email.as_ref().filter(|_| !current.is_local()) {
            set.insert("email", email);
        }
        if let Some(name) = &p.name {
            set.insert("name", name);
        }
        if let Some(hash) = p.password_hash.as_ref().filter(|_| current.is_local()) {
            set.insert("password_hash", hash);
        }
        if let Some(at) = p.last_active_at {
            set.insert("last_active_at", at.to_rfc3339());
        }
        if set.is_empty() {
            return Ok(Some(current));
        }
        c.users
            .find_one_and_update(doc! {"_id": id}, doc! {"$set": set})
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(user)
            .transpose()
    }

    async fn start_family(&self, f: &Family, first: &RefreshToken) -> Result<(), StoreError> {
        let c = self.accounts();
        c.families
            .insert_one(doc! {
                "_id": &f.id,
                "user_id": &f.user_id,
                "created_at": f.created_at.to_rfc3339(),
                "expires_at": f.expires_at.to_rfc3339(),
                "revoked": f.revoked,
            })
            .await
            .map_err(unavailable)?;
        if let Err(e) = c.tokens.insert_one(token_doc(first)).await {
            let _ = c.families.delete_one(doc! {"_id": &f.id}).await;
            return Err(unavailable(e));
        }
        // A user's spent sign-ins go when they sign in again.
        let now = first.created_at.to_rfc3339();
        let spent = doc! {"user_id": &f.user_id, "expires_at": {"$lt": &now}};
        c.tokens
            .delete_many(spent.clone())
            .await
            .map_err(unavailable)?;
        c.families.delete_many(spent).await.map_err(unavailable)?;
        Ok(())
    }

    async fn refresh_token(
        &self,
        hash: &str,
    ) -> Result<Option<(RefreshToken, Family)>, StoreError> {
        let c = self.accounts();
        let Some(t) = find_one(&c.tokens, doc! {"_id": hash}).await? else {
            return Ok(None);
        };
        let t = token(&t)?;
        let Some(f) = find_one(&c.families, doc! {"_id": &t.family_id}).await? else {
            return Ok(None);
        };
        Ok(Some((t, family(&f)?)))
    }

    async fn rotate(
        &self,
        used: &str,
        at: Timestamp,
        next: &RefreshToken,
    ) -> Result<bool, StoreError> {
        let c = self.accounts();
        let taken = c
            .tokens
            .find_one_and_update(
                doc! {"_id": used, "used_at": Bson::Null},
                doc! {"$set": {"used_at": at.to_rfc3339()}},
            )
            .await
            .map_err(unavailable)?;
        if taken.is_none() {
            return Ok(false);
        }
        if let Err(e) = c.tokens.insert_one(token_doc(next)).await {
            let _ = c
                .tokens
                .update_one(doc! {"_id": used}, doc! {"$set": {"used_at": Bson::Null}})
                .await;
            return Err(unavailable(e));
        }
        Ok(true)
    }

    async fn revoke_family(&self, id: &str) -> Result<(), StoreError> {
        self.accounts()
            .families
            .update_one(doc! {"_id": id}, doc! {"$set": {"revoked": true}})
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn create_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        self.accounts()
            .keys
            .insert_one(key_doc(k))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        find_one(&self.accounts().keys, doc! {"_id": hash})
            .await?
            .as_ref()
            .map(api_key)
            .transpose()
    }

    async fn list_keys(
        &self,
        owner: &str,
        request: &PageRequest,
    ) -> Result<Page<ApiKey>, StoreError> {
        // One person's keys are few (at most 100): read them all, page in memory.
        let docs: Vec<Document> = self
            .accounts()
            .keys
            .find(doc! {"owner": owner})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let keys = docs.iter().map(api_key).collect::<Result<Vec<_>, _>>()?;
        page_after(keys, request)
    }

    async fn delete_key(&self, owner: &str, id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.accounts()
            .keys
            .find_one_and_delete(doc! {"owner": owner, "id": id})
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(api_key)
            .transpose()
    }

    async fn touch_key(&self, owner: &str, id: &str, at: Timestamp) -> Result<(), StoreError> {
        self.accounts()
            .keys
            .update_one(
                doc! {"owner": owner, "id": id},
                doc! {"$set": {"last_used_at": at.to_rfc3339()}},
            )
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn signing_secret(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let c = self.accounts();
        insert_new(
            &c.settings,
            doc! {"_id": SIGNING_SECRET, "value": STANDARD.encode(candidate)},
        )
        .await?;
        let stored = find_one(&c.settings, doc! {"_id": SIGNING_SECRET})
            .await?
            .ok_or_else(|| corrupt("the signing secret vanished"))?;
        STANDARD
            .decode(text(&stored, "value")?)
            .map_err(|e| corrupt(format!("signing secret: {e}")))
    }
}
