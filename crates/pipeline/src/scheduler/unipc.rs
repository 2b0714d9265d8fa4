//! Flow-matching UniPC (order 2, `bh2`, x0 prediction, lower-order final step).
//!
//! Each [`FlowUniPc::step`] takes the velocity at the current sample and returns the sample at the
//! next sigma. It first *corrects* the incoming sample with the new x0 estimate (UniC, from the
//! second step on), then *predicts* the next sample (UniP) from the corrected one. The x0 estimate
//! is taken from the incoming, uncorrected sample, exactly as the reference does.
//!
//! Scalar coefficients are computed in f64 from the f32 sigmas; tensors stay in their dtype (f32).

use candle_core::Tensor;

use cadence_core::{Error, Result};

use super::{FlowSchedule, Solver, SolverKind};
use crate::noise::NoiseSource;

/// Highest solver order (the reference's default `solver_order = 2`).
const MAX_ORDER: usize = 2;

/// What one UniPC step produced.
#[derive(Debug, Clone)]
pub struct UniPcStep {
    /// The sample at the next sigma (the solver's output; the final step returns the last x0).
    pub sample: Tensor,
    /// `x0 = x_i - sigma_i * v_i`, from the incoming (uncorrected) sample.
    pub x0: Tensor,
    /// The incoming sample after the corrector (equal to it when the corrector did not run).
    pub corrected: Tensor,
    /// Order of the predictor at this step (the corrector of the next step uses it too).
    pub order: usize,
    /// Whether the corrector ran (every step but the first).
    pub used_corrector: bool,
}

/// Stateful UniPC solver over one [`FlowSchedule`]; create a fresh one per sampling stage.
#[derive(Debug, Clone)]
pub struct FlowUniPc {
    schedule: FlowSchedule,
    /// `lambda_k = ln(1 - sigma_k) - ln(sigma_k)`, +inf at sigma 0.
    lambdas: Vec<f64>,
    step_index: usize,
    /// The last `MAX_ORDER` x0 estimates, oldest first.
    x0_history: Vec<Tensor>,
    /// The sample the previous predictor started from (after its corrector).
    last_sample: Option<Tensor>,
    /// Order used by the previous predictor.
    prev_order: usize,
    /// Completed steps, capped at `MAX_ORDER` (multistep warm-up).
    warmup: usize,
}

impl FlowUniPc {
    /// A solver positioned at the schedule's first step (see [`FlowSchedule::begin_index`]).
    pub fn new(schedule: FlowSchedule) -> Self {
        let lambdas = schedule
            .sigmas()
            .iter()
            .map(|&s| {
                let s = f64::from(s);
                (1.0 - s).ln() - s.ln()
            })
            .collect();
        let step_index = schedule.begin_index();
        Self {
            schedule,
            lambdas,
            step_index,
            x0_history: Vec::with_capacity(MAX_ORDER),
            last_sample: None,
            prev_order: 1,
            warmup: 0,
        }
    }

    /// The schedule this solver walks.
    pub fn schedule(&self) -> &FlowSchedule {
        &self.schedule
    }

    /// Index of the sigma the next [`step`](Self::step) starts from.
    pub fn step_index(&self) -> usize {
        self.step_index
    }

    /// Advances `sample` by one step given the model's (guided) velocity at it.
    pub fn step(&mut self, velocity: &Tensor, sample: &Tensor) -> Result<UniPcStep> {
        let n = self.schedule.num_steps();
        let i = self.step_index;
        if i >= n {
            return Err(Error::InvalidInput(format!(
                "UniPC step {i} requested but the schedule has only {n} steps"
            )));
        }
        if velocity.dims() != sample.dims() {
            return Err(Error::InvalidInput(format!(
                "UniPC: velocity shape {:?} differs from sample shape {:?}",
                velocity.dims(),
                sample.dims()
            )));
        }
        let sigmas = self.schedule.sigmas();
        let sigma_i = f64::from(sigmas[i]);
        let x0 = (sample - velocity.affine(sigma_i, 0.0)?)?;

        let used_corrector = self.last_sample.is_some();
        let corrected = match &self.last_sample {
            Some(last) => self.correct(last, &x0)?,
            None => sample.clone(),
        };

        if self.x0_history.len() == MAX_ORDER {
            self.x0_history.remove(0);
        }
        self.x0_history.push(x0.clone());

        let order = MAX_ORDER.min(n - i).min(self.warmup + 1);
        let next = self.predict(&corrected, order)?;

        self.last_sample = Some(corrected.clone());
        self.prev_order = order;
        self.warmup = (self.warmup + 1).min(MAX_ORDER);
        self.step_index += 1;
        Ok(UniPcStep {
            sample: next,
            x0,
            corrected,
            order,
            used_corrector,
        })
    }

