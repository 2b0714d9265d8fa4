//! The [`Solver`] trait every update rule implements, and [`SolverKind`], the configuration
//! value that builds one. Guidance is not a solver's concern: a stage hands the solver the
//! already guided velocity.
//!
//! Adding a solver: a file beside [`super::unipc`] with a type implementing [`Solver`] and a
//! `SolverKind` constant saying how to build it and what it draws (and its `mod` line).

use candle_core::Tensor;

use cadence_core::{Error, Result};

use super::FlowSchedule;
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

/// A solver as a stage's configuration: its name, what it draws, and how it builds over a
/// schedule. Each solver's file defines its value as an associated constant
/// ([`SolverKind::UNIPC`] in `unipc.rs`, [`SolverKind::DISTILLED`] in `distilled.rs`), so a new
/// solver is one file. Two kinds are equal when their names are.
#[derive(Clone, Copy)]
pub struct SolverKind {
    /// Shown in errors and logs; identifies the kind.
    pub name: &'static str,
    /// Whether every step draws one standard normal tensor of the sample's shape.
    pub draws_per_step: bool,
    /// Whether the reference steps a user's audio latent with this solver in audio-driven mode
    /// instead of holding it fixed.
    pub steps_user_audio: bool,
    /// A solver walking the schedule from its first step, or why it cannot walk it.
    pub build: fn(&FlowSchedule) -> Result<Box<dyn Solver>>,
}

impl SolverKind {
    /// The schedule of a stage with `num_steps` steps, if this solver can walk it.
    pub fn schedule(self, num_steps: usize, shift: f64) -> Result<FlowSchedule> {
        let schedule = FlowSchedule::new(num_steps, shift)?;
        (self.build)(&schedule).map_err(|e| match e {
            Error::Config(why) => {
                Error::Config(format!("{num_steps} steps at shift {shift}: {why}"))
            }
            other => other,
        })?;
        Ok(schedule)
    }

    /// A solver walking `schedule` from its first step.
    pub fn build(self, schedule: &FlowSchedule) -> Result<Box<dyn Solver>> {
        (self.build)(schedule)
    }
}

impl PartialEq for SolverKind {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for SolverKind {}

impl std::fmt::Debug for SolverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
