//! The identity settings of `Config`, read with the rest at start: which mode, and what that mode
//! needs. Nothing here reaches the network: an OpenID provider's keys are fetched on first use.

use std::collections::{BTreeSet, HashMap};

use crate::config::ConfigError;

use super::AuthMode;

/// Whether people may create local accounts themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Anyone may register (`CONVERSA_REGISTRATION=open`).
    Open,
    /// Only the first account registers itself; admins add the others (the default).
    Closed,
}

impl Registration {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Open => "open",
            Registration::Closed => "closed",
        }
    }
}

/// Where the audience (the app client id) of ID tokens comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceSource {
    /// `CONVERSA_OIDC_AUDIENCE`.
    Value(String),
    /// `CONVERSA_OIDC_AUDIENCE_PARAMETER`: an SSM parameter holding it, read on first use (the
    /// AWS stack: the client's id cannot be passed to the functions directly).
    Parameter(String),
}

/// An OpenID provider (mode `oidc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// `CONVERSA_OIDC_ISSUER`: the `iss` of its tokens, and where its discovery document is.
    pub issuer: String,
    /// `CONVERSA_OIDC_AUDIENCE` or `CONVERSA_OIDC_AUDIENCE_PARAMETER`.
    pub audience: AudienceSource,
    /// `CONVERSA_OIDC_JWKS_URL`: the keys, instead of the discovery document's `jwks_uri`.
    pub jwks_url: Option<String>,
    /// `CONVERSA_OIDC_GROUPS_CLAIM` (default `cognito:groups`).
    pub groups_claim: String,
    /// `CONVERSA_ADMIN_GROUP` (default `admin`).
    pub admin_group: String,
    /// `CONVERSA_OIDC_SCOPES` (default `openid email profile`): what the sign-in page asks for.
    pub scopes: String,
}

/// Everything about who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `CONVERSA_AUTH`; without it, `tokens` when `CONVERSA_AUTH_TOKENS` is set, else `none`.
    pub mode: AuthMode,
    /// `CONVERSA_AUTH_TOKENS`: token → user (mode `tokens`).
    pub tokens: HashMap<String, String>,
    /// `CONVERSA_ADMINS`: user ids that are admins in mode `tokens`.
    pub admins: BTreeSet<String>,
    /// The OpenID provider (mode `oidc`).
    pub oidc: Option<OidcConfig>,
    /// `CONVERSA_JWT_SECRET`: signs local access tokens; without it a secret is generated once
    /// and kept with the data.
    pub jwt_secret: Option<Vec<u8>>,
    /// `CONVERSA_REGISTRATION` (default `closed`).
    pub registration: Registration,
    /// `CONVERSA_DEFAULT_TIER` (default `default`): the tier of people seen for the first time.
    pub default_tier: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            tokens: HashMap::new(),
            admins: BTreeSet::new(),
            oidc: None,
            jwt_secret: None,
            registration: Registration::Closed,
            default_tier: DEFAULT_TIER.into(),
        }
    }
}

/// The tier of new users unless `CONVERSA_DEFAULT_TIER` says otherwise.
pub const DEFAULT_TIER: &str = "default";

/// The shortest `CONVERSA_JWT_SECRET` accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

/// Whether `id` may be a user id: letters, digits, `-`, `_`, `.`, `@`, 1–128 characters (what
/// owners are made of everywhere).
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

/// Whether `tier` may name a tier: letters, digits, `-`, `_`, 1–64 characters.
pub fn valid_tier(tier: &str) -> bool {
    !tier.is_empty()
        && tier.len() <= 64
        && tier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// An `http(s)` URL; plain `http` only for this machine (a test provider), `https` otherwise.
fn url(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(value)
        .map_err(|e| err(var, format!("{value:?} is not a URL ({e})")))?;
    let loopback = matches!(
        parsed.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(err(
                var,
                format!(
                    "{value:?} must be an https:// URL (http:// only for 127.0.0.1 or localhost)"
                ),
            ))
        }
    }
    if parsed.host_str().is_none() {
        return Err(err(var, format!("{value:?} has no host")));
    }
    Ok(value.to_owned())
}

