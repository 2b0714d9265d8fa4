//! GPU self-test and benchmark of the attention kernels (feature `cuda`; an sm_90 GPU).
//!
//! ```text
//! attention_gpu check              random inputs against the reference: several lengths (tile
//!                                  multiples and not), GQA 5:1 and other ratios, narrow heads,
//!                                  frame-window masks; outputs poisoned with NaN first; each
//!                                  run twice (a result that moves between runs is a race)
//! attention_gpu fixtures           each dit_forward fixture layer's attention inputs through
//!                                  both kernels, against the fixture's attention output
//! attention_gpu model              the whole DiT on the GPU against every dit_forward fixture
//!                                  (cadence_parity::dit), with the kernel that
//!                                  CADENCE_ATTENTION_KERNEL selects (default: automatic)
//! attention_gpu bench [--reps N] [--out FILE]
//!                                  median time and TFLOP/s (unmasked work only) of both
//!                                  kernels: full attention at 4k/15k/65k tokens and the 1080p
//!                                  frame-window pattern; one JSON object per line to FILE
//! ```
//! Each command prints one line per case and ends with PASS/FAIL; the exit status is non-zero
//! on any failure. scripts/gpu/attention.sh runs them all on the device machine.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cadence_core::compare::diff;
use cadence_kernels::attention::schedule::TileSchedule;
use cadence_kernels::attention::{attention, attention_with, AttentionKernel, AttentionOptions};
use cadence_kernels::dispatch::{with_poisoned_outputs, KernelChoice};
use cadence_kernels::AttentionMask;
use cadence_model::packing::local_attention_mask;
use cadence_model::packing::TokenLayout;
use cadence_parity::fixtures::{cases_of, Case};
use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
use candle_core::{DType, Device, Tensor};

