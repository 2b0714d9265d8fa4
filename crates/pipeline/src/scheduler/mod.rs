//! Noise schedules and per-step update rules of the flow-matching sampler.
//!
//! * [`FlowSchedule`]: the `set_timesteps(N, shift)` grid (integer timesteps and f32 sigmas).
//! * [`FlowUniPc`]: the multistep UniPC solver (order 2, B(h) = expm1(-h), predictor/corrector,
//!   lower-order final step) used by the base stage and the super-resolution stage.
//! * [`DistilledScheduler`]: the one-step DDIM-style update of the distilled model, which draws
//!   fresh noise at every step.
//! * [`ZeroSnrTable`]: the zero-terminal-SNR DDPM table, only used to re-noise the SR input.
//! * [`Solver`]: what the two update rules share; a [`SolverKind`] is a solver as a stage's
//!   configuration, defined in the solver's own file ([`SolverKind::UNIPC`], [`SolverKind::DISTILLED`]).
//!
//! The flow parametrisation is `x_t = (1 - sigma) x0 + sigma * noise`; the model returns a
//! velocity `v`, and `x0 = x_t - sigma * v`.

pub mod distilled;
pub mod solver;
pub mod unipc;
pub mod zero_snr;

pub use distilled::DistilledScheduler;
pub use solver::{Solver, SolverKind};
pub use unipc::{FlowUniPc, UniPcStep};
pub use zero_snr::ZeroSnrTable;

use cadence_core::{Error, Result};

/// Number of training timesteps of the flow model; inference grids subsample it.
pub const TRAIN_TIMESTEPS: usize = 1000;

/// The inference grid of one sampling stage: `N` integer timesteps and `N + 1` sigmas ending at 0.
///
/// The DiT itself is timestep-free; the timesteps only select the CFG scale (the `t > 500` rule)
/// and the sigmas drive the solver.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSchedule {
    timesteps: Vec<i64>,
    sigmas: Vec<f32>,
}

impl FlowSchedule {
    /// The reference's `set_timesteps(num_steps, shift)` on a default scheduler.
    ///
    /// In f64: `s_k = linspace(sigma_max, 0, N + 1)[k]` for `k < N` with
    /// `sigma_max = f32(0.999)` (the top of the f32 training grid, not 1.0), then
    /// `s_k <- shift * s_k / (1 + (shift - 1) * s_k)`; `timesteps[k] = trunc(1000 * s_k)`;
    /// `sigmas = f32([s_0 .. s_{N-1}, 0])`.
    pub fn new(num_steps: usize, shift: f64) -> Result<Self> {
        if num_steps == 0 {
            return Err(Error::Config(
                "a sampling stage needs at least 1 step (got 0)".into(),
            ));
        }
        if !(shift.is_finite() && shift > 0.0) {
            return Err(Error::Config(format!(
                "the schedule shift must be a positive number (got {shift}); the pipeline uses 5.0"
            )));
        }
        // Training grid: sigma_train = 1 - linspace(1, 1/1000, 1000), reversed, stored in f32.
        let sigma_max = f64::from((1.0 - 1.0 / TRAIN_TIMESTEPS as f64) as f32);
        let sigma_min = 0.0f64;
        // numpy linspace: start + k * ((stop - start) / N).
        let delta = (sigma_min - sigma_max) / num_steps as f64;
        let shifted: Vec<f64> = (0..num_steps)
            .map(|k| {
                let s = k as f64 * delta + sigma_max;
                shift * s / (1.0 + (shift - 1.0) * s)
            })
            .collect();
        let timesteps = shifted
            .iter()
            .map(|s| (s * TRAIN_TIMESTEPS as f64).trunc() as i64)
            .collect();
        let sigmas = shifted
            .iter()
            .map(|&s| s as f32)
            .chain(std::iter::once(0.0))
            .collect();
        Ok(Self { timesteps, sigmas })
    }

    /// A schedule from explicit values (for custom grids or replaying a recorded one).
    ///
    /// Needs `sigmas.len() == timesteps.len() + 1`, at least one step, and finite sigmas in
    /// `[0, 1)` (sigma 1 would make the UniPC log-SNR infinite).
    pub fn from_parts(timesteps: Vec<i64>, sigmas: Vec<f32>) -> Result<Self> {
        if timesteps.is_empty() || sigmas.len() != timesteps.len() + 1 {
            return Err(Error::Config(format!(
                "a schedule needs N >= 1 timesteps and N + 1 sigmas (got {} and {})",
                timesteps.len(),
                sigmas.len()
            )));
        }
        if let Some(bad) = sigmas.iter().find(|s| !(0.0..1.0).contains(*s)) {
            return Err(Error::Config(format!(
                "schedule sigma {bad} is outside [0, 1)"
            )));
        }
        Ok(Self { timesteps, sigmas })
    }

    /// Number of solver steps `N`.
    pub fn num_steps(&self) -> usize {
        self.timesteps.len()
    }

    /// The `N` integer timesteps, first (noisiest) first.
    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// The `N + 1` sigmas; the last one is the target noise level (0).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The step at which the reference's UniPC starts counting.
    ///
    /// Its first `step` call looks the given timestep (always `timesteps[0]`) up in the list and
    /// takes the *second* occurrence if there are several. Truncation only produces such a
    /// duplicate for very fine grids (hundreds of steps); every realistic grid starts at 0.
    pub fn begin_index(&self) -> usize {
        let first = self.timesteps[0];
        self.timesteps
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == first)
            .map(|(i, _)| i)
            .nth(1)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_grids() {
        let s8 = FlowSchedule::new(8, 5.0).unwrap();
        assert_eq!(s8.timesteps(), &[999, 972, 937, 892, 833, 749, 624, 416]);
        assert_eq!(s8.sigmas().len(), 9);
        assert_eq!(s8.sigmas()[8], 0.0);
        let s5 = FlowSchedule::new(5, 5.0).unwrap();
        assert_eq!(s5.timesteps(), &[999, 952, 882, 768, 555]);
        assert_eq!(s5.begin_index(), 0);
    }

    #[test]
    fn fine_grids_start_at_the_second_duplicate() {
        let s = FlowSchedule::new(600, 5.0).unwrap();
        assert_eq!(s.timesteps()[0], s.timesteps()[1]);
        assert_eq!(s.begin_index(), 1);
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(FlowSchedule::new(0, 5.0).is_err());
        assert!(FlowSchedule::new(8, 0.0).is_err());
        assert!(FlowSchedule::new(8, f64::NAN).is_err());
        assert!(FlowSchedule::from_parts(vec![999], vec![0.5]).is_err());
        assert!(FlowSchedule::from_parts(vec![999], vec![1.0, 0.0]).is_err());
        assert!(FlowSchedule::from_parts(vec![999], vec![0.9, 0.0]).is_ok());
    }
}
