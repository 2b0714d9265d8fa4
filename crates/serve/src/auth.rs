//! API keys: from `--api-key`, `CADENCE_API_KEYS` and `--api-key-file`, checked in constant
//! time. Keys are kept as SHA-256 digests, so the comparison takes the same time whatever the
//! length or content of the key presented.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The name of the cookie the built-in page stores its key in: `<video src>` and
/// `EventSource` cannot send an `Authorization` header.
pub const COOKIE: &str = "cadence_api_key";

/// The accepted keys; empty means no authentication.
#[derive(Clone, Default)]
pub struct Keys(Vec<[u8; 32]>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} key(s))", self.0.len())
    }
}

impl Keys {
    /// `keys`, plus one key per line of `file` (blank lines and `#` comments skipped).
    pub fn load(keys: &[String], file: Option<&Path>) -> Result<Self, String> {
        let mut all: Vec<String> = keys.iter().map(|k| k.trim().to_string()).collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot read the API key file {} ({e}); check --api-key-file",
                    path.display()
                )
            })?;
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
            if all.is_empty() {
                return Err(format!(
                    "the API key file {} holds no key; write one key per line",
                    path.display()
                ));
            }
        }
        if all.iter().any(String::is_empty) {
            return Err("an empty API key was given; remove it or give a real key".into());
        }
        Ok(Self(all.iter().map(|k| digest(k)).collect()))
    }

    /// Whether keys are required.
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `presented` is one of the keys. Every key is compared, so the time does not
    /// say which one matched.
    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(&d))
            .into()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key of a request: `Authorization: Bearer KEY`, else the page's cookie.
pub fn presented(headers: &axum::http::HeaderMap) -> Option<String> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| k.trim().to_string());
    bearer.or_else(|| {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "# team keys\n\nk-file-1\n  k-file-2  \n").unwrap();
        let keys = Keys::load(&["k-flag".into()], Some(&file)).unwrap();
        assert!(keys.required());
        for k in ["k-flag", "k-file-1", "k-file-2"] {
            assert!(keys.accepts(k), "{k}");
        }
        assert!(!keys.accepts("k-file"));
        assert!(!keys.accepts(""));
        assert!(!Keys::load(&[], None).unwrap().required());
        std::fs::write(&file, "# nothing\n").unwrap();
        assert!(Keys::load(&[], Some(&file))
            .unwrap_err()
            .contains("holds no key"));
        assert!(Keys::load(&["".into()], None).is_err());
    }

    #[test]
    fn the_key_comes_from_the_header_or_the_cookie() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "cookie",
            "a=b; cadence_api_key=from-cookie".parse().unwrap(),
        );
        assert_eq!(presented(&h).as_deref(), Some("from-cookie"));
        h.insert("authorization", "Bearer from-header".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("from-header"));
    }
}
