//! The contract every `Accounts` adapter passes, one test per check through
//! [`accounts_contract_tests!`](crate::accounts_contract_tests). Checks use unique ids, emails and
//! hashes, so a shared server is fine — except the first-account and signing-secret checks, which
//! need an adapter of their own (a fresh database), as every setup gives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test suite: failing loudly is its job

use std::sync::Arc;

use super::{Accounts, ApiKey, CreateError, Family, RefreshToken, User, UserPatch};
use crate::auth::Role;
use crate::domain::Timestamp;
use crate::store::PageRequest;

/// One `#[tokio::test]` per check of the `Accounts` contract, in `mod $name`, against the adapter
/// the setup (an `async` block giving `Option<Subject<_>>`, a fresh database each time) builds.
#[macro_export]
macro_rules! accounts_contract_tests {
    ($name:ident, $setup:expr) => {
        $crate::__contract_tests!(accounts; $name, $setup;
            a_local_account_is_found_by_its_login,
            a_login_is_taken_once,
            only_one_first_account,
            users_of_other_modes_are_stored_once,
            a_patch_changes_only_what_it_names,
            users_are_listed_oldest_first_with_cursors,
            a_refresh_token_is_used_once,
            concurrent_refreshes_use_a_token_once,
            a_revoked_family_stays_revoked,
            api_keys_are_found_by_hash_and_listed_per_owner,
            an_api_key_is_deleted_by_its_owner_only,
            the_signing_secret_is_stored_once,
        );
    };
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::now_v7().simple())
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// A local account with a unique login.
pub fn account(created: i64) -> User {
    let id = uuid::Uuid::now_v7().to_string();
    User {
        email: Some(format!("{}@example.com", unique("a"))),
        name: Some("Ann Example".into()),
        role: Role::User,
        tier: "default".into(),
        disabled: false,
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        created_at: at(created),
        last_active_at: None,
        id,
    }
}

/// A user of another mode (no login).
fn visitor(created: i64) -> User {
    User {
        id: unique("sub"),
        email: Some("visitor@example.com".into()),
        name: None,
        role: Role::User,
        tier: "default".into(),
        disabled: false,
        password_hash: None,
        created_at: at(created),
        last_active_at: None,
    }
}

