//! `unipc_schedule` cases: `set_timesteps` grids (CPU scalars by nature), UniPC trajectories and
//! distilled trajectories (on the device).

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::fixtures::Case;
use cadence_core::{Error, Result};

use super::common::{compare, f32_tensor, i64_tensor, json, tol_at, Io, Tol};
use cadence_pipeline::scheduler::{DistilledScheduler, FlowSchedule, FlowUniPc, Solver};
use cadence_pipeline::ReplayNoise;

/// A schedule listed in case.json (`schedules.sN_shiftS`).
struct Listed {
    key: String,
    steps: usize,
    shift: f64,
    timesteps: Vec<i64>,
    sigmas: Vec<f32>,
}

/// Reads `schedules`; the step count and shift come from the documented key pattern
/// `s<N>_shift<S>` and the step count is cross-checked against the listed timesteps.
fn listed_schedules(case: &Case) -> Result<Vec<Listed>> {
    let table = json(case, "/schedules")?
        .as_object()
        .ok_or_else(|| Error::Config("schedules is not an object".into()))?;
    let mut out = Vec::new();
    for (key, entry) in table {
        let parsed = key
            .strip_prefix('s')
            .and_then(|rest| rest.split_once("_shift"))
            .and_then(|(n, s)| Some((n.parse::<usize>().ok()?, s.parse::<f64>().ok()?)));
        let (steps, shift) = parsed.ok_or_else(|| {
            Error::Config(format!(
                "schedule key {key:?} is not of the form s<N>_shift<S>"
            ))
        })?;
        let numbers = |field: &str| -> Result<Vec<f64>> {
            entry
                .get(field)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .ok_or_else(|| Error::Config(format!("schedules.{key}.{field} missing")))
        };
        let timesteps: Vec<i64> = numbers("timesteps")?.iter().map(|&t| t as i64).collect();
        let sigmas: Vec<f32> = numbers("sigmas")?.iter().map(|&s| s as f32).collect();
        if timesteps.len() != steps {
            return Err(Error::Config(format!(
                "schedules.{key} lists {} timesteps for {steps} steps",
                timesteps.len()
            )));
        }
        out.push(Listed {
            key: key.clone(),
            steps,
            shift,
            timesteps,
            sigmas,
        });
    }
    Ok(out)
}

/// The listed schedule a trajectory of `steps` steps ran on: the one whose timesteps equal the
/// recorded ones when they are recorded, else the only one with that step count.
fn schedule_for<'a>(
    listed: &'a [Listed],
    steps: usize,
    recorded: Option<&[i64]>,
) -> Result<&'a Listed> {
    let mut hits = listed
        .iter()
        .filter(|l| l.steps == steps && recorded.is_none_or(|r| r == l.timesteps.as_slice()));
    match (hits.next(), hits.next()) {
        (Some(l), None) => Ok(l),
        (None, _) => Err(Error::Config(format!(
            "no listed schedule matches a {steps}-step trajectory"
        ))),
        _ => Err(Error::Config(format!(
            "several listed schedules match a {steps}-step trajectory"
        ))),
    }
}

fn to_i64(t: &Tensor) -> Result<Vec<i64>> {
    Ok(t.to_dtype(candle_core::DType::I64)?.to_vec1::<i64>()?)
}

/// Stacks per-step tensors along a new leading axis.
fn stack(items: &[Tensor]) -> Result<Tensor> {
    Ok(Tensor::stack(items, 0)?)
}

