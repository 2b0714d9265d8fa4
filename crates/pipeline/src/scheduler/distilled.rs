//! The distilled model's update (`step_ddim` in the reference): jump to the x0 estimate and
//! re-noise it to the next sigma with fresh Gaussian noise.
//!
//! `x_{i+1} = sigma_{i+1} * n + (1 - sigma_{i+1}) * (x_i - sigma_i * v_i)`, `n ~ N(0, 1)` drawn at
//! every call, the last one included (where `sigma_N = 0` multiplies it by zero), so the number
//! of draws does not depend on the step.

use candle_core::Tensor;

use cadence_core::{Error, Result};

use super::{FlowSchedule, Solver, SolverKind};
use crate::noise::NoiseSource;

/// Stateless distilled (DDIM-style, stochastic) scheduler over one [`FlowSchedule`].
#[derive(Debug, Clone)]
pub struct DistilledScheduler {
    schedule: FlowSchedule,
}

impl DistilledScheduler {
    /// A scheduler walking `schedule`.
    pub fn new(schedule: FlowSchedule) -> Self {
        Self { schedule }
    }

    /// The schedule this scheduler walks.
    pub fn schedule(&self) -> &FlowSchedule {
        &self.schedule
    }
}

/// The sample at step `index + 1` from the velocity at step `index`; draws one standard normal
/// tensor of the sample's shape from `noise`.
impl SolverKind {
    /// The distilled model's update ([`DistilledScheduler`]): one fresh draw per step. In
    /// audio-driven mode the reference steps the user's audio with it too (its update ignores
    /// `is_a2v`).
    pub const DISTILLED: SolverKind = SolverKind {
        name: "distilled",
        draws_per_step: true,
        steps_user_audio: true,
        build: |schedule| Ok(Box::new(DistilledScheduler::new(schedule.clone()))),
    };
}

impl Solver for DistilledScheduler {
    fn step(
        &mut self,
        index: usize,
        velocity: &Tensor,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        let n = self.schedule.num_steps();
        if index >= n {
            return Err(Error::InvalidInput(format!(
                "distilled step {index} requested but the schedule has only {n} steps"
            )));
        }
        if velocity.dims() != sample.dims() {
            return Err(Error::InvalidInput(format!(
                "distilled step: velocity shape {:?} differs from sample shape {:?}",
                velocity.dims(),
                sample.dims()
            )));
        }
        let sigma_cur = self.schedule.sigmas()[index];
        let sigma_next = self.schedule.sigmas()[index + 1];
        let draw = noise.standard_normal(sample.dims(), sample.device())?;
        let clean = (sample - velocity.affine(f64::from(sigma_cur), 0.0)?)?;
        // (1 - sigma) is formed in f32, as the reference does with its f32 sigma table.
        let keep = f64::from(1.0f32 - sigma_next);
        Ok((draw.affine(f64::from(sigma_next), 0.0)? + clean.affine(keep, 0.0)?)?)
    }
}