fn hash(tag: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(unique(tag).as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn family(user: &str, expires: i64) -> Family {
    Family {
        id: unique("fam"),
        user_id: user.to_owned(),
        created_at: at(1_000),
        expires_at: at(expires),
        revoked: false,
    }
}

fn token(family: &Family) -> RefreshToken {
    RefreshToken {
        hash: hash("rt"),
        family_id: family.id.clone(),
        user_id: family.user_id.clone(),
        created_at: at(1_000),
        expires_at: family.expires_at,
        used_at: None,
    }
}

fn key(owner: &str, name: &str, created: i64) -> ApiKey {
    ApiKey {
        id: uuid::Uuid::now_v7().to_string(),
        owner: owner.to_owned(),
        name: name.to_owned(),
        hash: hash("key"),
        created_at: at(created),
        last_used_at: None,
    }
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

/// A local account reads back whole by id and by its login; another login finds nothing.
pub async fn a_local_account_is_found_by_its_login(accounts: Arc<dyn Accounts>) {
    let a = account(1_000);
    accounts.create_account(&a, false).await.unwrap();
    assert_eq!(accounts.get_user(&a.id).await.unwrap(), Some(a.clone()));
    let login = a.email.clone().unwrap();
    assert_eq!(accounts.find_login(&login).await.unwrap(), Some(a.clone()));
    assert_eq!(
        accounts.find_login(&format!("x{login}")).await.unwrap(),
        None
    );
    assert_eq!(accounts.get_user(&unique("nobody")).await.unwrap(), None);
    assert!(accounts.has_accounts().await.unwrap() || !a.is_local());
}

/// A second account with the same login is refused, and nothing of it is stored.
pub async fn a_login_is_taken_once(accounts: Arc<dyn Accounts>) {
    let a = account(1_000);
    accounts.create_account(&a, false).await.unwrap();
    let mut b = account(2_000);
    b.email = a.email.clone();
    assert!(matches!(
        accounts.create_account(&b, false).await,
        Err(CreateError::Taken)
    ));
    assert_eq!(accounts.get_user(&b.id).await.unwrap(), None);
    assert_eq!(
        accounts
            .find_login(a.email.as_deref().unwrap())
            .await
            .unwrap()
            .map(|u| u.id),
        Some(a.id)
    );
}

/// Of concurrent first registrations one wins; later ones are told another was first, and
/// `has_accounts` says so. Ordinary creation still works after it.
pub async fn only_one_first_account(accounts: Arc<dyn Accounts>) {
    assert!(!accounts.has_accounts().await.unwrap(), "a fresh database");
    let candidates: Vec<User> = (0..5).map(|i| account(1_000 + i)).collect();
    let outcomes =
        futures::future::join_all(candidates.iter().map(|u| accounts.create_account(u, true)))
            .await;
    let won: Vec<&User> = candidates
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.is_ok())
        .map(|(u, _)| u)
        .collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    for (u, o) in candidates.iter().zip(&outcomes) {
        if o.is_err() {
            assert!(matches!(o, Err(CreateError::NotFirst)), "{o:?}");
            assert_eq!(accounts.get_user(&u.id).await.unwrap(), None);
        }
    }
    assert!(accounts.has_accounts().await.unwrap());
    assert!(matches!(
        accounts.create_account(&account(9_000), true).await,
        Err(CreateError::NotFirst)
    ));
    accounts
        .create_account(&account(9_000), false)
        .await
        .unwrap();
}

/// A user of another mode is inserted the first time and read back after; the stored one wins
/// over what a later call brings. They have no login, and do not count as local accounts.
pub async fn users_of_other_modes_are_stored_once(accounts: Arc<dyn Accounts>) {
    let v = visitor(1_000);
    let concurrent = futures::future::join_all((0..4).map(|_| accounts.ensure_user(&v))).await;
    for stored in concurrent {
        assert_eq!(stored.unwrap(), v);
    }
    let mut later = v.clone();
    later.tier = "other".into();
    later.created_at = at(5_000);
    assert_eq!(accounts.ensure_user(&later).await.unwrap(), v);
    assert_eq!(accounts.get_user(&v.id).await.unwrap(), Some(v.clone()));
    assert_eq!(
        accounts.find_login("visitor@example.com").await.unwrap(),
        None,
        "no login"
    );
}

/// A patch changes the fields it names and keeps the others; an unknown id is `None`.
pub async fn a_patch_changes_only_what_it_names(accounts: Arc<dyn Accounts>) {
    let a = account(1_000);
    accounts.create_account(&a, false).await.unwrap();
    let patched = accounts
        .update_user(
            &a.id,
            &UserPatch {
                tier: Some("pro".into()),
                disabled: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        patched,
        User {
            tier: "pro".into(),
            disabled: true,
            ..a.clone()
        }
    );
    let patched = accounts
        .update_user(
            &a.id,
            &UserPatch {
                role: Some(Role::Admin),
                disabled: Some(false),
                name: Some("Ann B.".into()),
                password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3".into()),
                last_active_at: Some(at(7_000)),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let want = User {
        tier: "pro".into(),
        role: Role::Admin,
        name: Some("Ann B.".into()),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3".into()),
        last_active_at: Some(at(7_000)),
        ..a.clone()
    };
    assert_eq!(patched, want);
    assert_eq!(accounts.get_user(&a.id).await.unwrap(), Some(want.clone()));
    assert_eq!(
        accounts
            .find_login(a.email.as_deref().unwrap())
            .await
            .unwrap(),
        Some(want)
    );
    let v = accounts.ensure_user(&visitor(2_000)).await.unwrap();
    let moved = accounts
        .update_user(
            &v.id,
            &UserPatch {
                email: Some("new@example.com".into()),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.email.as_deref(), Some("new@example.com"));
    assert_eq!(
        accounts
            .update_user(&unique("nobody"), &UserPatch::default())
            .await
            .unwrap(),
        None
    );
}

/// Users list oldest first, ties by id, in pages joined by cursors with nothing repeated or lost.
pub async fn users_are_listed_oldest_first_with_cursors(accounts: Arc<dyn Accounts>) {
    let mut mine = Vec::new();
    for i in 0..5 {
        let u = if i % 2 == 0 {
            let a = account(1_000 + i);
            accounts.create_account(&a, false).await.unwrap();
            a
        } else {
            accounts.ensure_user(&visitor(1_000 + i)).await.unwrap()
        };
        mine.push(u.id);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..20 {
        let p = accounts.list_users(&page(2, cursor)).await.unwrap();
        assert!(p.items.len() <= 2);
        seen.extend(p.items.into_iter().map(|u| u.id));
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let ours: Vec<String> = seen.into_iter().filter(|id| mine.contains(id)).collect();
    assert_eq!(ours, mine, "each once, in creation order");
    assert!(matches!(
        accounts.list_users(&page(2, Some("garbage".into()))).await,
        Err(crate::store::StoreError::InvalidCursor)
    ));
}

/// A refresh token reads back with its family; using it stores the next one; using it again is
/// refused and writes nothing.
pub async fn a_refresh_token_is_used_once(accounts: Arc<dyn Accounts>) {
    let fam = family(&unique("u"), 99_000);
    let first = token(&fam);
    accounts.start_family(&fam, &first).await.unwrap();
    assert_eq!(
        accounts.refresh_token(&first.hash).await.unwrap(),
        Some((first.clone(), fam.clone()))
    );
    let second = token(&fam);
    assert!(accounts
        .rotate(&first.hash, at(2_000), &second)
        .await
        .unwrap());
    let (used, _) = accounts.refresh_token(&first.hash).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(at(2_000)));
    assert_eq!(
        accounts.refresh_token(&second.hash).await.unwrap(),
        Some((second.clone(), fam.clone()))
    );
    let third = token(&fam);
    assert!(!accounts
        .rotate(&first.hash, at(3_000), &third)
        .await
        .unwrap());
    assert_eq!(
        accounts.refresh_token(&third.hash).await.unwrap(),
        None,
        "nothing written"
    );
    let (used, _) = accounts.refresh_token(&first.hash).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(at(2_000)), "the first use stands");
    assert!(!accounts
        .rotate(&hash("absent"), at(3_000), &token(&fam))
        .await
        .unwrap());
    assert_eq!(accounts.refresh_token(&hash("absent")).await.unwrap(), None);
}

/// Refreshes racing with one token: exactly one stores its next token.
pub async fn concurrent_refreshes_use_a_token_once(accounts: Arc<dyn Accounts>) {
    let fam = family(&unique("u"), 99_000);
    let first = token(&fam);
    accounts.start_family(&fam, &first).await.unwrap();
    let nexts: Vec<RefreshToken> = (0..6).map(|_| token(&fam)).collect();
    let outcomes = futures::future::join_all(
        nexts
            .iter()
            .map(|n| accounts.rotate(&first.hash, at(2_000), n)),
    )
    .await;
    let mut stored = 0;
    for (n, o) in nexts.iter().zip(outcomes) {
        let won = o.unwrap();
        let found = accounts.refresh_token(&n.hash).await.unwrap().is_some();
        assert_eq!(won, found);
        stored += usize::from(won);
    }
    assert_eq!(stored, 1);
}

/// Revoking a family marks it revoked for each of its tokens; other families are untouched.
pub async fn a_revoked_family_stays_revoked(accounts: Arc<dyn Accounts>) {
    let user = unique("u");
    let (a, b) = (family(&user, 99_000), family(&user, 99_000));
    let (ta, tb) = (token(&a), token(&b));
    accounts.start_family(&a, &ta).await.unwrap();
    accounts.start_family(&b, &tb).await.unwrap();
    let next = token(&a);
    assert!(accounts.rotate(&ta.hash, at(2_000), &next).await.unwrap());
    accounts.revoke_family(&a.id).await.unwrap();
    for t in [&ta, &next] {
        let (_, fam) = accounts.refresh_token(&t.hash).await.unwrap().unwrap();
        assert!(fam.revoked);
    }
    let (_, fam) = accounts.refresh_token(&tb.hash).await.unwrap().unwrap();
    assert!(!fam.revoked);
    accounts.revoke_family(&a.id).await.unwrap();
}

/// Keys read back by hash, list per owner oldest first in pages, and record their last use.
pub async fn api_keys_are_found_by_hash_and_listed_per_owner(accounts: Arc<dyn Accounts>) {
    let (ann, bob) = (unique("ann"), unique("bob"));
    let keys: Vec<ApiKey> = (0..3)
        .map(|i| key(&ann, &format!("script {i}"), 1_000 + i))
        .collect();
    for k in keys.iter().rev() {
        accounts.create_key(k).await.unwrap();
    }
    let bobs = key(&bob, "bob's", 1_500);
    accounts.create_key(&bobs).await.unwrap();
    assert_eq!(
        accounts.key_by_hash(&keys[1].hash).await.unwrap(),
        Some(keys[1].clone())
    );
    assert_eq!(accounts.key_by_hash(&hash("nope")).await.unwrap(), None);
    let first = accounts.list_keys(&ann, &page(2, None)).await.unwrap();
    assert_eq!(first.items, keys[..2].to_vec());
    let rest = accounts
        .list_keys(&ann, &page(2, first.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(rest.items, keys[2..].to_vec());
    assert_eq!(rest.next_cursor, None);
    assert_eq!(
        accounts
            .list_keys(&bob, &page(50, None))
            .await
            .unwrap()
            .items,
        vec![bobs]
    );
    accounts
        .touch_key(&ann, &keys[0].id, at(5_000))
        .await
        .unwrap();
    assert_eq!(
        accounts
            .key_by_hash(&keys[0].hash)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(at(5_000))
    );
}

/// Only a key's owner deletes it; once deleted it is neither found by hash nor listed.
pub async fn an_api_key_is_deleted_by_its_owner_only(accounts: Arc<dyn Accounts>) {
    let (ann, bob) = (unique("ann"), unique("bob"));
    let k = key(&ann, "ci", 1_000);
    accounts.create_key(&k).await.unwrap();
    assert_eq!(accounts.delete_key(&bob, &k.id).await.unwrap(), None);
    assert!(accounts.key_by_hash(&k.hash).await.unwrap().is_some());
    assert_eq!(
        accounts.delete_key(&ann, &k.id).await.unwrap(),
        Some(k.clone())
    );
    assert_eq!(accounts.key_by_hash(&k.hash).await.unwrap(), None);
    assert!(accounts
        .list_keys(&ann, &page(50, None))
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(accounts.delete_key(&ann, &k.id).await.unwrap(), None);
}

/// The first candidate secret is stored; every later call, concurrent ones included, gets it.
pub async fn the_signing_secret_is_stored_once(accounts: Arc<dyn Accounts>) {
    let candidates: Vec<Vec<u8>> = (0u8..5).map(|i| vec![i; 32]).collect();
    let got = futures::future::join_all(candidates.iter().map(|c| accounts.signing_secret(c)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    assert!(candidates.contains(&got[0]));
    assert!(got.iter().all(|g| g == &got[0]), "one secret for all");
    assert_eq!(accounts.signing_secret(&[9; 32]).await.unwrap(), got[0]);
}
