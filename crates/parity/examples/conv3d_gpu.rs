//! GPU self-test and benchmark of the conv3d kernel (feature `cuda`; an sm_90 GPU).
//!
//! ```text
//! conv3d_gpu check        random bf16 problems around every real Turbo-VAED layer (shapes from
//!                         the fixtures' manifest_full.json), odd sizes, strides, both time
//!                         paddings, residuals, input norms (Turbo's and Wan's), strided input
//!                         views: the kernel (output
//!                         poisoned with NaN first) against the f32 reference on the CPU;
//!                         each run twice (a result that moves between runs is a race); the
//!                         automatic choice must equal the kernel bit for bit
//! conv3d_gpu fixtures     every video-codec fixture case on the GPU: the bf16 production
//!                         check (the convs run on the kernel unless CADENCE_CONV3D_KERNEL
//!                         says otherwise) and the f32 parity check (reference convs)
//! conv3d_gpu shapes --out FILE
//!                         the benchmark's layer list as JSON lines (the torch baseline reads it)
//! conv3d_gpu bench [--reps N] [--out FILE] [--layer TEXT]
//!                         median time and TFLOP/s of every distinct conv of a 1080p Turbo-VAED
//!                         window (9 latent frames of 68 x 120, the middle windows of a 5 s
//!                         clip), and the estimated conv time of a whole 5 s 1080p decode; the
//!                         whole op is timed (weight reorder, channels-last copy, convolution);
//!                         --layer keeps the layers whose name contains TEXT (for profilers)
//! ```
//! Each command prints one line per case and ends with PASS/FAIL; the exit status is non-zero
//! on any failure. scripts/gpu/conv3d.sh runs them all on the device machine.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use cadence_kernels::conv3d::{
    conv3d_with, gemm::Geometry, normalize_input, Activation, Conv3dConfig, Conv3dKernel,
    Conv3dOptions, Dims3, Fused, InputNorm, NormKind,
};
use cadence_kernels::dispatch::{with_poisoned_outputs, KernelChoice};
use cadence_parity::fixtures::cases_of;
use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
use candle_core::{DType, Device, Tensor};

/// The real layer shapes from the manifest and the seeded generator, shared with cadence-kernels'
/// unit tests (it names `super::Dims3`: the import above).
#[allow(dead_code)]
#[path = "../../kernels/src/conv3d/test_shapes.rs"]
mod test_shapes;
use test_shapes::{turbo_layers, Rng};

/// bf16 operands, f32 accumulation: METHOD.md's band for bf16 is 1e-3 to 1e-2.
const REL_L2: f64 = 1e-2;

