//! Bearer JWTs from an OpenID provider (Amazon Cognito or any other), checked with `jsonwebtoken`.
//!
//! Keys come from the provider's JWKS (`CONVERSA_OIDC_JWKS_URL`, else the discovery document's
//! `jwks_uri`), fetched on first use — never at start — and cached in this instance. A token whose
//! `kid` is not cached fetches the set again, at most once a minute; while the endpoint is down,
//! cached keys keep working and tokens that need a new key get 503. Only RSA keys (RS256) and
//! P-256 keys (ES256) are used, and the algorithm comes from the key, not the token: `none`, HS*
//! and every other algorithm are refused. `iss`, `aud` (or Cognito's `client_id` for access
//! tokens), `token_use`, `exp`, `nbf` and `iat` are checked with 60 s of leeway on an injected
//! clock. Every failure is one generic 401; the reason goes to the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell, RwLock};

use super::config::{AudienceSource, OidcConfig};
use super::{AuthError, Role};
use crate::limits::Clock;

/// Seconds of disagreement allowed between the provider's clock and ours.
pub const LEEWAY_SECS: i64 = 60;
/// The shortest time between two fetches of the key set, in milliseconds.
pub const REFRESH_INTERVAL_MS: i64 = 60_000;
/// The largest key set or discovery document read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// How long a fetch from the provider may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `email`, when present.
    pub email: Option<String>,
    /// `name`, when present.
    pub name: Option<String>,
    /// Admin when the groups claim holds the admin group.
    pub role: Role,
}

/// The parts of the discovery document the product uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where the keys are.
    pub jwks_uri: String,
    /// Where the sign-in page sends people.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where the sign-in page exchanges codes for tokens.
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

/// A key of the set, with the one algorithm it verifies.
struct VerifyingKey {
    key: DecodingKey,
    alg: Algorithm,
}

