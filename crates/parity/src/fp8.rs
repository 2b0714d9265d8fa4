//! The FP8 model against the golden fixtures: how far FP8 GEMM weights
//! move each layer and the outputs from the official model, and the e4m3-derived bound each
//! distance must stay within.
//!
//! The model is loaded from the case's weights with FP8 GEMMs ([`LoadOptions`]) and computes
//! in the case's dtype. Measured against the case's reference tensors:
//!
//! * teacher forced (every layer `i` fed the reference's `mid.layer_{i-1}` in one forward pass): `attn_out_i`, within
//!   [`BRANCH_REL_L2`]; `mlp_out_i`, within `BRANCH_REL_L2` plus the relative error its input
//!   inherits from the attention branch; `layer_i`, within [`propagate`] over the layer's two
//!   branches;
//! * free running (the whole forward from the inputs): every `layer_i`, and `out.video` and
//!   `out.audio`, within [`propagate`] over all branches before them.
//!
//! Each bound is computed from the reference's own tensor norms and the e4m3 unit roundoff
//! ([`crate::fp8_bounds`] derives them), plus the case's tolerance for the same
//! tensor (the distance a correct dense port already has from the reference: 2e-5 in the f32
//! cases, the bf16 tolerances in the bf16 ones). None is fitted to a measured FP8 error.

use std::fmt::Write as _;

use candle_core::{DType, Device, Tensor};

use crate::fixtures::Case;
use crate::fp8_bounds::{propagate, ResidualBranch, BRANCH_REL_L2};
use cadence_core::compare::diff;
use cadence_core::trace::{self, Recorded};
use cadence_core::{Checkpoint, Error, Result};
use cadence_kernels::fp8::Scaling;

use crate::dit::{previous, ForwardCase};
use cadence_model::packing;
use cadence_model::precision::{LoadOptions, WeightFormat};
use cadence_model::DitModel;

/// One measured distance and its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// What was compared (`mid.layer_3 (teacher forced)`, `out.video`, ...).
    pub name: String,
    /// Relative L2 distance from the reference.
    pub rel_l2: f64,
    /// The bound it must stay within.
    pub bound: f64,
}

impl Measured {
    /// Whether the distance is within its bound (false for NaN).
    pub fn passes(&self) -> bool {
        self.rel_l2 <= self.bound
    }
}

/// Every distance measured on one case.
#[derive(Debug, Clone)]
pub struct Fp8Report {
    /// The case folder name.
    pub case: String,
    /// The compute dtype the case runs in.
    pub compute: DType,
    /// The measurements, teacher-forced layers first, then the free-running forward.
    pub rows: Vec<Measured>,
}

impl Fp8Report {
    /// The measurements outside their bound.
    pub fn failures(&self) -> Vec<&Measured> {
        self.rows.iter().filter(|m| !m.passes()).collect()
    }

    /// A markdown table of every measurement.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} ({:?} compute, FP8 weights)\n\n| tensor | rel L2 | bound |\n|---|---|---|\n",
            self.case, self.compute
        );
        for m in &self.rows {
            let _ = writeln!(out, "| {} | {:.4} | {:.4} |", m.name, m.rel_l2, m.bound);
        }
        out
    }
}

/// L2 norm in f64.
fn norm(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt())
}

