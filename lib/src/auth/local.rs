//! Access tokens of local accounts: HS256 JWTs (`jsonwebtoken`) that live 15 minutes, issued and
//! checked by this server with one secret — `CONVERSA_JWT_SECRET`, or one generated on first use
//! and kept with the data (so every instance and every restart signs with the same one).

use std::sync::Arc;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::secrets;
use super::AuthError;
use crate::accounts::Accounts;

/// How long an access token lives, in seconds.
pub const ACCESS_TOKEN_SECS: i64 = 15 * 60;
/// Clocks of two instances may disagree by this much, in seconds.
pub const LEEWAY_SECS: i64 = 60;
/// `iss` and `aud` of local tokens.
const ISSUER: &str = "conversa";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
    jti: String,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Issues and checks local access tokens.
pub struct LocalTokens {
    configured: Option<Vec<u8>>,
    accounts: Arc<dyn Accounts>,
    keys: OnceCell<Keys>,
}

impl LocalTokens {
    /// Signs with `configured` (`CONVERSA_JWT_SECRET`), else with the secret kept in `accounts`
    /// (generated on first use).
    pub fn new(configured: Option<Vec<u8>>, accounts: Arc<dyn Accounts>) -> Self {
        Self {
            configured,
            accounts,
            keys: OnceCell::new(),
        }
    }

    async fn keys(&self) -> Result<&Keys, AuthError> {
        self.keys
            .get_or_try_init(|| async {
                let secret = match &self.configured {
                    Some(s) => s.clone(),
                    None => {
                        let candidate = secrets::random_bytes::<32>()
                            .map_err(|e| AuthError::Internal(format!("no randomness: {e}")))?;
                        self.accounts
                            .signing_secret(&candidate)
                            .await
                            .map_err(|e| AuthError::Unavailable(e.to_string()))?
                    }
                };
                Ok(Keys {
                    encoding: EncodingKey::from_secret(&secret)
                        .map_err(|e| AuthError::Internal(format!("signing key: {e}")))?,
                    decoding: DecodingKey::from_secret(&secret)
                        .map_err(|e| AuthError::Internal(format!("signing key: {e}")))?,
                })
            })
            .await
    }

    /// A token for `user_id`, issued at `now_secs`, and its lifetime in seconds.
    pub async fn issue(&self, user_id: &str, now_secs: i64) -> Result<(String, i64), AuthError> {
        let keys = self.keys().await?;
        let jti = secrets::hex(
            &secrets::random_bytes::<16>()
                .map_err(|e| AuthError::Internal(format!("no randomness: {e}")))?,
        );
        let claims = Claims {
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            sub: user_id.into(),
            iat: now_secs,
            exp: now_secs + ACCESS_TOKEN_SECS,
            jti,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
            .map_err(|e| AuthError::Internal(format!("signing a token: {e}")))?;
        Ok((token, ACCESS_TOKEN_SECS))
    }

    /// The user id a token was issued to, when its signature, issuer, audience and times hold at
    /// `now_secs`.
    pub async fn verify(&self, token: &str, now_secs: i64) -> Result<String, AuthError> {
        let keys = self.keys().await?;
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Times are checked below against the injected clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        let claims = decode::<Claims>(token, &keys.decoding, &v)
            .map_err(|e| AuthError::unauthorized(format!("local token: {:?}", e.kind())))?
            .claims;
        if claims.exp + LEEWAY_SECS < now_secs {
            return Err(AuthError::unauthorized("local token: expired"));
        }
        if claims.iat > now_secs + LEEWAY_SECS {
            return Err(AuthError::unauthorized("local token: issued in the future"));
        }
        Ok(claims.sub)
    }
}