/// The cache's memory of fetches.
#[derive(Default)]
struct Fetches {
    /// When the key set was last fetched (or tried), on the injected clock.
    last_attempt_ms: Option<i64>,
    /// Whether that attempt failed.
    last_failed: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn contains(&self, want: &str) -> bool {
        match self {
            OneOrMany::One(v) => v == want,
            OneOrMany::Many(vs) => vs.iter().any(|v| v == want),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    token_use: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// Checks bearer tokens of one provider; shared by every request of this instance.
pub struct OidcVerifier {
    config: OidcConfig,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    audience: OnceCell<String>,
    keys: RwLock<HashMap<String, Arc<VerifyingKey>>>,
    fetches: Mutex<Fetches>,
    discovery: Mutex<(Option<Discovery>, Fetches)>,
}

fn unauthorized(reason: impl Into<String>) -> AuthError {
    AuthError::unauthorized(reason)
}

impl OidcVerifier {
    /// A verifier for `config`; nothing is fetched until a token needs it.
    pub fn new(config: OidcConfig, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            config,
            http,
            clock,
            audience: OnceCell::new(),
            keys: RwLock::new(HashMap::new()),
            fetches: Mutex::new(Fetches::default()),
            discovery: Mutex::new((None, Fetches::default())),
        })
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The scopes the sign-in page asks for.
    pub fn scopes(&self) -> &str {
        &self.config.scopes
    }

    /// The audience: `CONVERSA_OIDC_AUDIENCE`, or the SSM parameter it names (read once).
    pub async fn audience(&self) -> Result<&str, AuthError> {
        self.audience
            .get_or_try_init(|| async {
                match &self.config.audience {
                    AudienceSource::Value(v) => Ok(v.clone()),
                    AudienceSource::Parameter(name) => read_parameter(name).await,
                }
            })
            .await
            .map(String::as_str)
    }

    /// The discovery document, fetched once (after a failure, again at most once a minute).
    pub async fn discovery(&self) -> Result<Discovery, AuthError> {
        let mut guard = self.discovery.lock().await;
        if let Some(d) = &guard.0 {
            return Ok(d.clone());
        }
        let now = self.clock.now_millis();
        if let Some(last) = guard.1.last_attempt_ms {
            if now - last < REFRESH_INTERVAL_MS {
                return Err(AuthError::Unavailable(
                    "the identity provider's discovery document failed less than a minute ago"
                        .into(),
                ));
            }
        }
        guard.1.last_attempt_ms = Some(now);
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let doc: Discovery = serde_json::from_slice(&self.fetch(&url).await?).map_err(|e| {
            AuthError::Unavailable(format!("discovery document {url}: not JSON ({e})"))
        })?;
        if doc.issuer != self.config.issuer {
            return Err(AuthError::Unavailable(format!(
                "discovery document {url} names issuer {:?}, not {:?}",
                doc.issuer, self.config.issuer
            )));
        }
        guard.0 = Some(doc.clone());
        Ok(doc)
    }

    /// GET `url`, at most [`MAX_DOCUMENT_BYTES`]; every failure is the provider being unavailable.
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, AuthError> {
        let unavailable = |what: String| AuthError::Unavailable(format!("{url}: {what}"));
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(unavailable("the document is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Fetches the key set and replaces the cache with it.
    async fn fetch_keys(&self) -> Result<(), AuthError> {
        let url = match &self.config.jwks_url {
            Some(u) => u.clone(),
            None => self.discovery().await?.jwks_uri,
        };
        let body = self.fetch(&url).await?;
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let set: Set = serde_json::from_slice(&body)
            .map_err(|e| AuthError::Unavailable(format!("{url}: not a key set ({e})")))?;
        // Each key on its own: one malformed or foreign key does not spoil the others.
        let keys: HashMap<String, Arc<VerifyingKey>> = set
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| usable(&jwk))
            .collect();
        tracing::info!(url, keys = keys.len(), "identity provider keys fetched");
        *self.keys.write().await = keys;
        Ok(())
    }

    /// The key with `kid`: from the cache, else after fetching the set again — unless it was
    /// fetched less than a minute ago (then 401 for an unknown key, or 503 when that fetch failed).
    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, AuthError> {
        if let Some(k) = self.keys.read().await.get(kid) {
            return Ok(Arc::clone(k));
        }
        let mut fetches = self.fetches.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(k) = self.keys.read().await.get(kid) {
            return Ok(Arc::clone(k));
        }
        let now = self.clock.now_millis();
        if let Some(last) = fetches.last_attempt_ms {
            if now - last < REFRESH_INTERVAL_MS {
                return Err(if fetches.last_failed {
                    AuthError::Unavailable(
                        "the identity provider's keys could not be fetched (less than a minute ago)"
                            .into(),
                    )
                } else {
                    unauthorized(format!("unknown key id {kid:?}"))
                });
            }
        }
        fetches.last_attempt_ms = Some(now);
        match self.fetch_keys().await {
            Ok(()) => fetches.last_failed = false,
            Err(e) => {
                fetches.last_failed = true;
                return Err(e);
            }
        }
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthorized(format!("unknown key id {kid:?}")))
    }

    /// Checks `token` completely; what it says about its bearer.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = decode_header(token)
            .map_err(|e| unauthorized(format!("token header: {:?}", e.kind())))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(unauthorized(format!("algorithm {:?} refused", header.alg)));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| unauthorized("token without a key id"))?;
        let key = self.key(kid).await?;
        if header.alg != key.alg {
            return Err(unauthorized(format!(
                "algorithm {:?} does not match the key's {:?}",
                header.alg, key.alg
            )));
        }
        let audience = self.audience().await?;
        let mut v = Validation::new(key.alg);
        v.set_issuer(&[&self.config.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Audience and times are checked below (audience: Cognito's access tokens carry
        // `client_id` instead; times: against the injected clock).
        v.validate_aud = false;
        v.validate_exp = false;
        v.validate_nbf = false;
        let claims = decode::<Claims>(token, &key.key, &v)
            .map_err(|e| unauthorized(format!("token: {:?}", e.kind())))?
            .claims;
        let for_us = match claims.token_use.as_deref() {
            None | Some("id") => claims.aud.as_ref().is_some_and(|a| a.contains(audience)),
            Some("access") => {
                claims.aud.as_ref().is_some_and(|a| a.contains(audience))
                    || claims.client_id.as_deref() == Some(audience)
            }
            Some(other) => return Err(unauthorized(format!("token_use {other:?} refused"))),
        };
        if !for_us {
            return Err(unauthorized("token for another audience"));
        }
        let now = self.clock.now_secs();
        if claims.exp + LEEWAY_SECS < now {
            return Err(unauthorized("token expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(unauthorized("token not valid yet (nbf)"));
        }
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
            return Err(unauthorized("token issued in the future (iat)"));
        }
        if claims.sub.is_empty() {
            return Err(unauthorized("token with an empty subject"));
        }
        let admin = match claims.other.get(&self.config.groups_claim) {
            Some(serde_json::Value::Array(groups)) => groups
                .iter()
                .any(|g| g.as_str() == Some(self.config.admin_group.as_str())),
            Some(serde_json::Value::String(g)) => {
                g.split([',', ' ']).any(|g| g == self.config.admin_group)
            }
            _ => false,
        };
        Ok(Identity {
            subject: claims.sub,
            email: claims.email.filter(|e| !e.is_empty()),
            name: claims.name.filter(|n| !n.is_empty()),
            role: if admin { Role::Admin } else { Role::User },
        })
    }
}

/// Keys the product accepts from a key set: signing keys with a `kid`, RSA → RS256, EC P-256 →
/// ES256. Everything else (`oct`/HMAC, OKP, other curves, keys declaring another algorithm or
/// `use: enc`) is skipped.
fn usable(jwk: &Jwk) -> Option<(String, Arc<VerifyingKey>)> {
    let kid = jwk.common.key_id.clone()?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, Arc::new(VerifyingKey { key, alg })))
}

/// The audience from an SSM parameter.
#[cfg(feature = "ssm")]
async fn read_parameter(name: &str) -> Result<String, AuthError> {
    crate::aws::read_secure_parameter(name)
        .await
        .map_err(|e| AuthError::Unavailable(format!("CONVERSA_OIDC_AUDIENCE_PARAMETER: {e}")))
}

/// Without the `ssm` feature a parameter cannot be read: every token is refused, and the log says
/// why.
#[cfg(not(feature = "ssm"))]
async fn read_parameter(_name: &str) -> Result<String, AuthError> {
    Err(AuthError::Internal(
        "CONVERSA_OIDC_AUDIENCE_PARAMETER: reading SSM parameters is not built into this binary"
            .into(),
    ))
}