/// The brief's bf16 bound: ||out - ref|| / ||ref||.
const REL_L2: f64 = 1e-2;
const GPU_KERNELS: [AttentionKernel; 3] = [
    AttentionKernel::Mma,
    AttentionKernel::Wgmma,
    AttentionKernel::WgmmaPipelined,
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dev = Device::new_cuda(0).context("no CUDA device 0")?;
    let ok = match args.first().map(String::as_str) {
        Some("check") => check(&dev)?,
        Some("fixtures") => fixtures(&dev)?,
        Some("model") => model(&dev)?,
        Some("bench") => bench(&dev, &args[1..])?,
        _ => bail!("usage: attention_gpu check|fixtures|model|bench [--reps N] [--out FILE]"),
    };
    println!("{}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// A layout with a token grid of `rows` x `cols` per frame.
fn layout(frames: usize, rows: usize, cols: usize, audio: usize, text: usize) -> TokenLayout {
    TokenLayout {
        latent_channels: 48,
        frames,
        rows,
        cols,
        patch: 2,
        audio,
        text,
    }
}

/// The 1080p super-resolution token layout: 26 latent frames of 34 x 60 tokens, 126 audio
/// and 100 text tokens (L = 53 266), with its frame-window mask (f = 11).
fn sr_1080p() -> (usize, AttentionMask) {
    let l = layout(26, 34, 60, 126, 100);
    (l.len(), local_attention_mask(&l, 11))
}

/// One random test problem.
struct Problem {
    name: String,
    len: usize,
    heads: (usize, usize),
    dim: usize,
    mask: Option<AttentionMask>,
    gated: bool,
    q_scale: f64,
}

impl Problem {
    fn full(len: usize, hq: usize, hk: usize, dim: usize) -> Self {
        Self {
            name: format!("full L={len} {hq}:{hk} d={dim}"),
            len,
            heads: (hq, hk),
            dim,
            mask: None,
            gated: true,
            q_scale: 1.0,
        }
    }

    fn local(l: TokenLayout, window: usize) -> Self {
        Self {
            name: format!(
                "local T={} tpf={} +{} f={window} L={}",
                l.frames,
                l.tokens_per_frame(),
                l.audio + l.text,
                l.len()
            ),
            len: l.len(),
            heads: (40, 8),
            dim: 128,
            mask: Some(local_attention_mask(&l, window)),
            gated: true,
            q_scale: 1.0,
        }
    }

    /// Fresh bf16 q, k, v and an f32 gate on `dev`.
    fn inputs(&self, dev: &Device) -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
        let (hq, hk) = self.heads;
        let rand = |h: usize, scale: f64| -> Result<Tensor> {
            Ok(
                (Tensor::randn(0f32, 1f32, (self.len, h, self.dim), dev)? * scale)?
                    .to_dtype(DType::BF16)?,
            )
        };
        let gate = if self.gated {
            Some((Tensor::randn(0f32, 1f32, (self.len, hq), dev)? * 2.0)?)
        } else {
            None
        };
        Ok((
            rand(hq, self.q_scale)?,
            rand(hk, 1.0)?,
            rand(hk, 1.0)?,
            gate,
        ))
    }
}

fn check_problems() -> Vec<Problem> {
    let mut v: Vec<Problem> = [1, 77, 128, 129, 1000, 4133]
        .into_iter()
        .map(|len| Problem::full(len, 40, 8, 128))
        .collect();
    v.push(Problem {
        gated: false,
        ..Problem::full(1000, 40, 8, 128)
    });
    v.push(Problem {
        name: "full L=1000 40:8 d=128 peaked scores (q x 4)".into(),
        q_scale: 4.0,
        ..Problem::full(1000, 40, 8, 128)
    });
    for (hq, hk) in [(4, 2), (8, 8), (6, 1)] {
        v.push(Problem::full(300, hq, hk, 128));
    }
    for dim in [64, 32] {
        v.push(Problem::full(333, 40, 8, dim));
    }
    // The real 1080p frame (34 x 60 = 2040 tokens) at 4 frames, and frames of 300 tokens so
    // that query tiles straddle frame boundaries at every offset.
    v.push(Problem::local(layout(4, 34, 60, 126, 100), 1));
    v.push(Problem::local(layout(7, 10, 30, 33, 17), 2));
    let len = 500;
    v.push(Problem {
        name: format!("random ranges L={len}"),
        mask: Some(AttentionMask::new(vec![
            (0..200, 0..130),
            (0..200, 310..333),
            (150..420, 100..500),
            (400..500, 0..17),
            (420..500, 250..251),
        ])),
        ..Problem::full(len, 40, 8, 128)
    });
    v
}

/// (rel L2, max |diff|, non-finite elements of `got`), from the fixtures' metric.
fn compare(got: &Tensor, want: &Tensor) -> Result<(f64, f64, usize)> {
    let d = diff(got, want)?;
    Ok((d.rel_l2, d.max_abs, d.non_finite))
}

fn run(
    kernel: AttentionKernel,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    gate: Option<&Tensor>,
    mask: Option<&AttentionMask>,
) -> Result<Tensor> {
    let options = AttentionOptions {
        kernel: Some(kernel),
        ..Default::default()
    };
    // Outputs poisoned with NaN first: an element the kernel fails to write shows up.
    Ok(with_poisoned_outputs(|| {
        attention_with(&options, q, k, v, gate, mask)
    })?)
}

fn check(dev: &Device) -> Result<bool> {
    let mut ok = true;
    for (seed, p) in check_problems().iter().enumerate() {
        dev.set_seed(seed as u64 + 1)?;
        let (q, k, v, gate) = p.inputs(dev)?;
        let mask = p.mask.as_ref();
        let f32s = |t: &Tensor| t.to_dtype(DType::F32);
        let want = run(
            AttentionKernel::Reference,
            &f32s(&q)?,
            &f32s(&k)?,
            &f32s(&v)?,
            gate.as_ref(),
            mask,
        )?;
        let mut outs = Vec::new();
        for kernel in GPU_KERNELS {
            let got = run(kernel, &q, &k, &v, gate.as_ref(), mask)?;
            let again = run(kernel, &q, &k, &v, gate.as_ref(), mask)?;
            let (rel, max, nan) = compare(&got, &want)?;
            let repeat = compare(&again, &got)?.1 == 0.0;
            let pass = rel <= REL_L2 && nan == 0 && repeat;
            ok &= pass;
            println!(
                "check {:<44} {kernel:<5} rel_l2 {rel:.2e} max_abs {max:.2e} unwritten/NaN {nan} \
                 repeatable {repeat} {}",
                p.name,
                if pass { "ok" } else { "FAILED" }
            );
            outs.push(got);
        }
        // The automatic choice on this device must be the default kernel (or the one
        // CADENCE_ATTENTION_KERNEL names), bit for bit.
        let chosen = match std::env::var(AttentionKernel::ENV) {
            Ok(name) if !name.is_empty() => name.parse()?,
            _ => AttentionKernel::DEFAULT_GPU,
        };
        let default = GPU_KERNELS
            .iter()
            .position(|&k| k == chosen)
            .with_context(|| format!("{chosen} is not a GPU kernel"))?;
        let auto = attention(&q, &k, &v, gate.as_ref(), mask)?;
        let same = compare(&auto, &outs[default])?.1 == 0.0;
        ok &= same;
        println!(
            "check {:<44} automatic choice == {chosen} {same} {}",
            p.name,
            if same { "ok" } else { "FAILED" }
        );
    }
    Ok(ok)
}

/// The fixture's attention mask from `mid.q_ranges` / `mid.k_ranges` (int32 `(n, 2)`).
fn fixture_mask(case: &Case, io: &HashMap<String, Tensor>) -> Result<AttentionMask> {
    let ranges = |name: &str| -> Result<Vec<std::ops::Range<usize>>> {
        let t = io
            .get(name)
            .with_context(|| format!("{}: no {name}", case.name))?;
        Ok(t.to_vec2::<i32>()?
            .into_iter()
            .map(|r| r[0] as usize..r[1] as usize)
            .collect())
    };
    let (q, k) = (ranges("mid.q_ranges")?, ranges("mid.k_ranges")?);
    Ok(AttentionMask::new(q.into_iter().zip(k).collect()))
}

fn fixtures(dev: &Device) -> Result<bool> {
    let mut ok = true;
    let mut checked = 0;
    for case in cases_of(&["dit_forward"])? {
        if case.compute() != Some("bf16") {
            println!(
                "fixture {} skipped here: an f32 case (the kernels are bf16; `model` covers it)",
                case.name
            );
            continue;
        }
        let io = case.io()?;
        let layers = case
            .meta
            .pointer("/derived/layers")
            .and_then(|v| v.as_array())
            .with_context(|| format!("{}: case.json has no derived.layers", case.name))?;
        for (i, layer) in layers.iter().enumerate() {
            let name = |t: &str| format!("mid.l{i}.{t}");
            let (Some(q), Some(k), Some(v), Some(want)) = (
                io.get(&name("attn_q")),
                io.get(&name("attn_k")),
                io.get(&name("attn_v")),
                io.get(&name("attn_core")),
            ) else {
                continue;
            };
            let local = layer
                .get("local_attn")
                .and_then(|b| b.as_bool())
                .unwrap_or(false);
            let mask = if local {
                Some(fixture_mask(&case, &io)?)
            } else {
                None
            };
            let to_gpu =
                |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::BF16)?.to_device(dev)?) };
            let (q, k, v) = (to_gpu(q)?, to_gpu(k)?, to_gpu(v)?);
            for kernel in GPU_KERNELS {
                let got = run(kernel, &q, &k, &v, None, mask.as_ref())?;
                let (rel, max, nan) = compare(&got, want)?;
                let pass = rel <= REL_L2 && nan == 0;
                ok &= pass;
                checked += 1;
                println!(
                    "fixture {} layer {i} ({}) {kernel:<5} rel_l2 {rel:.2e} max_abs {max:.2e} \
                     NaN {nan} {}",
                    case.name,
                    if local { "local" } else { "global" },
                    if pass { "ok" } else { "FAILED" }
                );
            }
        }
    }
    if checked == 0 {
        println!("no bf16 dit_forward fixture with attention inputs found (set CADENCE_FIXTURES)");
        ok = false;
    }
    Ok(ok)
}