const USAGE: &str =
    "usage: conv3d_gpu check|fixtures|shapes --out FILE|bench [--reps N] [--out FILE] [--layer TEXT]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ok = match args.first().map(String::as_str) {
        Some("shapes") => shapes_json(&args[1..])?,
        Some(cmd) => {
            let dev = Device::new_cuda(0).context("no CUDA device 0")?;
            match cmd {
                "check" => check(&dev)?,
                "fixtures" => fixtures(&dev)?,
                "bench" => bench(&dev, &args[1..])?,
                _ => bail!(USAGE),
            }
        }
        None => bail!(USAGE),
    };
    println!("{}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

fn kernel_options(kernel: Conv3dKernel) -> Conv3dOptions {
    Conv3dOptions {
        kernel: Some(kernel),
    }
}

/// One random problem: bf16 tensors on the GPU, the input a view narrowed along time.
struct Problem {
    name: String,
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    residual: Option<Tensor>,
    norm: Option<InputNorm>,
    cfg: Conv3dConfig,
}

/// Standard-normal f32 tensors of a shape on the problem's device.
type Random<'a> = &'a mut dyn FnMut(&[usize]) -> Result<Tensor>;

impl Problem {
    /// `extra_frames` frames are added around the input and narrowed away again, so the
    /// kernel reads a strided view.
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        dims: [usize; 5],
        c_out: usize,
        k: Dims3,
        cfg: Conv3dConfig,
        residual: bool,
        extra_frames: usize,
        rand: Random,
    ) -> Result<Self> {
        let [b, c, t, h, w] = dims;
        let bf = |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::BF16)?) };
        let x = bf(rand(&[b, c, t + extra_frames, h, w])?)?.narrow(2, extra_frames / 2, t)?;
        let fan_in = (c * k.t * k.h * k.w) as f64;
        let weight = bf((rand(&[c_out, c, k.t, k.h, k.w])? / fan_in.sqrt())?)?;
        let bias = bf(rand(&[c_out])?)?;
        let g = Geometry::plan(dims, [c_out, c, k.t, k.h, k.w], cfg)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let residual = if residual {
            Some(bf(rand(&g.output_dims())?)?)
        } else {
            None
        };
        Ok(Self {
            name,
            x,
            weight,
            bias,
            residual,
            norm: None,
            cfg,
        })
    }

    /// The same problem behind the input norm the codecs put in front of a conv.
    fn with_norm(mut self, kind: NormKind, gamma: Option<Tensor>, act: Activation) -> Self {
        self.name = format!("{} + {kind:?} {act:?}", self.name);
        self.norm = Some(InputNorm { kind, gamma, act });
        self
    }

    fn run(&self, options: &Conv3dOptions) -> Result<Tensor> {
        Ok(conv3d_with(
            options,
            &self.x,
            &self.weight,
            Some(&self.bias),
            self.cfg,
            Fused {
                input_norm: self.norm.as_ref(),
                residual: self.residual.as_ref(),
            },
        )?)
    }

    /// The f32 reference on the CPU from the same bf16 values (the input norm, if any, applied
    /// in bf16 as the kernel and the codecs apply it).
    fn reference(&self) -> Result<Tensor> {
        let cpu = |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(&Device::Cpu)?) };
        let f = |t: &Tensor| -> Result<Tensor> { Ok(cpu(t)?.to_dtype(DType::F32)?) };
        let x = match &self.norm {
            Some(n) => {
                let n = InputNorm {
                    gamma: n.gamma.as_ref().map(cpu).transpose()?,
                    ..n.clone()
                };
                f(&normalize_input(&cpu(&self.x)?, &n)?)?
            }
            None => f(&self.x)?,
        };
        let residual = self.residual.as_ref().map(f).transpose()?;
        Ok(conv3d_with(
            &kernel_options(Conv3dKernel::Reference),
            &x,
            &f(&self.weight)?,
            Some(&f(&self.bias)?),
            self.cfg,
            Fused {
                input_norm: None,
                residual: residual.as_ref(),
            },
        )?)
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?)
}

/// (rel L2, elements off by more than one bf16 rounding + 1e-3, NaN count).
fn compare(got: &Tensor, want: &Tensor) -> Result<(f64, usize, usize)> {
    let (g, w) = (host(got)?, host(want)?);
    if g.len() != w.len() {
        bail!("shape {:?} against {:?}", got.dims(), want.dims());
    }
    let (mut num, mut den, mut off, mut nan) = (0f64, 0f64, 0, 0);
    for (&a, &b) in g.iter().zip(&w) {
        if a.is_nan() {
            nan += 1;
            continue;
        }
        let d = (a - b).abs();
        off += usize::from(d > b.abs() / 256.0 + 1e-3);
        num += f64::from(d) * f64::from(d);
        den += f64::from(b) * f64::from(b);
    }
    Ok(((num / den.max(f64::MIN_POSITIVE)).sqrt(), off, nan))
}

fn check_problems(dev: &Device) -> Result<Vec<Problem>> {
    let mut rng = Rng::new(2024);
    let mut shape_rng = Rng::new(4048);
    let mut rand =
        |d: &[usize]| -> Result<Tensor> { Ok(rng.normal(d, &Device::Cpu).to_device(dev)?) };
    let mut v = Vec::new();
    let mut seen = Vec::new();
    for layer in turbo_layers() {
        let key = (layer.c_out, layer.c_in, layer.kernel);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let k = layer.kernel;
        for variant in 0..2 {
            let r = &mut shape_rng;
            // Real-width frames (the 120 columns of the 1080p latent) and odd small ones.
            let (t, h, w) = if variant == 0 {
                (r.range(1, 9), r.range(5, 17), 120)
            } else {
                (r.range(1, 4), r.range(1, 13), r.pick(&[7, 13, 31, 33]))
            };
            let cfg = if r.coin() {
                Conv3dConfig::replicate_time(Dims3::new(k.t / 2, k.h / 2, k.w / 2))
            } else {
                Conv3dConfig::padded(Dims3::new(k.t / 2, k.h / 2, k.w / 2))
            };
            let (residual, extra, norm) = (r.coin(), r.range(0, 2), r.range(0, 3));
            let p = Problem::new(
                format!("{} {t}x{h}x{w}", layer.name),
                [1, layer.c_in, t, h, w],
                layer.c_out,
                k,
                cfg,
                residual,
                extra,
                &mut rand,
            )?;
            // The norms the decoders put in front of their convs, on half of the problems.
            v.push(match norm {
                1 => p.with_norm(NormKind::Rms { eps: 1e-8 }, None, Activation::Silu),
                2 => p.with_norm(NormKind::Rms { eps: 1e-8 }, None, Activation::Relu),
                3 => {
                    let gamma = rand(&[layer.c_in])?;
                    p.with_norm(NormKind::L2 { eps: 1e-12 }, Some(gamma), Activation::Silu)
                }
                _ => p,
            });
        }
    }
    // Strides (Wan's downsamplers), two batch items, partial channel tiles.
    let strided = |s: Dims3| Conv3dConfig {
        stride: s,
        ..Conv3dConfig::default()
    };
    v.push(Problem::new(
        "spatial stride 2 (1,3,3)".into(),
        [2, 96, 3, 33, 45],
        96,
        Dims3::new(1, 3, 3),
        strided(Dims3::new(1, 2, 2)),
        false,
        1,
        &mut rand,
    )?);
    v.push(Problem::new(
        "time stride 2 (3,1,1)".into(),
        [1, 160, 9, 12, 40],
        160,
        Dims3::new(3, 1, 1),
        strided(Dims3::new(2, 1, 1)),
        true,
        0,
        &mut rand,
    )?);
    v.push(Problem::new(
        "3x3x3 C 70 -> 37".into(),
        [2, 70, 4, 9, 17],
        37,
        Dims3::all(3),
        Conv3dConfig::replicate_time(Dims3::all(1)),
        true,
        2,
        &mut rand,
    )?);
    Ok(v)
}

