//! Accounts in the embedded SQLite database, beside the conversations (one more schema version,
//! [`MIGRATION`]). Every step that must be atomic is one transaction on the store's one
//! connection.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::{Accounts, ApiKey, CreateError, Family, RefreshToken, User, UserPatch};
use crate::auth::Role;
use crate::domain::{Page, Timestamp};
use crate::store::cursor::page;
use crate::store::record;
use crate::store::sqlite::SqliteStore;
use crate::store::{PageRequest, StoreError};

/// The accounts' tables: users (with the login of local accounts, unique), refresh-token families
/// and tokens, API keys, and small settings (the first-account marker, the signing secret).
pub const MIGRATION: &str = r#"
CREATE TABLE users (
    id TEXT NOT NULL PRIMARY KEY,
    email TEXT,
    login TEXT UNIQUE,
    name TEXT,
    role TEXT NOT NULL,
    tier TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT,
    created_at TEXT NOT NULL,
    last_active_at TEXT
) WITHOUT ROWID;
CREATE INDEX users_by_created ON users (created_at, id);
CREATE TABLE refresh_families (
    id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE refresh_tokens (
    hash TEXT NOT NULL PRIMARY KEY,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE TABLE api_keys (
    hash TEXT NOT NULL PRIMARY KEY,
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT
) WITHOUT ROWID;
CREATE UNIQUE INDEX api_keys_by_owner ON api_keys (owner, created_at, id);
CREATE TABLE account_settings (
    key TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#;

const FIRST_ACCOUNT: &str = "first-account";
const SIGNING_SECRET: &str = "signing-secret";

const USER_COLUMNS: &str =
    "id, email, name, role, tier, disabled, password_hash, created_at, last_active_at";
const KEY_COLUMNS: &str = "hash, id, owner, name, created_at, last_used_at";

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn time(r: &Row<'_>, name: &str) -> Result<Timestamp, StoreError> {
    record::time(&r.get::<_, String>(name).map_err(corrupt)?)
}

fn optional_time(r: &Row<'_>, name: &str) -> Result<Option<Timestamp>, StoreError> {
    r.get::<_, Option<String>>(name)
        .map_err(corrupt)?
        .as_deref()
        .map(record::time)
        .transpose()
}

fn user(r: &Row<'_>) -> Result<User, StoreError> {
    let role: String = r.get("role").map_err(corrupt)?;
    Ok(User {
        id: r.get("id").map_err(corrupt)?,
        email: r.get("email").map_err(corrupt)?,
        name: r.get("name").map_err(corrupt)?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("role {role:?}")))?,
        tier: r.get("tier").map_err(corrupt)?,
        disabled: r.get("disabled").map_err(corrupt)?,
        password_hash: r.get("password_hash").map_err(corrupt)?,
        created_at: time(r, "created_at")?,
        last_active_at: optional_time(r, "last_active_at")?,
    })
}

fn key(r: &Row<'_>) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        hash: r.get("hash").map_err(corrupt)?,
        id: r.get("id").map_err(corrupt)?,
        owner: r.get("owner").map_err(corrupt)?,
        name: r.get("name").map_err(corrupt)?,
        created_at: time(r, "created_at")?,
        last_used_at: optional_time(r, "last_used_at")?,
    })
}

fn token_and_family(r: &Row<'_>) -> Result<(RefreshToken, Family), StoreError> {
    let token = RefreshToken {
        hash: r.get("hash").map_err(corrupt)?,
        family_id: r.get("family_id").map_err(corrupt)?,
        user_id: r.get("user_id").map_err(corrupt)?,
        created_at: time(r, "created_at")?,
        expires_at: time(r, "expires_at")?,
        used_at: optional_time(r, "used_at")?,
    };
    let family = Family {
        id: token.family_id.clone(),
        user_id: r.get("f_user_id").map_err(corrupt)?,
        created_at: time(r, "f_created_at")?,
        expires_at: time(r, "f_expires_at")?,
        revoked: r.get("f_revoked").map_err(corrupt)?,
    };
    Ok((token, family))
}

/// Runs `sql` and reads every row with `read`.
fn rows<T>(
    c: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = c.prepare_cached(sql).map_err(unavailable)?;
    let mut found = stmt.query(params).map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(row) = found.next().map_err(unavailable)? {
        out.push(read(row)?);
    }
    Ok(out)
}

fn insert_user(c: &rusqlite::Connection, u: &User, or_ignore: bool) -> rusqlite::Result<usize> {
    let login = u.password_hash.as_ref().and(u.email.as_ref());
    c.execute(
        &format!(
            "INSERT {} INTO users ({USER_COLUMNS}, login) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            if or_ignore { "OR IGNORE" } else { "" }
        ),
        params![
            u.id,
            u.email,
            u.name,
            u.role.as_str(),
            u.tier,
            u.disabled,
            u.password_hash,
            u.created_at.to_rfc3339(),
            u.last_active_at.map(|t| t.to_rfc3339()),
            login
        ],
    )
}

