//! `cadence plan`: how a clip fits a GPU's memory, from the published models' configurations,
//! without loading anything. The arithmetic and the choice are the library's
//! ([`cadence_pipeline::memory`]); this prints them.

use serde::Serialize;

use cadence_pipeline::memory::{
    arrange, gb, plan_memory, Arrangement, MemoryBudget, MemoryJob, MemoryModels, MemoryPlan,
};
use cadence_pipeline::{GenerationRequest, Limits};

use crate::args::PlanArgs;
use crate::errors::{from_core, CliError, ExitKind, Phase};

/// Runs `cadence plan`.
pub fn run(args: &PlanArgs) -> Result<(), CliError> {
    let max_memory = args.memory.max_memory.ok_or_else(|| {
        CliError::usage(
            "cadence plan needs the budget: give --max-memory, e.g. --max-memory 24GB (the \
             memory of the GPU to plan for)",
        )
    })?;
    let mode = args.mode.to_mode(args.image, false);
    let (base, sr) = mode.resolution.stage_sizes(args.width.zip(args.height));
    let mut request = GenerationRequest::new("plan");
    (request.width, request.height) = base;
    (request.sr_width, request.sr_height) = (sr.map(|s| s.0), sr.map(|s| s.1));
    request.seconds = args.seconds;
    let valid = request
        .validate(&Limits::default())
        .map_err(|e| from_core(e, Phase::Inputs))?;
    let job = MemoryJob {
        image: args.image,
        ..MemoryJob::clip(args.seconds as usize, valid.base, valid.sr)
            .map_err(|e| from_core(e, Phase::Inputs))?
    };
    let models = MemoryModels::published(mode.resolution.sr_variant(), mode.needs_wan());
    let budget = MemoryBudget {
        max_memory,
        precision: args.memory.precision,
        offload: args.memory.offload,
    };
    let planned = plan_memory(&job, &models, &budget);
    // With no fit, the JSON still describes the allowed arrangement that comes closest.
    let plan = match &planned {
        Ok(plan) => plan.clone(),
        Err(_) => Arrangement::ladder(budget.precision, budget.offload)
            .into_iter()
            .map(|r| arrange(&job, &models, r, max_memory))
            .min_by_key(MemoryPlan::peak)
            .ok_or_else(|| CliError::usage("no placement is allowed by these flags"))?,
    };
    let what = format!(
        "{mode}, {} s, {}x{}",
        args.seconds,
        sr.unwrap_or(base).0,
        sr.unwrap_or(base).1
    );
    if args.json {
        println!("{}", PlanJson::new(&what, &plan).to_json());
    } else if planned.is_ok() {
        println!("{what}\n{}", plan.table());
        println!(
            "host memory for the offloaded models: {:.1} GB; copied to the device per clip: \
             {:.1} GB{}",
            gb(plan.host_bytes),
            gb(plan.transfer_per_clip),
            if plan.streamed_per_pass > 0 {
                format!(
                    ", plus {:.1} GB streamed per forward pass",
                    gb(plan.streamed_per_pass)
                )
            } else {
                String::new()
            }
        );
    }
    match planned {
        Ok(_) => Ok(()),
        Err(e) => Err(CliError::new(
            ExitKind::Device,
            from_core(e, Phase::Inputs).message,
        )),
    }
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct PlanJson {
    /// The clip planned for.
    clip: String,
    /// Whether the plan fits the budget.
    fits: bool,
    budget_gb: f64,
    peak_gb: f64,
    /// `bf16` or `fp8`.
    precision: &'static str,
    /// `resident`, `visiting` or `streamed`.
    dits: String,
    /// `resident`, `visiting`, `streamed` or `host`.
    text_encoder: String,
    /// Host RAM the offloaded models take.
    host_gb: f64,
    /// Copied to the device per clip by the visiting models.
    transfer_per_clip_gb: f64,
    /// Copied per forward pass by a streamed DiT.
    streamed_per_pass_gb: f64,
    stages: Vec<StageJson>,
}

#[derive(Debug, Serialize)]
struct StageJson {
    /// `encode`, `base`, `sr` or `decode`.
    name: String,
    peak_gb: f64,
    parts: Vec<PartJson>,
}

#[derive(Debug, Serialize)]
struct PartJson {
    name: &'static str,
    gb: f64,
}

impl PlanJson {
    fn new(clip: &str, plan: &MemoryPlan) -> Self {
        Self {
            clip: clip.into(),
            fits: plan.fits(),
            budget_gb: gb(plan.budget),
            peak_gb: gb(plan.peak()),
            precision: plan.arrangement.precision.name(),
            dits: plan.arrangement.dits.to_string(),
            text_encoder: plan.arrangement.text_encoder.to_string(),
            host_gb: gb(plan.host_bytes),
            transfer_per_clip_gb: gb(plan.transfer_per_clip),
            streamed_per_pass_gb: gb(plan.streamed_per_pass),
            stages: plan
                .stages
                .iter()
                .map(|s| StageJson {
                    name: s.stage.to_string(),
                    peak_gb: gb(s.total()),
                    parts: s
                        .parts
                        .iter()
                        .map(|&(name, bytes)| PartJson {
                            name,
                            gb: gb(bytes),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn to_json(&self) -> String {
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