fn check(dev: &Device) -> Result<bool> {
    let chosen = match std::env::var(Conv3dKernel::ENV) {
        Ok(name) if !name.is_empty() => name.parse()?,
        _ => Conv3dKernel::DEFAULT_GPU,
    };
    let mut ok = true;
    for p in check_problems(dev)? {
        let want = p.reference()?;
        // Outputs poisoned with NaN first: an element the kernel fails to write shows up.
        let (got, again) = with_poisoned_outputs(|| -> Result<_> {
            let options = kernel_options(Conv3dKernel::Mma);
            Ok((p.run(&options)?, p.run(&options)?))
        })?;
        let (rel, off, nan) = compare(&got, &want)?;
        let repeat = (got.to_dtype(DType::F32)? - again.to_dtype(DType::F32)?)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?
            == 0.0;
        let auto = p.run(&Conv3dOptions::default())?;
        let auto_same = chosen != Conv3dKernel::Mma
            || (auto.to_dtype(DType::F32)? - got.to_dtype(DType::F32)?)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?
                == 0.0;
        let pass = rel <= REL_L2 && off == 0 && nan == 0 && repeat && auto_same;
        ok &= pass;
        println!(
            "check {:<58} rel_l2 {rel:.2e} off {off} unwritten/NaN {nan} repeatable {repeat} \
             automatic==mma {auto_same} {}",
            p.name,
            if pass { "ok" } else { "FAILED" }
        );
    }
    Ok(ok)
}

fn fixtures(dev: &Device) -> Result<bool> {
    let choice = std::env::var(Conv3dKernel::ENV).unwrap_or_else(|_| "automatic".into());
    let cases = cases_of(cadence_parity::codecs::BF16_KINDS)?;
    let mut ok = !cases.is_empty();
    if cases.is_empty() {
        println!("no video-codec fixture case found (set CADENCE_FIXTURES)");
    }
    for case in &cases {
        for (mode, bf16) in [("bf16", true), ("f32", false)] {
            let started = Instant::now();
            let result = if bf16 {
                cadence_parity::codecs::check_case_bf16(case, dev)
            } else {
                cadence_parity::codecs::check_case(case, dev)
            };
            ok &= result.is_ok();
            println!(
                "fixture {} ({}) {mode} (conv3d: {choice}) {:.1} s {}",
                case.name,
                case.kind,
                started.elapsed().as_secs_f64(),
                match &result {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("FAILED: {e}"),
                }
            );
        }
    }
    Ok(ok)
}

/// One convolution of the 1080p benchmark.
struct BenchLayer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    kernel: Dims3,
    /// Input (= output) frames, rows, columns in a middle window.
    size: Dims3,
    /// Calls per window.
    calls: usize,
    /// Frames of this resolution over the whole 5 s clip / frames in a middle window
    /// (windows of 8, 9, 9, 9, 8 latents: 43/9, 85/18, 169/36).
    windows: f64,
    residual: bool,
}