/// Checks every listed schedule, every UniPC trajectory and every distilled trajectory.
pub(super) fn check_case(case: &Case, device: &Device) -> Result<()> {
    let io = Io::open(case, device)?;
    let exact = tol_at(case, "timesteps")?;
    let sigma_tol = tol_at(case, "sigmas")?;
    let traj_tol = tol_at(case, "trajectories")?;
    let listed = listed_schedules(case)?;
    if listed.is_empty() {
        return Err(Error::Config("no schedules listed".into()));
    }

    for l in &listed {
        let s = FlowSchedule::new(l.steps, l.shift)?;
        compare(
            &format!("schedules.{}.timesteps", l.key),
            &i64_tensor(s.timesteps())?,
            &i64_tensor(&l.timesteps)?,
            Tol::Exact,
        )?;
        compare(
            &format!("schedules.{}.sigmas", l.key),
            &f32_tensor(s.sigmas())?,
            &f32_tensor(&l.sigmas)?,
            sigma_tol,
        )?;
        let prefix = format!("out.{}.", l.key);
        for name in io.names_with_prefix(&prefix) {
            match &name[prefix.len()..] {
                "timesteps" => io.check(&name, &i64_tensor(s.timesteps())?, exact)?,
                "sigmas" => io.check(&name, &f32_tensor(s.sigmas())?, sigma_tol)?,
                other => return Err(Error::Config(format!("unknown schedule tensor {other}"))),
            }
        }
    }

    // UniPC trajectories: every `in.<P>.model_outputs`.
    let trajectories: Vec<String> = io
        .names_with_prefix("in.")
        .iter()
        .filter_map(|n| {
            n.strip_suffix(".model_outputs")
                .map(|p| p["in.".len()..].to_string())
        })
        .collect();
    for p in &trajectories {
        let velocities = io.input(&format!("in.{p}.model_outputs"))?;
        let steps = velocities.dim(0)?;
        let timesteps_name = format!("mid.{p}.timesteps");
        let recorded = if io.has(&timesteps_name) {
            Some(to_i64(io.get(&timesteps_name)?)?)
        } else {
            None
        };
        let l = schedule_for(&listed, steps, recorded.as_deref())?;
        let schedule = FlowSchedule::new(steps, l.shift)?;
        let mut solver = FlowUniPc::new(schedule.clone());
        let mut x = io.input(&format!("in.{p}.latent0"))?;
        let (mut latents, mut x0s, mut corrected, mut orders, mut corrector) =
            (vec![], vec![], vec![], vec![], vec![]);
        for i in 0..steps {
            let step = solver.step(&velocities.get(i)?, &x)?;
            x = step.sample.clone();
            latents.push(step.sample);
            x0s.push(step.x0);
            corrected.push(step.corrected);
            orders.push(step.order as i64);
            corrector.push(i64::from(step.used_corrector));
        }
        if let Some(listed_orders) = case.get(&format!("/per_step_orders/{p}")) {
            let want: Vec<i64> = listed_orders
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            if want != orders {
                return Err(Error::InvalidInput(format!(
                    "per_step_orders.{p}: {orders:?}, reference {want:?}"
                )));
            }
        }
        for name in io.names_with_prefix(&format!("out.{p}.")) {
            match name.rsplit('.').next() {
                Some("latents") => io.check(&name, &stack(&latents)?, traj_tol)?,
                _ => return Err(Error::Config(format!("unknown trajectory output {name}"))),
            }
        }
        for name in io.names_with_prefix(&format!("mid.{p}.")) {
            match name.rsplit('.').next() {
                Some("x0_pred") => io.check(&name, &stack(&x0s)?, traj_tol)?,
                Some("corrected_sample") => io.check(&name, &stack(&corrected)?, traj_tol)?,
                Some("order") => io.check(&name, &i64_tensor(&orders)?, exact)?,
                Some("use_corrector") => io.check(&name, &i64_tensor(&corrector)?, exact)?,
                Some("timesteps") => io.check(&name, &i64_tensor(schedule.timesteps())?, exact)?,
                Some("sigmas") => io.check(&name, &f32_tensor(schedule.sigmas())?, sigma_tol)?,
                _ => return Err(Error::Config(format!("unknown trajectory tensor {name}"))),
            }
        }
    }

    // Distilled trajectories: every `in.<P>.noise` next to `in.<P>.velocities`.
    let distilled: Vec<String> = io
        .names_with_prefix("in.")
        .iter()
        .filter_map(|n| {
            n.strip_suffix(".noise")
                .map(|p| p["in.".len()..].to_string())
        })
        .filter(|p| io.has(&format!("in.{p}.velocities")))
        .collect();
    for p in &distilled {
        let velocities = io.input(&format!("in.{p}.velocities"))?;
        let draws = io.input(&format!("in.{p}.noise"))?;
        let steps = velocities.dim(0)?;
        let l = schedule_for(&listed, steps, None)?;
        let mut scheduler = DistilledScheduler::new(FlowSchedule::new(steps, l.shift)?);
        let mut noise = ReplayNoise::new(
            (0..steps)
                .map(|i| draws.get(i))
                .collect::<candle_core::Result<Vec<_>>>()?,
        );
        let mut x = io.input(&format!("in.{p}.latent0"))?;
        let mut latents = vec![];
        for i in 0..steps {
            x = scheduler.step(i, &velocities.get(i)?, &x, &mut noise)?;
            latents.push(x.clone());
        }
        if noise.remaining() != 0 {
            return Err(Error::InvalidInput(format!(
                "{p}: {} draws unused",
                noise.remaining()
            )));
        }
        for name in io.names_with_prefix(&format!("out.{p}.")) {
            match name.rsplit('.').next() {
                Some("latents") => io.check(&name, &stack(&latents)?, traj_tol)?,
                _ => return Err(Error::Config(format!("unknown distilled output {name}"))),
            }
        }
    }
    if trajectories.is_empty() && distilled.is_empty() {
        return Err(Error::Config("no trajectory in the case".into()));
    }
    io.all_outputs_checked()
}
