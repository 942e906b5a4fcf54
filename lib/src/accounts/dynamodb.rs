//! Accounts in the store's DynamoDB table.
//!
//! | item | `pk` | `sk` | notes |
//! |---|---|---|---|
//! | user | `U#{id}` | `ACCOUNT` | `gsi1pk=ACCOUNTS`, `gsi1sk={created_at}#{id}`: the admin list |
//! | login of a local account | `LOGIN#{email}` | `LOGIN` | `user_id`; written with the user |
//! | refresh-token family | `FAMILY#{id}` | `FAMILY` | `ttl` at its expiry |
//! | refresh token | `REFRESH#{sha256}` | `REFRESH` | `ttl` at its expiry |
//! | API key by hash | `KEY#{sha256}` | `KEY` | the key's record |
//! | API key by owner | `U#{owner}` | `K#{id}` | the same record: lists and deletes |
//! | settings | `CONFIG#first-account`, `CONFIG#signing-secret` | `CONFIG` | |
//!
//! Steps that must be atomic are one `TransactWriteItems` with conditions: a local account with
//! its login (and, for the first one, the first-account marker), a refresh with the token it uses
//! up and the next one, an API key's two items. Reads are strongly consistent except the admin
//! list, which reads the index (a user who signed in a moment ago may be missing from it for a
//! moment).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::{Accounts, ApiKey, CreateError, Family, RefreshToken, User, UserPatch};
use crate::auth::Role;
use crate::domain::{Page, Timestamp};
use crate::store::cursor::page;
use crate::store::dynamodb::{
    build, condition_failed_at, get_s, is_conditional, key, n, s, unavailable, DynamoStore, Item,
    Pages, GSI,
};
use crate::store::{record, PageRequest, StoreError};

const ACCOUNT: &str = "ACCOUNT";
const ACCOUNTS_INDEX_PK: &str = "ACCOUNTS";
const FIRST_ACCOUNT: &str = "CONFIG#first-account";
const SIGNING_SECRET: &str = "CONFIG#signing-secret";

fn user_key(id: &str) -> Item {
    key(format!("U#{id}"), ACCOUNT.into())
}

fn login_key(email: &str) -> Item {
    key(format!("LOGIN#{email}"), "LOGIN".into())
}

fn family_key(id: &str) -> Item {
    key(format!("FAMILY#{id}"), "FAMILY".into())
}

fn token_key(hash: &str) -> Item {
    key(format!("REFRESH#{hash}"), "REFRESH".into())
}

fn key_by_hash(hash: &str) -> Item {
    key(format!("KEY#{hash}"), "KEY".into())
}

fn key_by_owner(owner: &str, id: &str) -> Item {
    key(format!("U#{owner}"), format!("K#{id}"))
}

fn config_key(name: &str) -> Item {
    key(name.into(), "CONFIG".into())
}

fn optional_s(item: &Item, k: &str) -> Option<String> {
    match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn optional_time(item: &Item, k: &str) -> Result<Option<Timestamp>, StoreError> {
    optional_s(item, k).as_deref().map(record::time).transpose()
}

fn get_bool(item: &Item, k: &str) -> bool {
    matches!(item.get(k), Some(AttributeValue::Bool(true)))
}

fn put_opt(item: &mut Item, k: &str, v: Option<String>) {
    if let Some(v) = v {
        item.insert(k.to_owned(), s(v));
    }
}

/// Seconds since the epoch for DynamoDB's TTL: a day after `t`.
fn ttl(t: Timestamp) -> AttributeValue {
    n(t.millis().div_euclid(1000) + 24 * 3600)
}

fn user_item(u: &User) -> Item {
    let mut item = user_key(&u.id);
    let created = u.created_at.to_rfc3339();
    item.extend([
        ("gsi1pk".to_owned(), s(ACCOUNTS_INDEX_PK)),
        ("gsi1sk".to_owned(), s(format!("{created}#{}", u.id))),
        ("id".to_owned(), s(u.id.clone())),
        ("role".to_owned(), s(u.role.as_str())),
        ("tier".to_owned(), s(u.tier.clone())),
        ("disabled".to_owned(), AttributeValue::Bool(u.disabled)),
        ("created_at".to_owned(), s(created)),
    ]);
    put_opt(&mut item, "email", u.email.clone());
    put_opt(&mut item, "name", u.name.clone());
    put_opt(&mut item, "password_hash", u.password_hash.clone());
    put_opt(
        &mut item,
        "last_active_at",
        u.last_active_at.map(|t| t.to_rfc3339()),
    );
    item
}

fn user(item: &Item) -> Result<User, StoreError> {
    let role = get_s(item, "role")?;
    Ok(User {
        id: get_s(item, "id")?.to_owned(),
        email: optional_s(item, "email"),
        name: optional_s(item, "name"),
        role: Role::parse(role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        tier: get_s(item, "tier")?.to_owned(),
        disabled: get_bool(item, "disabled"),
        password_hash: optional_s(item, "password_hash"),
        created_at: record::time(get_s(item, "created_at")?)?,
        last_active_at: optional_time(item, "last_active_at")?,
    })
}

fn key_item(k: &ApiKey, at: Item) -> Item {
    let mut item = at;
    item.extend([
        ("id".to_owned(), s(k.id.clone())),
        ("owner".to_owned(), s(k.owner.clone())),
        ("name".to_owned(), s(k.name.clone())),
        ("hash".to_owned(), s(k.hash.clone())),
        ("created_at".to_owned(), s(k.created_at.to_rfc3339())),
    ]);
    put_opt(
        &mut item,
        "last_used_at",
        k.last_used_at.map(|t| t.to_rfc3339()),
    );
    item
}

fn api_key(item: &Item) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: get_s(item, "id")?.to_owned(),
        owner: get_s(item, "owner")?.to_owned(),
        name: get_s(item, "name")?.to_owned(),
        hash: get_s(item, "hash")?.to_owned(),
        created_at: record::time(get_s(item, "created_at")?)?,
        last_used_at: optional_time(item, "last_used_at")?,
    })
}