    /// UniC: corrects the incoming sample at step `i` using the new estimate `x0_i`.
    /// Must run before `x0_i` is pushed into the history.
    fn correct(&self, last: &Tensor, x0_i: &Tensor) -> Result<Tensor> {
        let i = self.step_index;
        let sigmas = self.schedule.sigmas();
        let (sigma_i, sigma_prev) = (f64::from(sigmas[i]), f64::from(sigmas[i - 1]));
        let alpha_i = 1.0 - sigma_i;
        let h = self.lambdas[i] - self.lambdas[i - 1];
        let hh = -h;
        let phi = hh.exp_m1();
        let b_h = phi;
        let m0 = self.latest_x0()?;

        let mut correction = (x0_i - m0)?;
        if self.prev_order == 2 {
            let older = self.older_x0()?;
            let r = (self.lambdas[i - 2] - self.lambdas[i - 1]) / h;
            // Solve [[1, 1], [r, 1]] rho = [b1, b2].
            let g1 = phi / hh - 1.0;
            let b1 = g1 / b_h;
            let g2 = g1 / hh - 0.5;
            let b2 = 2.0 * g2 / b_h;
            let det = 1.0 - r;
            let rho0 = (b1 - b2) / det;
            let rho1 = (b2 - r * b1) / det;
            let d = ((older - m0)? / r)?;
            correction = (d.affine(rho0, 0.0)? + correction.affine(rho1, 0.0)?)?;
        } else {
            correction = correction.affine(0.5, 0.0)?;
        }
        let base = (last.affine(sigma_i / sigma_prev, 0.0)? - m0.affine(alpha_i * phi, 0.0)?)?;
        Ok((base - correction.affine(alpha_i * b_h, 0.0)?)?)
    }

    /// UniP: predicts the sample at sigma `i + 1` from the corrected sample at `i`.
    /// Runs after `x0_i` is pushed (it is the newest history entry).
    fn predict(&self, sample: &Tensor, order: usize) -> Result<Tensor> {
        let i = self.step_index;
        let sigmas = self.schedule.sigmas();
        let (sigma_next, sigma_i) = (f64::from(sigmas[i + 1]), f64::from(sigmas[i]));
        let alpha_next = 1.0 - sigma_next;
        let h = self.lambdas[i + 1] - self.lambdas[i];
        let hh = -h;
        let phi = hh.exp_m1();
        let b_h = phi;
        let m0 = self.latest_x0()?;
        let mut next =
            (sample.affine(sigma_next / sigma_i, 0.0)? - m0.affine(alpha_next * phi, 0.0)?)?;
        if order == 2 {
            let older = self.older_x0()?;
            let r = (self.lambdas[i - 1] - self.lambdas[i]) / h;
            let d = ((older - m0)? / r)?;
            next = (next - d.affine(alpha_next * b_h * 0.5, 0.0)?)?;
        }
        Ok(next)
    }

    fn latest_x0(&self) -> Result<&Tensor> {
        self.x0_history
            .last()
            .ok_or_else(|| Error::InvalidInput("UniPC: no x0 estimate yet".into()))
    }

    fn older_x0(&self) -> Result<&Tensor> {
        match self.x0_history.as_slice() {
            [older, _] => Ok(older),
            _ => Err(Error::InvalidInput(
                "UniPC: order 2 needs two x0 estimates".into(),
            )),
        }
    }
}

impl SolverKind {
    /// Multistep UniPC ([`FlowUniPc`]): deterministic; the base model and the SR model. It
    /// refuses grids the reference's UniPC cannot run: when truncation makes the first two
    /// timesteps equal (hundreds of steps), it would start at step 1 and run off the end of the
    /// sigma table on the last step.
    pub const UNIPC: SolverKind = SolverKind {
        name: "unipc",
        draws_per_step: false,
        steps_user_audio: false,
        build: |schedule| {
            if schedule.begin_index() != 0 {
                return Err(Error::Config(
                    "the grid repeats its first timestep, which the reference's UniPC cannot \
                     run; use fewer steps"
                        .into(),
                ));
            }
            Ok(Box::new(FlowUniPc::new(schedule.clone())))
        },
    };
}

/// UniPC draws nothing and keeps its own step count (which starts at the schedule's
/// [`FlowSchedule::begin_index`], as the reference's does), so the loop index is not used.
impl Solver for FlowUniPc {
    fn step(
        &mut self,
        _index: usize,
        velocity: &Tensor,
        sample: &Tensor,
        _noise: &mut dyn NoiseSource,
    ) -> Result<Tensor> {
        Ok(FlowUniPc::step(self, velocity, sample)?.sample)
    }
}
