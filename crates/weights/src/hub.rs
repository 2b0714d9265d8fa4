//! Where the Hub is and where its cache lives, read from the environment variables
//! `huggingface_hub` uses, so Cadence shares a machine's existing cache, token and settings.
//!
//! | setting | variables, first set wins | default |
//! |---|---|---|
//! | endpoint | `HF_ENDPOINT` | `https://huggingface.co` |
//! | cache | `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub` | `~/.cache/huggingface/hub` |
//! | offline | `HF_HUB_OFFLINE` (`1`, `true`, `yes`, `on`) | off |
//! | token | see [`crate::token`] | none |

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::token::Token;

/// Looks up an environment variable; empty values count as unset. Tests pass a map instead
/// of the process environment, so they never mutate it.
pub(crate) type Vars<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Endpoint, cache folder, token and offline switch, as one value the CLI can adjust.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Base URL of the Hub or a mirror, without a trailing `/`.
    pub endpoint: String,
    /// The Hugging Face cache (`.../huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Sent as `Authorization: Bearer` when present.
    pub token: Option<Token>,
    /// Resolve from the cache only; never touch the network.
    pub offline: bool,
}

impl HubSettings {
    /// Settings from the process environment (see the module docs).
    pub fn from_env() -> Result<Self> {
        let vars = |k: &str| std::env::var(k).ok();
        Self::from_vars(&vars, dirs::home_dir().as_deref())
    }

    /// Settings from `vars` and the home directory `home`.
    pub(crate) fn from_vars(vars: &Vars, home: Option<&Path>) -> Result<Self> {
        let vars = |k: &str| vars(k).filter(|v| !v.trim().is_empty());
        let endpoint = vars("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let cache_dir = vars("HF_HUB_CACHE")
            .or_else(|| vars("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| hf_home(&vars, home).map(|h| h.join("hub")))
            .ok_or(Error::NoCacheDir)?;
        let offline = vars("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache_dir,
            token: Token::from_vars(&vars, home)?,
            offline,
        })
    }
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub(crate) fn hf_home(vars: &Vars, home: Option<&Path>) -> Option<PathBuf> {
    vars("HF_HOME")
        .map(PathBuf::from)
        .or_else(|| vars("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("huggingface")))
        .or_else(|| home.map(|h| h.join(".cache").join("huggingface")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)], home: Option<&Path>) -> Result<HubSettings> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        let vars = |k: &str| map.get(k).map(|v| v.to_string());
        HubSettings::from_vars(&vars, home)
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let s = settings(&[], Some(Path::new("/home/u"))).unwrap();
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert_eq!(s.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
        assert!(!s.offline);
        assert!(s.token.is_none());
    }

    #[test]
    fn variables_override_in_order() {
        let home = Some(Path::new("/home/u"));
        let s = settings(&[("HF_HOME", "/hf"), ("HF_ENDPOINT", "http://m/")], home).unwrap();
        assert_eq!(s.cache_dir, Path::new("/hf/hub"));
        assert_eq!(s.endpoint, "http://m");
        let s = settings(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")], home).unwrap();
        assert_eq!(s.cache_dir, Path::new("/c"));
        let s = settings(&[("XDG_CACHE_HOME", "/x")], home).unwrap();
        assert_eq!(s.cache_dir, Path::new("/x/huggingface/hub"));
        for (v, want) in [
            ("1", true),
            ("TRUE", true),
            ("on", true),
            ("0", false),
            ("", false),
        ] {
            let s = settings(&[("HF_HUB_OFFLINE", v)], home).unwrap();
            assert_eq!(s.offline, want, "HF_HUB_OFFLINE={v}");
        }
    }

    #[test]
    fn no_home_and_no_variables_is_a_clear_error() {
        let err = settings(&[], None).unwrap_err().to_string();
        assert!(err.contains("set HF_HOME or HF_HUB_CACHE"), "{err}");
    }
}
