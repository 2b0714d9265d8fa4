//! Choosing between an op's implementations: the candle-op reference or one of the project's
//! GPU kernels, per call. In order: the call's own option, the [`KernelPolicy`] of the engine
//! running on this thread, an environment variable (A/B runs of a whole model, self-tests), the
//! op's default. Shared by [`crate::attention`] and [`crate::conv3d`], so both name, read and
//! report a choice the same way.

use std::cell::Cell;
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

    /// The implementation `policy` names for this op, if any.
    fn from_policy(policy: &KernelPolicy) -> Option<Self>;
}

/// The kernels one engine uses, whatever other engines of the process chose: the engine
/// applies it to the ops its thread runs ([`KernelPolicy::scope`]). `None` leaves the op to the
/// environment variable and its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelPolicy {
    /// Attention's implementation.
    pub attention: Option<crate::attention::AttentionKernel>,
    /// conv3d's implementation.
    pub conv3d: Option<crate::conv3d::Conv3dKernel>,
}

thread_local! {
    static POLICY: Cell<KernelPolicy> = const { Cell::new(KernelPolicy { attention: None, conv3d: None }) };
    static POISON: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the output of every GPU kernel launched on this thread filled with NaN before
/// the launch, so an element a kernel fails to write shows up as NaN (the GPU self-tests); the
/// references are unaffected. Restores the previous setting afterwards, also on panic.
pub fn with_poisoned_outputs<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            POISON.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(POISON.with(|p| p.replace(true)));
    f()
}

/// Whether [`with_poisoned_outputs`] is in force on this thread (read by the GPU kernels only).
#[cfg(feature = "cuda")]
pub(crate) fn poisoned_outputs() -> bool {
    POISON.with(Cell::get)
}

impl KernelPolicy {
    /// Runs `f` with this policy for the ops of the current thread, then restores the previous
    /// one (also when `f` panics or returns early).
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(KernelPolicy);
        impl Drop for Restore {
            fn drop(&mut self) {
                POLICY.with(|p| p.set(self.0));
            }
        }
        let _restore = Restore(POLICY.with(|p| p.replace(*self)));
        f()
    }

    /// The policy in force on this thread.
    pub fn current() -> Self {
        POLICY.with(Cell::get)
    }
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
/// Named by the call or the thread's [`KernelPolicy`]; otherwise [`KernelChoice::DEFAULT_GPU`]
/// unless [`KernelChoice::ENV`] names another.
pub fn resolve<K: KernelChoice>(named: Option<K>, env: &EnvChoice<K>) -> Result<(K, bool)> {
    if let Some(kernel) = named.or_else(|| K::from_policy(&KernelPolicy::current())) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::AttentionKernel;

    #[test]
    fn an_engine_policy_applies_inside_its_scope_only() {
        let env = EnvChoice::new();
        let policy = KernelPolicy {
            attention: Some(AttentionKernel::Reference),
            ..KernelPolicy::default()
        };
        let inside = policy.scope(|| resolve::<AttentionKernel>(None, &env).unwrap());
        assert_eq!(inside, (AttentionKernel::Reference, true));
        // The call's own option still wins.
        let named = policy.scope(|| resolve(Some(AttentionKernel::Mma), &env).unwrap());
        assert_eq!(named, (AttentionKernel::Mma, true));
        assert_eq!(KernelPolicy::current(), KernelPolicy::default());
        let outside = resolve::<AttentionKernel>(None, &env).unwrap();
        assert!(
            !outside.1,
            "outside the scope the choice is automatic again"
        );
        // Another thread never sees this thread's policy.
        policy.scope(|| {
            let other = std::thread::spawn(KernelPolicy::current).join().unwrap();
            assert_eq!(other, KernelPolicy::default());
        });
    }
}