/// Every distinct conv of a middle 1080p Turbo-VAED window (9 latents of 68 x 120), from the
/// decoder layout of codecs SPEC.md §3.3 with the real config.
fn bench_layers() -> Vec<BenchLayer> {
    let (lat, x2, x4, x8) = (
        Dims3::new(9, 68, 120),
        Dims3::new(18, 136, 240),
        Dims3::new(36, 272, 480),
        Dims3::new(36, 544, 960),
    );
    let (w_lat, w_x2, w_x4) = (43.0 / 9.0, 85.0 / 18.0, 169.0 / 36.0);
    let cube = Dims3::all(3);
    let l = |name, c_in, c_out, kernel, size, calls, windows, residual| BenchLayer {
        name,
        c_in,
        c_out,
        kernel,
        size,
        calls,
        windows,
        residual,
    };
    vec![
        l("conv_in 48->512", 48, 512, cube, lat, 1, w_lat, false),
        l("mid 512 conv1", 512, 512, cube, lat, 3, w_lat, false),
        l("mid 512 conv2 +res", 512, 512, cube, lat, 3, w_lat, true),
        l(
            "up0 time_conv 512->1024",
            512,
            1024,
            Dims3::new(3, 1, 1),
            lat,
            1,
            w_lat,
            false,
        ),
        l(
            "up0 spatial 512",
            512,
            512,
            Dims3::new(1, 3, 3),
            x2,
            1,
            w_x2,
            false,
        ),
        l("up0 res 512 conv1", 512, 512, cube, x2, 3, w_x2, false),
        l("up0 res 512 conv2 +res", 512, 512, cube, x2, 3, w_x2, true),
        l(
            "up1 conv_in conv1 512->256",
            512,
            256,
            cube,
            x2,
            1,
            w_x2,
            false,
        ),
        l(
            "up1 conv_in shortcut 512->256",
            512,
            256,
            Dims3::all(1),
            x2,
            1,
            w_x2,
            false,
        ),
        l(
            "up1 conv_in conv2 256 +res",
            256,
            256,
            cube,
            x2,
            1,
            w_x2,
            true,
        ),
        l(
            "up1 time_conv 256->512",
            256,
            512,
            Dims3::new(3, 1, 1),
            x2,
            1,
            w_x2,
            false,
        ),
        l(
            "up1 spatial 256",
            256,
            256,
            Dims3::new(1, 3, 3),
            x4,
            1,
            w_x4,
            false,
        ),
        l("up1 res 256 conv1", 256, 256, cube, x4, 2, w_x4, false),
        l("up1 res 256 conv2 +res", 256, 256, cube, x4, 2, w_x4, true),
        l(
            "up2 conv_in conv1 256->128",
            256,
            128,
            cube,
            x4,
            1,
            w_x4,
            false,
        ),
        l(
            "up2 conv_in shortcut 256->128",
            256,
            128,
            Dims3::all(1),
            x4,
            1,
            w_x4,
            false,
        ),
        l(
            "up2 conv_in conv2 128 +res",
            128,
            128,
            cube,
            x4,
            1,
            w_x4,
            true,
        ),
        l(
            "up2 spatial 128",
            128,
            128,
            Dims3::new(1, 3, 3),
            x8,
            1,
            w_x4,
            false,
        ),
        l("up2 res 128 conv1", 128, 128, cube, x8, 2, w_x4, false),
        l("up2 res 128 conv2 +res", 128, 128, cube, x8, 2, w_x4, true),
        l(
            "up3 conv_in conv1 128->64",
            128,
            64,
            cube,
            x8,
            1,
            w_x4,
            false,
        ),
        l(
            "up3 conv_in shortcut 128->64",
            128,
            64,
            Dims3::all(1),
            x8,
            1,
            w_x4,
            false,
        ),
        l("up3 conv_in conv2 64 +res", 64, 64, cube, x8, 1, w_x4, true),
        l("up3 res 64 conv1", 64, 64, cube, x8, 2, w_x4, false),
        l("up3 res 64 conv2 +res", 64, 64, cube, x8, 2, w_x4, true),
        l("conv_out 64->12", 64, 12, cube, x8, 1, w_x4, false),
    ]
}

impl BenchLayer {
    /// Turbo's padding: replicate `(kt-1)/2` frames, zeros `k/2` in space. The per-frame
    /// Conv2d of the upsamplers has no time padding.
    fn cfg(&self) -> Conv3dConfig {
        let k = self.kernel;
        Conv3dConfig::replicate_time(Dims3::new((k.t - 1) / 2, k.h / 2, k.w / 2))
    }

    fn flops(&self) -> f64 {
        let s = self.size;
        2.0 * (self.c_in * self.c_out * self.kernel.t * self.kernel.h * self.kernel.w) as f64
            * (s.t * s.h * s.w) as f64
    }
}