fn token_item(t: &RefreshToken) -> Item {
    let mut item = token_key(&t.hash);
    item.extend([
        ("hash".to_owned(), s(t.hash.clone())),
        ("family_id".to_owned(), s(t.family_id.clone())),
        ("user_id".to_owned(), s(t.user_id.clone())),
        ("created_at".to_owned(), s(t.created_at.to_rfc3339())),
        ("expires_at".to_owned(), s(t.expires_at.to_rfc3339())),
        ("ttl".to_owned(), ttl(t.expires_at)),
    ]);
    put_opt(&mut item, "used_at", t.used_at.map(|u| u.to_rfc3339()));
    item
}

fn token(item: &Item) -> Result<RefreshToken, StoreError> {
    Ok(RefreshToken {
        hash: get_s(item, "hash")?.to_owned(),
        family_id: get_s(item, "family_id")?.to_owned(),
        user_id: get_s(item, "user_id")?.to_owned(),
        created_at: record::time(get_s(item, "created_at")?)?,
        expires_at: record::time(get_s(item, "expires_at")?)?,
        used_at: optional_time(item, "used_at")?,
    })
}

fn family(item: &Item) -> Result<Family, StoreError> {
    Ok(Family {
        id: get_s(item, "id")?.to_owned(),
        user_id: get_s(item, "user_id")?.to_owned(),
        created_at: record::time(get_s(item, "created_at")?)?,
        expires_at: record::time(get_s(item, "expires_at")?)?,
        revoked: get_bool(item, "revoked"),
    })
}