fn get_user(c: &rusqlite::Connection, id: &str) -> Result<Option<User>, StoreError> {
    Ok(rows(
        c,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        params![id],
        user,
    )?
    .into_iter()
    .next())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

#[async_trait]
impl Accounts for SqliteStore {
    async fn create_account(&self, u: &User, first: bool) -> Result<(), CreateError> {
        let u = u.clone();
        let outcome = self
            .with(move |c| {
                let tx = c.transaction().map_err(unavailable)?;
                let claimed = tx
                    .execute(
                        "INSERT OR IGNORE INTO account_settings (key, value) VALUES (?1, ?2)",
                        params![FIRST_ACCOUNT, u.id],
                    )
                    .map_err(unavailable)?;
                if first && claimed == 0 {
                    return Ok(Err(CreateError::NotFirst));
                }
                match insert_user(&tx, &u, false) {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => return Ok(Err(CreateError::Taken)),
                    Err(e) => return Err(unavailable(e)),
                }
                tx.commit().map_err(unavailable)?;
                Ok(Ok(()))
            })
            .await?;
        outcome
    }

    async fn has_accounts(&self) -> Result<bool, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM account_settings WHERE key = ?1",
                params![FIRST_ACCOUNT],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(unavailable)
        })
        .await
    }

    async fn ensure_user(&self, u: &User) -> Result<User, StoreError> {
        let u = u.clone();
        self.with(move |c| {
            insert_user(c, &u, true).map_err(unavailable)?;
            get_user(c, &u.id)?.ok_or_else(|| corrupt(format!("user {} vanished", u.id)))
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| get_user(c, &id)).await
    }

    async fn find_login(&self, email: &str) -> Result<Option<User>, StoreError> {
        let email = email.to_owned();
        self.with(move |c| {
            Ok(rows(
                c,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE login = ?1"),
                params![email],
                user,
            )?
            .into_iter()
            .next())
        })
        .await
    }

    async fn list_users(&self, request: &PageRequest) -> Result<Page<User>, StoreError> {
        let request = request.clone();
        let after = request.after()?;
        self.with(move |c| {
            let (key, id) = after.unwrap_or_default();
            let found = rows(
                c,
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE created_at > ?1 OR (created_at = ?1 AND id > ?2) \
                     ORDER BY created_at, id LIMIT ?3"
                ),
                params![key, id, request.fetch() as i64],
                user,
            )?;
            Ok(page(found, &request))
        })
        .await
    }

    async fn update_user(&self, id: &str, p: &UserPatch) -> Result<Option<User>, StoreError> {
        let (id, p) = (id.to_owned(), p.clone());
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let Some(mut u) = get_user(&tx, &id)? else {
                return Ok(None);
            };
            if let Some(role) = p.role {
                u.role = role;
            }
            if let Some(tier) = p.tier {
                u.tier = tier;
            }
            if let Some(disabled) = p.disabled {
                u.disabled = disabled;
            }
            if let Some(email) = p.email.filter(|_| !u.is_local()) {
                u.email = Some(email);
            }
            if let Some(name) = p.name {
                u.name = Some(name);
            }
            if let Some(hash) = p.password_hash.filter(|_| u.is_local()) {
                u.password_hash = Some(hash);
            }
            if let Some(at) = p.last_active_at {
                u.last_active_at = Some(at);
            }
            tx.execute(
                "UPDATE users SET email = ?2, name = ?3, role = ?4, tier = ?5, disabled = ?6, \
                 password_hash = ?7, last_active_at = ?8 WHERE id = ?1",
                params![
                    u.id,
                    u.email,
                    u.name,
                    u.role.as_str(),
                    u.tier,
                    u.disabled,
                    u.password_hash,
                    u.last_active_at.map(|t| t.to_rfc3339())
                ],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(Some(u))
        })
        .await
    }

    async fn start_family(&self, f: &Family, first: &RefreshToken) -> Result<(), StoreError> {
        let (f, t) = (f.clone(), first.clone());
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            // A user's spent families go when they sign in again.
            let now = t.created_at.to_rfc3339();
            tx.execute(
                "DELETE FROM refresh_tokens WHERE user_id = ?1 AND expires_at < ?2",
                params![f.user_id, now],
            )
            .map_err(unavailable)?;
            tx.execute(
                "DELETE FROM refresh_families WHERE user_id = ?1 AND expires_at < ?2",
                params![f.user_id, now],
            )
            .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO refresh_families (id, user_id, created_at, expires_at, revoked) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![f.id, f.user_id, f.created_at.to_rfc3339(), f.expires_at.to_rfc3339(), f.revoked],
            )
            .map_err(unavailable)?;
            insert_token(&tx, &t)?;
            tx.commit().map_err(unavailable)
        })
        .await
    }

    async fn refresh_token(
        &self,
        hash: &str,
    ) -> Result<Option<(RefreshToken, Family)>, StoreError> {
        let hash = hash.to_owned();
        self.with(move |c| {
            Ok(rows(
                c,
                "SELECT t.hash, t.family_id, t.user_id, t.created_at, t.expires_at, t.used_at, \
                 f.user_id AS f_user_id, f.created_at AS f_created_at, f.expires_at AS f_expires_at, \
                 f.revoked AS f_revoked \
                 FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.hash = ?1",
                params![hash],
                token_and_family,
            )?
            .into_iter()
            .next())
        })
        .await
    }

    async fn rotate(
        &self,
        used: &str,
        at: Timestamp,
        next: &RefreshToken,
    ) -> Result<bool, StoreError> {
        let (used, next) = (used.to_owned(), next.clone());
        self.with(move |c| {
            let tx = c.transaction().map_err(unavailable)?;
            let n = tx
                .execute(
                    "UPDATE refresh_tokens SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL",
                    params![used, at.to_rfc3339()],
                )
                .map_err(unavailable)?;
            if n == 0 {
                return Ok(false);
            }
            insert_token(&tx, &next)?;
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn revoke_family(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.execute(
                "UPDATE refresh_families SET revoked = 1 WHERE id = ?1",
                params![id],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
        .await
    }

    async fn create_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        let k = k.clone();
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![
                    k.hash,
                    k.id,
                    k.owner,
                    k.name,
                    k.created_at.to_rfc3339(),
                    k.last_used_at.map(|t| t.to_rfc3339())
                ],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
        .await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = hash.to_owned();
        self.with(move |c| {
            Ok(rows(
                c,
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1"),
                params![hash],
                key,
            )?
            .into_iter()
            .next())
        })
        .await
    }

    async fn list_keys(
        &self,
        owner: &str,
        request: &PageRequest,
    ) -> Result<Page<ApiKey>, StoreError> {
        let (owner, request) = (owner.to_owned(), request.clone());
        let after = request.after()?;
        self.with(move |c| {
            let (at, id) = after.unwrap_or_default();
            let found = rows(
                c,
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE owner = ?1 \
                     AND (created_at > ?2 OR (created_at = ?2 AND id > ?3)) ORDER BY created_at, id LIMIT ?4"
                ),
                params![owner, at, id, request.fetch() as i64],
                key,
            )?;
            Ok(page(found, &request))
        })
        .await
    }

    async fn delete_key(&self, owner: &str, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let (owner, id) = (owner.to_owned(), id.to_owned());
        self.with(move |c| {
            Ok(rows(
                c,
                &format!(
                    "DELETE FROM api_keys WHERE owner = ?1 AND id = ?2 RETURNING {KEY_COLUMNS}"
                ),
                params![owner, id],
                key,
            )?
            .into_iter()
            .next())
        })
        .await
    }

    async fn touch_key(&self, owner: &str, id: &str, at: Timestamp) -> Result<(), StoreError> {
        let (owner, id) = (owner.to_owned(), id.to_owned());
        self.with(move |c| {
            c.execute(
                "UPDATE api_keys SET last_used_at = ?3 WHERE owner = ?1 AND id = ?2",
                params![owner, id, at.to_rfc3339()],
            )
            .map(|_| ())
            .map_err(unavailable)
        })
        .await
    }

    async fn signing_secret(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let encoded = STANDARD.encode(candidate);
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO account_settings (key, value) VALUES (?1, ?2)",
                params![SIGNING_SECRET, encoded],
            )
            .map_err(unavailable)?;
            let stored: String = c
                .query_row(
                    "SELECT value FROM account_settings WHERE key = ?1",
                    params![SIGNING_SECRET],
                    |r| r.get(0),
                )
                .map_err(unavailable)?;
            STANDARD
                .decode(stored)
                .map_err(|e| corrupt(format!("signing secret: {e}")))
        })
        .await
    }
}

fn insert_token(c: &rusqlite::Connection, t: &RefreshToken) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO refresh_tokens (hash, family_id, user_id, created_at, expires_at, used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            t.hash,
            t.family_id,
            t.user_id,
            t.created_at.to_rfc3339(),
            t.expires_at.to_rfc3339(),
            t.used_at.map(|u| u.to_rfc3339())
        ],
    )
    .map(|_| ())
    .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::contract::Subject;
    use crate::store::sqlite::SqliteStore;

    crate::accounts_contract_tests!(contract, async {
        Some(Subject::new(SqliteStore::in_memory().unwrap()))
    });
}