/// Runs the FP8 model on a `dit_forward` case and measures it (module docs). Activations are
/// scaled as `activations` says.
pub fn fp8_dit_forward(case: &Case, device: &Device, activations: Scaling) -> Result<Fp8Report> {
    let fc = ForwardCase::open(case, device)?;
    let io = &fc.io;
    let get = |name: &str| -> Result<&Tensor> {
        io.get(name).ok_or_else(|| {
            Error::InvalidInput(format!("{}: io.safetensors has no {name}", case.name))
        })
    };
    let rel_tol = |name: &str, teacher_forced: bool| -> Result<f64> {
        Ok(fc.tolerance(name, teacher_forced)?.rel_l2.unwrap_or(0.0))
    };
    let options = LoadOptions {
        compute: fc.compute,
        weights: WeightFormat::Fp8 { activations },
    };
    let model = DitModel::load_with(
        &Checkpoint::open(case.file("weights.safetensors"))?,
        fc.config.clone(),
        &options,
        device,
    )?;
    let mut rows = Vec::new();
    let mut measure = |name: String, got: &Tensor, want: &Tensor, bound: f64| -> Result<()> {
        let d = diff(got, want).map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?;
        rows.push(Measured {
            name,
            rel_l2: d.rel_l2,
            bound,
        });
        Ok(())
    };

    // The reference's branch norms, in forward order.
    let layers = fc.config.num_layers;
    let mut branches = Vec::with_capacity(2 * layers);
    for i in 0..layers {
        let prev = get(&previous(i))?;
        let attn = get(&format!("mid.attn_out_{i}"))?;
        let mid = (prev + attn.to_dtype(prev.dtype())?)?;
        branches.push(ResidualBranch {
            input: norm(prev)?,
            output: norm(attn)?,
        });
        branches.push(ResidualBranch {
            input: norm(&mid)?,
            output: norm(get(&format!("mid.mlp_out_{i}"))?)?,
        });
    }

    // Teacher forced: every layer fed the reference's input, in one forward pass.
    let forced = (0..layers)
        .map(|i| Ok((format!("layer_{i}_in"), get(&previous(i))?.clone())))
        .collect::<Result<Recorded>>()?;
    let (out, tensors) = trace::capture_forcing([], forced, || model.forward(&fc.packed));
    out?;
    for i in 0..layers {
        let name = format!("mid.layer_{i}");
        let tol = rel_tol(&name, true)?;
        let recorded = |n: String| {
            tensors
                .get(&n)
                .cloned()
                .ok_or_else(|| Error::InvalidInput(format!("layer {i} recorded no {n}")))
        };
        let (attn, mlp) = (branches[2 * i], branches[2 * i + 1]);
        measure(
            format!("mid.attn_out_{i} (teacher forced)"),
            &recorded(format!("attn_out_{i}"))?,
            get(&format!("mid.attn_out_{i}"))?,
            BRANCH_REL_L2 + tol,
        )?;
        measure(
            format!("mid.mlp_out_{i} (teacher forced)"),
            &recorded(format!("mlp_out_{i}"))?,
            get(&format!("mid.mlp_out_{i}"))?,
            BRANCH_REL_L2 + BRANCH_REL_L2 * attn.output / mid_norm(&mlp) + tol,
        )?;
        let want = get(&name)?;
        let bound = propagate(&[attn, mlp]).last().copied().unwrap_or(0.0) / norm(want)?;
        measure(
            format!("{name} (teacher forced)"),
            &recorded(format!("layer_{i}"))?,
            want,
            bound + tol,
        )?;
    }

    // Free running: the whole forward from the inputs.
    let errors = propagate(&branches);
    let (out, tensors) = trace::capture([], || model.forward(&fc.packed));
    let out = out?;
    for i in 0..layers {
        let name = format!("mid.layer_{i}");
        let want = get(&name)?;
        let got = tensors
            .get(&format!("layer_{i}"))
            .ok_or_else(|| Error::InvalidInput(format!("the forward recorded no layer_{i}")))?;
        let bound = errors[2 * i + 1] / norm(want)? + rel_tol(&name, false)?;
        measure(name, got, want, bound)?;
    }
    let last = get(&format!("mid.layer_{}", layers.saturating_sub(1)))?;
    let output_bound = errors.last().copied().unwrap_or(0.0) / norm(last)?;
    let (video, audio) = packing::unpack(&out.video_rows, &out.audio_rows, &fc.packed.layout)?;
    for (name, got) in [("out.video", video), ("out.audio", audio)] {
        if let Some(want) = io.get(name) {
            let bound = output_bound + rel_tol(name, false)?;
            measure(name.to_string(), &got, want, bound)?;
        }
    }
    Ok(Fp8Report {
        case: case.name.clone(),
        compute: fc.compute,
        rows,
    })
}

/// `‖x + attn_out‖`, the input of the MLP branch.
fn mid_norm(mlp: &ResidualBranch) -> f64 {
    mlp.input.max(f64::MIN_POSITIVE)
}
