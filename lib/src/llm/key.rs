//! A model provider's key: given as it is, or kept in an SSM SecureString (`<VAR>_PARAMETER`, as on
//! Lambda). A parameter's read starts when the registry is built and is awaited by the model's first
//! call, so a Lambda function's init does not wait for its round trip. A read that fails is logged
//! when it fails; the calls that need the key fail with a generic error, and the next one reads
//! again.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use super::LlmError;

/// What a caller is told when a key cannot be read (the parameter and the reason go to the log).
const UNREADABLE: &str = "the model provider's key could not be read";

/// A provider's key, or none (a local server that takes no key).
#[derive(Clone, Default)]
pub struct ApiKey(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    None,
    Value(Arc<str>),
    Parameter(Arc<Parameter>),
}

/// A key read from an SSM parameter once.
struct Parameter {
    name: String,
    value: OnceCell<String>,
    /// The read begun when the key was configured, until a call awaits it.
    started: Mutex<Option<JoinHandle<Result<String, String>>>>,
}

impl ApiKey {
    /// No key.
    pub fn none() -> Self {
        Self(Source::None)
    }

    /// The key itself.
    pub fn value(key: &str) -> Self {
        Self(Source::Value(key.into()))
    }

    /// The key held by the SSM SecureString `name`. Its read starts now, in the background, when
    /// there is a runtime to run it; else at the first [`ApiKey::get`]. Without the `ssm` feature
    /// the parameter cannot be honoured, which is said now rather than at the first call.
    pub fn parameter(name: &str) -> Result<Self, String> {
        if !cfg!(feature = "ssm") {
            return Err("reading SSM parameters is not built into this binary".into());
        }
        let started = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let name = name.to_owned();
            runtime.spawn(async move {
                let read = read_parameter(&name).await;
                if let Err(e) = &read {
                    tracing::error!(parameter = %name, error = %e, "a model key's parameter could not be read; calls to its models fail until it can");
                }
                read
            })
        });
        Ok(Self(Source::Parameter(Arc::new(Parameter {
            name: name.to_owned(),
            value: OnceCell::new(),
            started: Mutex::new(started),
        }))))
    }

    /// What makes two keys the same key: the value, or the parameter's name. Models on the same
    /// endpoint with the same key share one client.
    pub(crate) fn identity(&self) -> Option<String> {
        match &self.0 {
            Source::None => None,
            Source::Value(v) => Some(format!("value:{v}")),
            Source::Parameter(p) => Some(format!("parameter:{}", p.name)),
        }
    }

    /// The key when it is given as it is.
    pub(crate) fn given(&self) -> Option<&str> {
        match &self.0 {
            Source::Value(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the key is read from a parameter (so known only at the first call).
    pub(crate) fn is_deferred(&self) -> bool {
        matches!(self.0, Source::Parameter(_))
    }

    /// The key, waiting for its parameter's read the first time.
    pub async fn get(&self) -> Result<Option<&str>, LlmError> {
        match &self.0 {
            Source::None => Ok(None),
            Source::Value(v) => Ok(Some(v)),
            Source::Parameter(p) => p.get().await.map(Some),
        }
    }
}

impl Parameter {
    async fn get(&self) -> Result<&str, LlmError> {
        self.value
            .get_or_try_init(|| async {
                let started = self
                    .started
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let read = match started {
                    Some(handle) => match handle.await {
                        Ok(read) => read,
                        Err(e) => Err(format!("the read stopped: {e}")),
                    },
                    None => {
                        let read = read_parameter(&self.name).await;
                        if let Err(e) = &read {
                            tracing::error!(parameter = %self.name, error = %e, "a model key's parameter could not be read");
                        }
                        read
                    }
                };
                read.map_err(|_| LlmError::Unreachable(UNREADABLE.into()))
            })
            .await
            .map(String::as_str)
    }
}

impl std::fmt::Debug for ApiKey {
    /// Never the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::None => f.write_str("ApiKey(none)"),
            Source::Value(_) => f.write_str("ApiKey(given)"),
            Source::Parameter(p) => write!(f, "ApiKey(parameter {})", p.name),
        }
    }
}

#[cfg(feature = "ssm")]
async fn read_parameter(name: &str) -> Result<String, String> {
    crate::aws::read_secure_parameter(name).await
}

#[cfg(not(feature = "ssm"))]
async fn read_parameter(_name: &str) -> Result<String, String> {
    Err("reading SSM parameters is not built into this binary".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_given_key_or_none_is_ready() {
        assert_eq!(ApiKey::value("sk-1").get().await.unwrap(), Some("sk-1"));
        assert_eq!(ApiKey::none().get().await.unwrap(), None);
        assert_eq!(
            ApiKey::value("sk-1").identity(),
            ApiKey::value("sk-1").identity()
        );
        assert_ne!(
            ApiKey::value("sk-1").identity(),
            ApiKey::value("sk-2").identity()
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert_eq!(format!("{:?}", ApiKey::value("sk-secret")), "ApiKey(given)");
    }

    #[cfg(not(feature = "ssm"))]
    #[test]
    fn a_parameter_without_ssm_is_refused_at_once() {
        let e = ApiKey::parameter("/conversa/key").unwrap_err();
        assert!(e.contains("not built"), "{e}");
    }
}
