//! Choosing between an op's implementations: the candle-op reference or one of the project's
//! GPU kernels, per call. An environment variable replaces the GPU kernel for A/B runs of a
//! whole model and for self-tests. Shared by [`crate::attention`] and [`crate::conv3d`], so
//! both name, read and report a choice the same way.

use std::fmt;
use std::sync::OnceLock;

use candle_core::Result;

/// The implementations of one op.
pub trait KernelChoice: Copy + Eq + fmt::Display + Send + Sync + 'static {
    /// The op's name in messages (`attention`, `conv3d`).
    const OP: &'static str;
    /// Environment variable that names the implementation to use instead of the automatic
    /// GPU kernel (`reference`: never a GPU kernel).
    const ENV: &'static str;
    /// Every implementation.
    const ALL: &'static [Self];
    /// The kernel the op uses on Hopper when nothing overrides it.
    const DEFAULT_GPU: Self;

    /// The lower-case name used by [`Self::ENV`] and in messages.
    fn name(self) -> &'static str;
}

/// The implementation called `s`; the error lists the known names.
pub fn parse<K: KernelChoice>(s: &str) -> Result<K> {
    K::ALL
        .iter()
        .copied()
        .find(|k| k.name() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = K::ALL.iter().map(|k| k.name()).collect();
            let expected = match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => names.join(""),
            };
            candle_core::Error::Msg(format!(
                "unknown {} kernel {s:?} (expected {expected})",
                K::OP
            ))
        })
}

/// Where an op caches the implementation its environment variable names (read once per
/// process).
pub type EnvChoice<K> = OnceLock<std::result::Result<Option<K>, String>>;

/// The implementation a call runs, and whether it was named by the caller (`strict`: a kernel
/// that cannot compute the call is then an error, not a silent fallback to the reference).
/// Without a name, [`KernelChoice::DEFAULT_GPU`] unless [`KernelChoice::ENV`] names another.
pub fn resolve<K: KernelChoice>(named: Option<K>, env: &EnvChoice<K>) -> Result<(K, bool)> {
    if let Some(kernel) = named {
        return Ok((kernel, true));
    }
    let from_env = env
        .get_or_init(|| match std::env::var(K::ENV) {
            Ok(name) if !name.is_empty() => parse(&name)
                .map(Some)
                .map_err(|e| format!("{}: {e}", K::ENV)),
            _ => Ok(None),
        })
        .clone()
        .map_err(candle_core::Error::Msg)?;
    Ok((from_env.unwrap_or(K::DEFAULT_GPU), false))
}
