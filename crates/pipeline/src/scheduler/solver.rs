//! The [`Solver`] trait every update rule implements, and [`SolverKind`], the configuration
//! choice that builds one. Guidance is not a solver's concern: a stage hands the solver the
//! already guided velocity.
//!
//! Adding a solver: a file beside [`super::unipc`] with a type implementing [`Solver`], and a
//! variant of [`SolverKind`] saying how to build it and what it draws.

use candle_core::Tensor;

use cadence_core::{Error, Result};

use super::{DistilledScheduler, FlowSchedule, FlowUniPc};
use crate::noise::NoiseSource;

/// Turns the velocity at one step into the sample at the next, for one latent stream (video or
/// audio) of one stage; a stage builds one per stream.
pub trait Solver {
    /// The sample at step `index + 1` from the (guided) `velocity` at step `index`. A solver
    /// that draws noise takes it from `noise`.
    fn step(
        &mut self,
        index: usize,
        velocity: &Tensor,
        sample: &Tensor,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor>;
}

/// The solvers a stage can be configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolverKind {
    /// Multistep UniPC ([`FlowUniPc`]): deterministic; the base model and the SR model.
    UniPc,
    /// The distilled model's update ([`DistilledScheduler`]): one fresh draw per step.
    Distilled,
}

impl SolverKind {
    /// The schedule of a stage with `num_steps` steps, refusing grids the reference's UniPC
    /// cannot run: when truncation makes the first two timesteps equal (hundreds of steps), it
    /// starts at step 1 and runs off the end of the sigma table on the last step. (The
    /// distilled update indexes by loop step and is unaffected.)
    pub fn schedule(self, num_steps: usize, shift: f64) -> Result<FlowSchedule> {
        let schedule = FlowSchedule::new(num_steps, shift)?;
        if self == Self::UniPc && schedule.begin_index() != 0 {
            return Err(Error::Config(format!(
                "{num_steps} steps at shift {shift} repeat the first timestep, which the \
                 reference's UniPC cannot run; use fewer steps"
            )));
        }
        Ok(schedule)
    }

    /// A solver walking `schedule` from its first step.
    pub fn build(self, schedule: &FlowSchedule) -> Box<dyn Solver> {
        match self {
            Self::UniPc => Box::new(FlowUniPc::new(schedule.clone())),
            Self::Distilled => Box::new(DistilledScheduler::new(schedule.clone())),
        }
    }

    /// Whether every step draws one standard normal tensor of the sample's shape.
    pub fn draws_per_step(self) -> bool {
        self == Self::Distilled
    }

    /// Whether the reference steps a user's audio latent with this solver in audio-driven mode
    /// instead of holding it (its distilled update ignores `is_a2v`; UniPC holds it).
    pub fn reference_steps_user_audio(self) -> bool {
        self == Self::Distilled
    }
}