impl DynamoStore {
    /// A transaction step that writes `item` only when its key is free.
    fn put_if_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        build(
            Put::builder()
                .table_name(self.table().name())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )
        .map(|p| TransactWriteItem::builder().put(p).build())
    }

    fn delete_step(&self, key: Item) -> Result<TransactWriteItem, StoreError> {
        build(
            Delete::builder()
                .table_name(self.table().name())
                .set_key(Some(key))
                .build(),
        )
        .map(|d| TransactWriteItem::builder().delete(d).build())
    }

    async fn transact(
        &self,
        steps: Vec<TransactWriteItem>,
    ) -> Result<
        (),
        aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        >,
    > {
        self.table()
            .client()
            .transact_write_items()
            .set_transact_items(Some(steps))
            .send()
            .await
            .map(|_| ())
    }

    async fn put_item_if_new(&self, item: Item) -> Result<bool, StoreError> {
        match self
            .table()
            .client()
            .put_item()
            .table_name(self.table().name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl Accounts for DynamoStore {
    async fn create_account(&self, u: &User, first: bool) -> Result<(), CreateError> {
        let email = u
            .email
            .clone()
            .ok_or_else(|| StoreError::Corrupt("a local account without an email".into()))?;
        let mut marker = config_key(FIRST_ACCOUNT);
        marker.insert("user_id".into(), s(u.id.clone()));
        let mut login = login_key(&email);
        login.insert("user_id".into(), s(u.id.clone()));
        let mut item = user_item(u);
        item.insert("login".into(), s(email));
        let steps = vec![
            if first {
                self.put_if_new(marker)?
            } else {
                // Any account marks that one exists; an earlier marker is kept.
                build(
                    Update::builder()
                        .table_name(self.table().name())
                        .set_key(Some(config_key(FIRST_ACCOUNT)))
                        .update_expression("SET user_id = if_not_exists(user_id, :u)")
                        .expression_attribute_values(":u", s(u.id.clone()))
                        .build(),
                )
                .map(|up| TransactWriteItem::builder().update(up).build())?
            },
            self.put_if_new(login)?,
            self.put_if_new(item)?,
        ];
        match self.transact(steps).await {
            Ok(()) => Ok(()),
            Err(e) if first && condition_failed_at(&e, 0) => Err(CreateError::NotFirst),
            Err(e) if condition_failed_at(&e, 1) => Err(CreateError::Taken),
            Err(e) => Err(CreateError::Store(unavailable(e))),
        }
    }

    async fn has_accounts(&self) -> Result<bool, StoreError> {
        Ok(self
            .table()
            .get_item(config_key(FIRST_ACCOUNT))
            .await?
            .is_some())
    }

    async fn ensure_user(&self, u: &User) -> Result<User, StoreError> {
        self.put_item_if_new(user_item(u)).await?;
        self.get_user(&u.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("user {} vanished", u.id)))
    }

    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.table()
            .get_item(user_key(id))
            .await?
            .as_ref()
            .map(user)
            .transpose()
    }

    async fn find_login(&self, email: &str) -> Result<Option<User>, StoreError> {
        let Some(login) = self.table().get_item(login_key(email)).await? else {
            return Ok(None);
        };
        self.get_user(get_s(&login, "user_id")?).await
    }

    async fn list_users(&self, request: &PageRequest) -> Result<Page<User>, StoreError> {
        let fetch = request.fetch();
        let q = self
            .table()
            .query()
            .index_name(GSI)
            .expression_attribute_values(":p", s(ACCOUNTS_INDEX_PK))
            .limit(fetch as i32);
        let q = match request.after()? {
            Some((at, id)) => q
                .key_condition_expression("gsi1pk = :p AND gsi1sk > :after")
                .expression_attribute_values(":after", s(format!("{at}#{id}"))),
            None => q.key_condition_expression("gsi1pk = :p"),
        };
        let items = Pages::new(q).collect(fetch).await?;
        let mut rows = items.iter().map(user).collect::<Result<Vec<_>, _>>()?;
        rows.truncate(fetch);
        Ok(page(rows, request))
    }

    async fn update_user(&self, id: &str, p: &UserPatch) -> Result<Option<User>, StoreError> {
        let Some(mut u) = self.get_user(id).await? else {
            return Ok(None);
        };
        let mut sets: Vec<String> = Vec::new();
        let mut values: Vec<(String, AttributeValue)> = Vec::new();
        let mut set = |field: &str, v: AttributeValue| {
            sets.push(format!("#{field} = :{field}"));
            values.push((field.to_owned(), v));
        };
        if let Some(role) = p.role {
            u.role = role;
            set("role", s(role.as_str()));
        }
        if let Some(tier) = &p.tier {
            u.tier = tier.clone();
            set("tier", s(tier.clone()));
        }
        if let Some(disabled) = p.disabled {
            u.disabled = disabled;
            set("disabled", AttributeValue::Bool(disabled));
        }
        if let Some(email) = p.email.as_ref().filter(|_| !u.is_local()) {
            u.email = Some(email.clone());
            set("email", s(email.clone()));
        }
        if let Some(name) = &p.name {
            u.name = Some(name.clone());
            set("name", s(name.clone()));
        }
        if let Some(hash) = p.password_hash.as_ref().filter(|_| u.is_local()) {
            u.password_hash = Some(hash.clone());
            set("password_hash", s(hash.clone()));
        }
        if let Some(at) = p.last_active_at {
            u.last_active_at = Some(at);
            set("last_active_at", s(at.to_rfc3339()));
        }
        if sets.is_empty() {
            return Ok(Some(u));
        }
        let mut update = self
            .table()
            .client()
            .update_item()
            .table_name(self.table().name())
            .set_key(Some(user_key(id)))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression("attribute_exists(pk)");
        for (field, v) in values {
            update = update
                .expression_attribute_names(format!("#{field}"), field.clone())
                .expression_attribute_values(format!(":{field}"), v);
        }
        match update.send().await {
            Ok(_) => Ok(Some(u)),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn start_family(&self, f: &Family, first: &RefreshToken) -> Result<(), StoreError> {
        let mut item = family_key(&f.id);
        item.extend([
            ("id".to_owned(), s(f.id.clone())),
            ("user_id".to_owned(), s(f.user_id.clone())),
            ("created_at".to_owned(), s(f.created_at.to_rfc3339())),
            ("expires_at".to_owned(), s(f.expires_at.to_rfc3339())),
            ("revoked".to_owned(), AttributeValue::Bool(f.revoked)),
            ("ttl".to_owned(), ttl(f.expires_at)),
        ]);
        let steps = vec![self.put_if_new(item)?, self.put_if_new(token_item(first))?];
        self.transact(steps).await.map_err(unavailable)
    }

    async fn refresh_token(
        &self,
        hash: &str,
    ) -> Result<Option<(RefreshToken, Family)>, StoreError> {
        let Some(t) = self.table().get_item(token_key(hash)).await? else {
            return Ok(None);
        };
        let t = token(&t)?;
        let Some(f) = self.table().get_item(family_key(&t.family_id)).await? else {
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
        let use_up = build(
            Update::builder()
                .table_name(self.table().name())
                .set_key(Some(token_key(used)))
                .update_expression("SET used_at = :at")
                .condition_expression("attribute_exists(pk) AND attribute_not_exists(used_at)")
                .expression_attribute_values(":at", s(at.to_rfc3339()))
                .build(),
        )
        .map(|u| TransactWriteItem::builder().update(u).build())?;
        match self
            .transact(vec![use_up, self.put_if_new(token_item(next))?])
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if condition_failed_at(&e, 0) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn revoke_family(&self, id: &str) -> Result<(), StoreError> {
        match self
            .table()
            .client()
            .update_item()
            .table_name(self.table().name())
            .set_key(Some(family_key(id)))
            .update_expression("SET revoked = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn create_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        let steps = vec![
            self.put_if_new(key_item(k, key_by_hash(&k.hash)))?,
            self.put_if_new(key_item(k, key_by_owner(&k.owner, &k.id)))?,
        ];
        self.transact(steps).await.map_err(unavailable)
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.table()
            .get_item(key_by_hash(hash))
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
        let items = Pages::new(
            self.table()
                .query()
                .key_condition_expression("pk = :p AND begins_with(sk, :k)")
                .expression_attribute_values(":p", s(format!("U#{owner}")))
                .expression_attribute_values(":k", s("K#"))
                .consistent_read(true),
        )
        .collect(usize::MAX)
        .await?;
        let keys = items.iter().map(api_key).collect::<Result<Vec<_>, _>>()?;
        super::page_after(keys, request)
    }

    async fn delete_key(&self, owner: &str, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let Some(item) = self.table().get_item(key_by_owner(owner, id)).await? else {
            return Ok(None);
        };
        let k = api_key(&item)?;
        let steps = vec![
            self.delete_step(key_by_owner(owner, id))?,
            self.delete_step(key_by_hash(&k.hash))?,
        ];
        self.transact(steps).await.map_err(unavailable)?;
        Ok(Some(k))
    }

    async fn touch_key(&self, owner: &str, id: &str, at: Timestamp) -> Result<(), StoreError> {
        let Some(item) = self.table().get_item(key_by_owner(owner, id)).await? else {
            return Ok(());
        };
        let hash = get_s(&item, "hash")?.to_owned();
        let touch = |k: Item| {
            build(
                Update::builder()
                    .table_name(self.table().name())
                    .set_key(Some(k))
                    .update_expression("SET last_used_at = :at")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(":at", s(at.to_rfc3339()))
                    .build(),
            )
            .map(|u| TransactWriteItem::builder().update(u).build())
        };
        match self
            .transact(vec![
                touch(key_by_owner(owner, id))?,
                touch(key_by_hash(&hash))?,
            ])
            .await
        {
            Ok(()) => Ok(()),
            // Deleted meanwhile: nothing to record.
            Err(e) if condition_failed_at(&e, 0) || condition_failed_at(&e, 1) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn signing_secret(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let mut item = config_key(SIGNING_SECRET);
        item.insert("value".into(), s(STANDARD.encode(candidate)));
        self.put_item_if_new(item).await?;
        let stored = self
            .table()
            .get_item(config_key(SIGNING_SECRET))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the signing secret vanished".into()))?;
        STANDARD
            .decode(get_s(&stored, "value")?)
            .map_err(|e| StoreError::Corrupt(format!("signing secret: {e}")))
    }
}