/// Reads the identity variables (values already trimmed, empty ones absent).
pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<AuthConfig, ConfigError> {
    let mut tokens = HashMap::new();
    if let Some(s) = get("CONVERSA_AUTH_TOKENS") {
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (user, token) = pair.split_once(':').ok_or_else(|| {
                err(
                    "CONVERSA_AUTH_TOKENS",
                    "expected user:token pairs separated by commas",
                )
            })?;
            if !valid_user_id(user) || token.len() < 16 || token.starts_with("cvk_") {
                return Err(err(
                    "CONVERSA_AUTH_TOKENS",
                    "each user id must be letters, digits, - _ . @ and each token at least 16 characters (not starting with cvk_)",
                ));
            }
            tokens.insert(token.to_owned(), user.to_owned());
        }
        if tokens.is_empty() {
            return Err(err("CONVERSA_AUTH_TOKENS", "no user:token pair"));
        }
    }
    let mode = match get("CONVERSA_AUTH") {
        None if tokens.is_empty() => AuthMode::None,
        None => AuthMode::Tokens,
        Some(s) => AuthMode::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
            err(
                "CONVERSA_AUTH",
                format!("{s:?} is not one of none, tokens, oidc, local"),
            )
        })?,
    };
    if mode == AuthMode::Tokens && tokens.is_empty() {
        return Err(err(
            "CONVERSA_AUTH_TOKENS",
            "required when CONVERSA_AUTH=tokens (user:token pairs)",
        ));
    }
    let admins: BTreeSet<String> = get("CONVERSA_ADMINS")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = admins.iter().find(|a| !valid_user_id(a)) {
        return Err(err(
            "CONVERSA_ADMINS",
            format!("{bad:?} is not a user id (letters, digits, - _ . @)"),
        ));
    }
    let oidc = if mode == AuthMode::Oidc {
        let issuer = get("CONVERSA_OIDC_ISSUER").ok_or_else(|| {
            err(
                "CONVERSA_OIDC_ISSUER",
                "required when CONVERSA_AUTH=oidc (the provider's issuer URL, e.g. https://cognito-idp.<region>.amazonaws.com/<pool id>)",
            )
        })?;
        let issuer = url("CONVERSA_OIDC_ISSUER", &issuer)?;
        let audience = match (
            get("CONVERSA_OIDC_AUDIENCE"),
            get("CONVERSA_OIDC_AUDIENCE_PARAMETER"),
        ) {
            (Some(a), _) => AudienceSource::Value(a),
            (None, Some(p)) => AudienceSource::Parameter(p),
            (None, None) => {
                return Err(err(
                    "CONVERSA_OIDC_AUDIENCE",
                    "required when CONVERSA_AUTH=oidc (the app client id)",
                ))
            }
        };
        let jwks_url = get("CONVERSA_OIDC_JWKS_URL")
            .map(|u| url("CONVERSA_OIDC_JWKS_URL", &u))
            .transpose()?;
        Some(OidcConfig {
            issuer,
            audience,
            jwks_url,
            groups_claim: get("CONVERSA_OIDC_GROUPS_CLAIM")
                .unwrap_or_else(|| "cognito:groups".into()),
            admin_group: get("CONVERSA_ADMIN_GROUP").unwrap_or_else(|| "admin".into()),
            scopes: get("CONVERSA_OIDC_SCOPES").unwrap_or_else(|| "openid email profile".into()),
        })
    } else {
        None
    };
    let jwt_secret = match get("CONVERSA_JWT_SECRET") {
        None => None,
        Some(s) if s.len() < MIN_SECRET_BYTES => {
            return Err(err(
                "CONVERSA_JWT_SECRET",
                format!(
                    "must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -base64 48`)"
                ),
            ))
        }
        Some(s) => Some(s.into_bytes()),
    };
    let registration = match get("CONVERSA_REGISTRATION").as_deref() {
        None => Registration::Closed,
        Some(s) if s.eq_ignore_ascii_case("closed") => Registration::Closed,
        Some(s) if s.eq_ignore_ascii_case("open") => Registration::Open,
        Some(s) => {
            return Err(err(
                "CONVERSA_REGISTRATION",
                format!("{s:?} is not one of open, closed"),
            ))
        }
    };
    let default_tier = get("CONVERSA_DEFAULT_TIER").unwrap_or_else(|| DEFAULT_TIER.into());
    if !valid_tier(&default_tier) {
        return Err(err(
            "CONVERSA_DEFAULT_TIER",
            format!("{default_tier:?} is not a tier name (letters, digits, - _; up to 64)"),
        ));
    }
    Ok(AuthConfig {
        mode,
        tokens,
        admins,
        oidc,
        jwt_secret,
        registration,
        default_tier,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<AuthConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_lookup(&|k| map.get(k).cloned())
    }

    const OIDC: [(&str, &str); 3] = [
        ("CONVERSA_AUTH", "oidc"),
        (
            "CONVERSA_OIDC_ISSUER",
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
        ),
        ("CONVERSA_OIDC_AUDIENCE", "client-1"),
    ];

    #[test]
    fn nothing_set_is_none_and_tokens_imply_tokens() {
        let c = read(&[]).unwrap();
        assert_eq!(c.mode, AuthMode::None);
        assert_eq!(c.registration, Registration::Closed);
        assert_eq!(c.default_tier, "default");
        let c = read(&[("CONVERSA_AUTH_TOKENS", "ann:0123456789abcdef")]).unwrap();
        assert_eq!(c.mode, AuthMode::Tokens);
        assert_eq!(c.tokens["0123456789abcdef"], "ann");
    }

    #[test]
    fn oidc_defaults() {
        let c = read(&OIDC).unwrap();
        let o = c.oidc.unwrap();
        assert_eq!(o.groups_claim, "cognito:groups");
        assert_eq!(o.admin_group, "admin");
        assert_eq!(o.scopes, "openid email profile");
        assert_eq!(o.audience, AudienceSource::Value("client-1".into()));
        assert_eq!(o.jwks_url, None);
        let c = read(&[
            OIDC[0],
            OIDC[1],
            (
                "CONVERSA_OIDC_AUDIENCE_PARAMETER",
                "/conversa/x/oidc-client-id",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.oidc.unwrap().audience,
            AudienceSource::Parameter("/conversa/x/oidc-client-id".into())
        );
    }

    #[test]
    fn mistakes_name_their_variable() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("CONVERSA_AUTH", "ldap")], "CONVERSA_AUTH"),
            (vec![("CONVERSA_AUTH", "tokens")], "CONVERSA_AUTH_TOKENS"),
            (vec![("CONVERSA_AUTH", "oidc")], "CONVERSA_OIDC_ISSUER"),
            (
                vec![OIDC[0], ("CONVERSA_OIDC_ISSUER", "not a url"), OIDC[2]],
                "CONVERSA_OIDC_ISSUER",
            ),
            (
                vec![
                    OIDC[0],
                    ("CONVERSA_OIDC_ISSUER", "http://idp.example.com"),
                    OIDC[2],
                ],
                "CONVERSA_OIDC_ISSUER",
            ),
            (vec![OIDC[0], OIDC[1]], "CONVERSA_OIDC_AUDIENCE"),
            (
                vec![
                    OIDC[0],
                    OIDC[1],
                    OIDC[2],
                    ("CONVERSA_OIDC_JWKS_URL", "ftp://x/keys"),
                ],
                "CONVERSA_OIDC_JWKS_URL",
            ),
            (
                vec![("CONVERSA_JWT_SECRET", "short")],
                "CONVERSA_JWT_SECRET",
            ),
            (
                vec![("CONVERSA_REGISTRATION", "maybe")],
                "CONVERSA_REGISTRATION",
            ),
            (
                vec![("CONVERSA_DEFAULT_TIER", "gold tier")],
                "CONVERSA_DEFAULT_TIER",
            ),
            (vec![("CONVERSA_ADMINS", "ann,b#b")], "CONVERSA_ADMINS"),
            (
                vec![("CONVERSA_AUTH_TOKENS", "ann")],
                "CONVERSA_AUTH_TOKENS",
            ),
            (
                vec![("CONVERSA_AUTH_TOKENS", "ann:cvk_0123456789abcdef")],
                "CONVERSA_AUTH_TOKENS",
            ),
        ];
        for (pairs, var) in cases {
            let e = read(&pairs).unwrap_err();
            assert_eq!(e.var, var, "{pairs:?}: {e}");
        }
    }

    #[test]
    fn a_test_provider_on_this_machine_may_use_http() {
        let c = read(&[
            OIDC[0],
            ("CONVERSA_OIDC_ISSUER", "http://127.0.0.1:4000"),
            OIDC[2],
            (
                "CONVERSA_OIDC_JWKS_URL",
                "http://localhost:5055/pool/.well-known/jwks.json",
            ),
        ])
        .unwrap();
        assert_eq!(c.oidc.unwrap().issuer, "http://127.0.0.1:4000");
    }
}
