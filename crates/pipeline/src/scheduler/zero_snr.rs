//! The zero-terminal-SNR DDPM table (`ZeroSNRDDPMDiscretization()(1000, flip=True)`).
//!
//! Only the super-resolution stage uses it: the upsampled base latent is re-noised to the signal
//! level of training step 220 before the SR model refines it. Despite the reference calling the
//! entries "sigmas", they are *signal* coefficients `sqrt(alpha_bar_k)` after the zero-SNR rescale:
//! entry 0 is 0.99957, entry 999 is exactly 0.

use cadence_core::{Error, Result};

/// Number of DDPM training steps of the table.
pub const ZERO_SNR_STEPS: usize = 1000;
/// `beta` at the first training step (the table is linear in `sqrt(beta)`).
const LINEAR_START: f64 = 0.00085;
/// `beta` at the last training step.
const LINEAR_END: f64 = 0.012;

/// The 1000-entry signal-coefficient table, indexed by DDPM training step.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroSnrTable {
    alphas_cumprod: Vec<f32>,
    signal: Vec<f32>,
}

impl Default for ZeroSnrTable {
    fn default() -> Self {
        Self::new()
    }
}

impl ZeroSnrTable {
    /// Builds the table exactly as the reference does.
    ///
    /// In f64: `beta_k = linspace(sqrt(0.00085), sqrt(0.012), 1000)_k ^ 2`,
    /// `abar = cumprod(1 - beta)`, rounded to f32. Then in f32: `a = sqrt(abar)`,
    /// `a <- (a - a[999]) * (a[0] / (a[0] - a[999]))`, which pins `a[999]` to 0.
    pub fn new() -> Self {
        let roots = torch_linspace(LINEAR_START.sqrt(), LINEAR_END.sqrt(), ZERO_SNR_STEPS);
        let mut product = 1.0f64;
        let alphas_cumprod: Vec<f32> = roots
            .iter()
            .map(|r| {
                product *= 1.0 - r * r;
                product as f32
            })
            .collect();
        let roots: Vec<f32> = alphas_cumprod.iter().map(|a| a.sqrt()).collect();
        let (first, last) = (roots[0], roots[ZERO_SNR_STEPS - 1]);
        let scale = first / (first - last);
        let signal = roots.iter().map(|a| (a - last) * scale).collect();
        Self {
            alphas_cumprod,
            signal,
        }
    }

    /// `cumprod(1 - beta)` rounded to f32 (the input of the rescale).
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// All 1000 signal coefficients, index = training step.
    pub fn signal_coefficients(&self) -> &[f32] {
        &self.signal
    }

    /// The signal coefficient at training step `step` (0..1000).
    pub fn signal_at(&self, step: usize) -> Result<f32> {
        self.signal.get(step).copied().ok_or_else(|| {
            Error::Config(format!(
                "zero-SNR step {step} is out of range 0..{ZERO_SNR_STEPS} (the SR stage uses 220)"
            ))
        })
    }
}

/// `torch.linspace(start, end, steps)` in f64: the first half counts up from `start`, the second
/// half counts down from `end`, so both endpoints are exact.
fn torch_linspace(start: f64, end: f64, steps: usize) -> Vec<f64> {
    let step = (end - start) / (steps - 1) as f64;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f64
            } else {
                end - step * (steps - i - 1) as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let t = ZeroSnrTable::new();
        assert_eq!(t.signal_coefficients().len(), ZERO_SNR_STEPS);
        assert_eq!(t.signal_at(999).unwrap(), 0.0);
        assert!((t.signal_at(0).unwrap() - (1.0f32 - 0.00085).sqrt()).abs() < 1e-6);
        assert!(t.signal_at(1000).is_err());
    }
}
