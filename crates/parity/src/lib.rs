//! Parity of every Cadence component with the official implementation, on the golden fixtures.
//!
//! [`fixtures`] finds the cases (`$CADENCE_FIXTURES`, else `../shared/fixtures`); each module
//! below holds the checker of the fixture kinds of one component, which recomputes what a case
//! pins down on a given device and compares it at the tolerances the case states. The CPU tests
//! of this crate and `cadence selftest` (on any device) run the same checkers, through
//! [`CHECKERS`]. Layer-by-layer comparisons install a [`cadence_core::trace`] capture around the
//! production forward passes, so the models carry no parity code of their own.

#![warn(missing_docs)]

pub mod codecs;
pub mod dit;
pub mod fixtures;
pub mod fp8;
pub mod fp8_bounds;
pub mod media;
pub mod sampling;
pub mod text;

use cadence_core::Result;
use candle_core::Device;

use fixtures::Case;

/// A parity check of one case on one device.
pub type CheckFn = fn(&Case, &Device) -> Result<()>;

/// The checker of one component's fixture kinds.
pub struct Checker {
    /// The component, for messages.
    pub component: &'static str,
    /// The fixture kinds it owns.
    pub kinds: &'static [&'static str],
    /// Its check, in the precision the case states (f32 unless the case says otherwise).
    pub check: CheckFn,
    /// A second check in the production precision, for the kinds listed with it.
    pub production: Option<(&'static [&'static str], CheckFn)>,
}

/// Every checker; each fixture kind belongs to exactly one.
pub const CHECKERS: [Checker; 5] = [
    Checker {
        component: "DiT",
        kinds: dit::KINDS,
        check: dit::check_case,
        production: None,
    },
    Checker {
        component: "text encoder",
        kinds: text::KINDS,
        check: text::check_case,
        production: None,
    },
    Checker {
        component: "codecs",
        kinds: codecs::KINDS,
        check: codecs::check_case,
        production: Some((codecs::BF16_KINDS, codecs::check_case_bf16)),
    },
    Checker {
        component: "media",
        kinds: media::KINDS,
        check: media::check_case,
        production: None,
    },
    Checker {
        component: "sampling",
        kinds: sampling::KINDS,
        check: sampling::check_case,
        production: None,
    },
];

/// The checker owning `kind`.
pub fn checker_for(kind: &str) -> Option<&'static Checker> {
    CHECKERS.iter().find(|c| c.kinds.contains(&kind))
}

/// Every kind some checker owns, sorted.
pub fn known_kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&str> = CHECKERS
        .iter()
        .flat_map(|c| c.kinds.iter().copied())
        .collect();
    kinds.sort_unstable();
    kinds
}