fn shapes_json(args: &[String]) -> Result<bool> {
    let out = match args {
        [flag, path] if flag == "--out" => path,
        _ => bail!("usage: conv3d_gpu shapes --out FILE"),
    };
    let lines: Vec<String> = bench_layers()
        .iter()
        .map(|l| {
            let (k, s, c) = (l.kernel, l.size, l.cfg());
            format!(
                "{{\"name\":\"{}\",\"c_in\":{},\"c_out\":{},\"kernel\":[{},{},{}],\
                 \"size\":[{},{},{}],\"padding\":[{},{},{}],\"replicate_time\":{},\
                 \"residual\":{},\"calls\":{},\"windows\":{},\"flops\":{}}}",
                l.name,
                l.c_in,
                l.c_out,
                k.t,
                k.h,
                k.w,
                s.t,
                s.h,
                s.w,
                c.padding.t,
                c.padding.h,
                c.padding.w,
                c.replicate_time,
                l.residual,
                l.calls,
                l.windows,
                l.flops()
            )
        })
        .collect();
    std::fs::write(out, lines.join("\n") + "\n").with_context(|| format!("write {out}"))?;
    Ok(true)
}

fn bench(dev: &Device, args: &[String]) -> Result<bool> {
    let mut reps = 5usize;
    let mut out: Option<String> = None;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => reps = it.next().context("--reps N")?.parse()?,
            "--out" => out = Some(it.next().context("--out FILE")?.clone()),
            "--layer" => only = Some(it.next().context("--layer TEXT")?.clone()),
            other => bail!("unknown bench argument {other}"),
        }
    }
    let cuda = match dev {
        Device::Cuda(c) => c.clone(),
        _ => bail!("bench needs a CUDA device"),
    };
    let stream = cuda.cuda_stream();
    dev.set_seed(7)?;
    // Generated on the GPU: the 1080p activations hold up to 2.4e9 values.
    let mut rand = |d: &[usize]| -> Result<Tensor> { Ok(Tensor::randn(0f32, 1f32, d, dev)?) };
    let mut lines = Vec::new();
    println!(
        "{:<32} {:>16} {:>6} {:>10} {:>10} {:>9} {:>10}",
        "layer", "T x H x W", "box", "median ms", "min ms", "TFLOP/s", "clip s"
    );
    let mut clip_s = 0.0;
    let layers = bench_layers()
        .into_iter()
        .filter(|l| only.as_ref().is_none_or(|o| l.name.contains(o.as_str())));
    for l in layers {
        let s = l.size;
        let p = Problem::new(
            l.name.into(),
            [1, l.c_in, s.t, s.h, s.w],
            l.c_out,
            l.kernel,
            l.cfg(),
            l.residual,
            0,
            &mut rand,
        )?;
        let g = Geometry::plan(
            [1, l.c_in, s.t, s.h, s.w],
            [l.c_out, l.c_in, l.kernel.t, l.kernel.h, l.kernel.w],
            l.cfg(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let options = kernel_options(Conv3dKernel::Mma);
        let mut times = Vec::with_capacity(reps);
        for r in 0..reps + 2 {
            let start = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
            let y = p.run(&options)?;
            let end = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
            let ms = f64::from(start.elapsed_ms(&end)?);
            drop(y);
            if r >= 2 {
                times.push(ms); // the first two calls are warm-up (module load, allocator)
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let tflops = l.flops() / (median * 1e-3) / 1e12;
        let layer_clip_s = median * 1e-3 * l.calls as f64 * l.windows;
        clip_s += layer_clip_s;
        println!(
            "{:<32} {:>16} {:>6} {median:>10.3} {:>10.3} {tflops:>9.1} {layer_clip_s:>10.3}",
            l.name,
            format!("{}x{}x{}", s.t, s.h, s.w),
            format!("{}x{}x{}", g.boxed.t, g.boxed.h, g.boxed.w),
            times[0]
        );
        lines.push(format!(
            "{{\"impl\":\"cadence-mma\",\"case\":\"{}\",\"flops\":{},\"median_ms\":{median},\
             \"min_ms\":{},\"tflops\":{tflops},\"calls\":{},\"windows\":{}}}",
            l.name,
            l.flops(),
            times[0],
            l.calls,
            l.windows
        ));
    }
    println!("estimated conv time of a 5 s 1080p decode (5 windows): {clip_s:.2} s");
    if let Some(path) = out {
        std::fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("write {path}"))?;
    }
    Ok(true)
}
