//! The Hugging Face access token, found where `huggingface_hub` looks for it.
//!
//! Order: `HF_TOKEN`, then the legacy `HUGGING_FACE_HUB_TOKEN`, then the token file
//! (`HF_TOKEN_PATH`, else `$HF_HOME/token`, else `$XDG_CACHE_HOME/huggingface/token`, else
//! `~/.cache/huggingface/token`, the file `huggingface-cli login` writes).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hub::{hf_home, Vars};

/// A token and where it came from. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    value: String,
    source: TokenSource,
}

/// Where a token came from, so messages can say which one was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given by the caller (a CLI option).
    Explicit,
    /// An environment variable.
    Env(&'static str),
    /// A token file.
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Explicit => write!(f, "the command line"),
            TokenSource::Env(name) => write!(f, "{name}"),
            TokenSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<redacted> from {})", self.source)
    }
}

impl Token {
    /// A token given by the caller.
    pub fn explicit(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            source: TokenSource::Explicit,
        }
    }

    /// The secret, for the `Authorization` header only.
    pub(crate) fn secret(&self) -> &str {
        &self.value
    }

    /// Where the token came from.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// The token the environment provides, if any (see the module docs for the order).
    pub(crate) fn from_vars(vars: &Vars, home: Option<&Path>) -> Result<Option<Self>> {
        for name in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
            if let Some(v) = vars(name) {
                let v = v.trim();
                if !v.is_empty() {
                    return Ok(Some(Self {
                        value: v.to_string(),
                        source: TokenSource::Env(name),
                    }));
                }
            }
        }
        let Some(path) = token_file(vars, home) else {
            return Ok(None);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(Self {
                value: text.trim().to_string(),
                source: TokenSource::File(path),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// Where the token file is, if any location can be derived.
fn token_file(vars: &Vars, home: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = vars("HF_TOKEN_PATH") {
        return Some(PathBuf::from(p));
    }
    hf_home(vars, home).map(|h| h.join("token"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_wins_over_file_and_debug_hides_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
        let home = dir.path().to_str().unwrap();
        let v = vars(&[("HF_TOKEN", "hf_env"), ("HF_HOME", home)]);
        let t = Token::from_vars(&v, None).unwrap().unwrap();
        assert_eq!(t.secret(), "hf_env");
        assert_eq!(t.source(), &TokenSource::Env("HF_TOKEN"));
        assert!(!format!("{t:?}").contains("hf_env"));

        let v = vars(&[("HUGGING_FACE_HUB_TOKEN", "legacy"), ("HF_HOME", home)]);
        let t = Token::from_vars(&v, None).unwrap().unwrap();
        assert_eq!(t.source(), &TokenSource::Env("HUGGING_FACE_HUB_TOKEN"));
    }

    #[test]
    fn token_file_locations() {
        let dir = tempfile::tempdir().unwrap();
        let hf_home = dir.path().join("hf");
        std::fs::create_dir_all(&hf_home).unwrap();
        std::fs::write(hf_home.join("token"), "  hf_file \n").unwrap();
        let v = vars(&[("HF_HOME", hf_home.to_str().unwrap())]);
        let t = Token::from_vars(&v, None).unwrap().unwrap();
        assert_eq!(t.secret(), "hf_file");
        assert_eq!(t.source(), &TokenSource::File(hf_home.join("token")));

        // Default location under the home directory.
        let home = dir.path().join("home");
        let default = home.join(".cache/huggingface/token");
        std::fs::create_dir_all(default.parent().unwrap()).unwrap();
        std::fs::write(&default, "hf_default").unwrap();
        let t = Token::from_vars(&vars(&[]), Some(&home)).unwrap().unwrap();
        assert_eq!(t.source(), &TokenSource::File(default));

        // HF_TOKEN_PATH overrides; a missing or empty file means no token.
        let v = vars(&[("HF_TOKEN_PATH", "/nonexistent/token")]);
        assert!(Token::from_vars(&v, Some(&home)).unwrap().is_none());
        std::fs::write(hf_home.join("token"), "\n").unwrap();
        let v = vars(&[("HF_HOME", hf_home.to_str().unwrap())]);
        assert!(Token::from_vars(&v, None).unwrap().is_none());
    }
}
