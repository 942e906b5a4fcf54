//! The use cases, one small struct each, built once at start from the ports they use:
//! [`chat::ChatService`] (a chat turn), [`conversations::ConversationService`] (list, read,
//! rename, delete, export), [`files::FileService`] (uploads, extraction and its background
//! worker, downloads), [`accounts::AccountService`] (local sign-in, users),
//! [`keys::KeyService`] (API keys) and [`health::HealthService`]. Handlers turn HTTP into these calls; these
//! talk only to ports, and answer with [`Error`], in the product's words.

pub mod accounts;
pub mod chat;
pub mod conversations;
mod error;
pub mod files;
pub mod health;
pub mod keys;
pub mod retrieval;
pub mod search;
pub mod title;
pub mod usage;
pub mod vectors;

pub use error::Error;

/// Sizes in people's words: `14.2 MB`, `512 KB`, `90 bytes`.
pub fn human_size(bytes: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= MB {
        let v = b / MB;
        if (v - v.round()).abs() < 0.05 {
            format!("{} MB", v.round())
        } else {
            format!("{v:.1} MB")
        }
    } else if bytes >= 1024 {
        let v = b / 1024.0;
        if (v - v.round()).abs() < 0.05 {
            format!("{} KB", v.round())
        } else {
            format!("{v:.1} KB")
        }
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::human_size(10 * 1024 * 1024), "10 MB");
        assert_eq!(super::human_size(14_889_779), "14.2 MB");
        assert_eq!(super::human_size(2048), "2 KB");
        assert_eq!(super::human_size(4000), "3.9 KB");
        assert_eq!(super::human_size(90), "90 bytes");
    }
}