fn model(dev: &Device) -> Result<bool> {
    let choice = std::env::var(AttentionKernel::ENV).unwrap_or_else(|_| "automatic".into());
    let cases = cases_of(&["dit_forward"])?;
    let mut ok = !cases.is_empty();
    for case in &cases {
        let started = Instant::now();
        let result = cadence_parity::dit::check_case(case, dev);
        let pass = result.is_ok();
        ok &= pass;
        println!(
            "model {} (attention: {choice}) {:.1} s {}",
            case.name,
            started.elapsed().as_secs_f64(),
            match &result {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("FAILED: {e}"),
            }
        );
    }
    Ok(ok)
}

fn bench(dev: &Device, args: &[String]) -> Result<bool> {
    let mut reps = 10usize;
    let mut out: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => reps = it.next().context("--reps N")?.parse()?,
            "--out" => out = Some(it.next().context("--out FILE")?.clone()),
            other => bail!("unknown bench argument {other}"),
        }
    }
    let (local_len, local_mask) = sr_1080p();
    let sizes: Vec<(String, usize, Option<AttentionMask>)> = vec![
        ("full 4k".into(), 4096, None),
        ("full 15k".into(), 15360, None),
        ("full 65k".into(), 65536, None),
        ("1080p local f=11".into(), local_len, Some(local_mask)),
    ];
    let cuda = match dev {
        Device::Cuda(c) => c.clone(),
        _ => bail!("bench needs a CUDA device"),
    };
    let stream = cuda.cuda_stream();
    let mut lines = Vec::new();
    let mut table = vec![format!(
        "{:<18} {:>6} {:>10} {:<6} {:>10} {:>10} {:>9}",
        "case", "L", "TFLOP", "kernel", "median ms", "min ms", "TFLOP/s"
    )];
    for (name, len, mask) in &sizes {
        let pairs = TileSchedule::build(mask.as_ref(), *len, 128, 128)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .allowed_pairs();
        let flops = 4.0 * 128.0 * 40.0 * pairs as f64;
        // Three input sets in rotation, so no call finds the previous one's inputs in L2.
        let sets = (0..3)
            .map(|s| {
                dev.set_seed(100 + s)?;
                Problem {
                    mask: mask.clone(),
                    ..Problem::full(*len, 40, 8, 128)
                }
                .inputs(dev)
            })
            .collect::<Result<Vec<_>>>()?;
        for kernel in GPU_KERNELS {
            let mut times = Vec::with_capacity(reps);
            for r in 0..reps + 2 {
                let (q, k, v, g) = &sets[r % sets.len()];
                let start = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
                let o = attention_with(
                    &AttentionOptions {
                        kernel: Some(kernel),
                        ..Default::default()
                    },
                    q,
                    k,
                    v,
                    g.as_ref(),
                    mask.as_ref(),
                )?;
                let end = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
                let ms = start.elapsed_ms(&end)? as f64;
                drop(o);
                if r >= 2 {
                    times.push(ms); // the first two calls are warm-up (module load, caches)
                }
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let tflops = flops / (median * 1e-3) / 1e12;
            table.push(format!(
                "{name:<18} {len:>6} {:>10.2} {kernel:<6} {median:>10.3} {:>10.3} {tflops:>9.1}",
                flops / 1e12,
                times[0]
            ));
            lines.push(format!(
                "{{\"impl\":\"cadence-{kernel}\",\"case\":\"{name}\",\"len\":{len},\
                 \"useful_flops\":{flops},\"median_ms\":{median},\"min_ms\":{},\"tflops\":{tflops}}}",
                times[0]
            ));
        }
    }
    for line in &table {
        println!("{line}");
    }
    if let Some(path) = out {
        std::fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("write {path}"))?;
    }
    Ok(true)
}
