//! 3-D convolution (`[B, C, T, H, W]` video tensors), the one op the video codecs need that candle
//! lacks.
//!
//! [`conv3d`] is a cross-correlation with weight `[C_out, C_in, kt, kh, kw]`, per-axis stride and
//! symmetric padding, PyTorch's `F.conv3d` without dilation or groups. Spatial padding is zeros;
//! temporal padding is zeros or, with [`Conv3dConfig::replicate_time`], copies of the edge frames
//! (Turbo-VAED's convs). Wan's causal front-only padding is applied by the caller.
//! [`conv3d_add`] also adds a residual of the output's shape (a resnet's skip connection), and
//! [`conv3d_with`] can also normalise and activate the input over channels first
//! ([`InputNorm`], the codecs' `norm -> act -> conv`); the GPU kernel fuses both ([`Fused`]).
//!
//! Implementations ([`Conv3dKernel`]):
//!
//! * the reference, a sum over the temporal taps of candle `conv2d` calls on the frames each tap
//!   sees, with frames folded into the batch axis. It is built only from candle ops, so it runs
//!   (and is the parity reference) on every device. Its memory is bounded: output frames are
//!   computed in groups reading at most [`FRAME_GROUP_BYTES`] of input and written into the
//!   preallocated output, so besides the input and the output it needs only per-group
//!   temporaries (frame gather, candle's NHWC copy, one tap's conv output, the accumulator):
//!   about five frames' worth for 1080p activations. Replicated time padding is realised by the
//!   frame gather's indices and costs no copy of the input;
//! * on CUDA devices of compute capability 9.x (H100, H200), feature `cuda`: the project's
//!   implicit-GEMM kernel `kernels/conv3d_sm80.cu` (mma.sync tensor cores, bf16 in, f32
//!   accumulation, bias and residual fused), for bf16 tensors. [`gemm`] describes its
//!   decomposition and plans its launch; `kernels/CONV3D_NOTES.md` has the design and the
//!   performance model.
//!
//! [`conv3d`] chooses per call: the GPU kernel where it applies, the reference otherwise;
//! `CADENCE_CONV3D_KERNEL` ([`Conv3dKernel::ENV`]) overrides the choice.

pub mod gemm;
mod input_norm;

pub use input_norm::{normalize_input, Activation, InputNorm, NormKind};

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(test)]
mod emulated;
#[cfg(test)]
mod test_shapes;

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use candle_core::{DType, Device, Result, Tensor};

use crate::dispatch::{self, EnvChoice, KernelChoice};

/// Upper bound on the input bytes one group of output frames reads, to bound temporaries.
pub const FRAME_GROUP_BYTES: usize = 256 << 20;

/// Per-axis values for time, height and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims3 {
    /// Time axis.
    pub t: usize,
    /// Height axis.
    pub h: usize,
    /// Width axis.
    pub w: usize,
}

impl Dims3 {
    /// The same value on every axis.
    pub const fn all(v: usize) -> Self {
        Self { t: v, h: v, w: v }
    }

    /// Separate values for time, height and width.
    pub const fn new(t: usize, h: usize, w: usize) -> Self {
        Self { t, h, w }
    }
}

/// Stride and padding of a [`conv3d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3dConfig {
    /// Stride per axis (each at least 1).
    pub stride: Dims3,
    /// Padding added on both sides of each axis (zeros unless `replicate_time`).
    pub padding: Dims3,
    /// Pad time with copies of the first/last frame instead of zeros.
    pub replicate_time: bool,
}

impl Default for Conv3dConfig {
    fn default() -> Self {
        Self {
            stride: Dims3::all(1),
            padding: Dims3::all(0),
            replicate_time: false,
        }
    }
}

impl Conv3dConfig {
    /// Stride 1, the given symmetric zero padding.
    pub const fn padded(padding: Dims3) -> Self {
        Self {
            stride: Dims3::all(1),
            padding,
            replicate_time: false,
        }
    }

    /// Stride 1, spatial zero padding, `padding.t` edge frames replicated on each side.
    pub const fn replicate_time(padding: Dims3) -> Self {
        Self {
            stride: Dims3::all(1),
            padding,
            replicate_time: true,
        }
    }
}

/// Which implementation computes a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conv3dKernel {
    /// The candle-op reference: any device, any float dtype; the parity baseline.
    Reference,
    /// `kernels/conv3d_sm80.cu`: implicit GEMM with mma.sync tensor cores and cp.async loads
    /// (CUDA compute capability 9.x, bf16).
    Mma,
}

impl KernelChoice for Conv3dKernel {
    const OP: &'static str = "conv3d";
    /// `reference` or `mma`.
    const ENV: &'static str = "CADENCE_CONV3D_KERNEL";
    const ALL: &'static [Self] = &[Self::Reference, Self::Mma];
    const DEFAULT_GPU: Self = Self::Mma;

    fn from_policy(policy: &dispatch::KernelPolicy) -> Option<Self> {
        policy.conv3d
    }

    fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Mma => "mma",
        }
    }
}

impl fmt::Display for Conv3dKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Conv3dKernel {
    type Err = candle_core::Error;

    fn from_str(s: &str) -> Result<Self> {
        dispatch::parse(s)
    }
}

/// How [`conv3d_with`] computes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conv3dOptions {
    /// The implementation; `None` chooses per call (see [`conv3d`]).
    pub kernel: Option<Conv3dKernel>,
}

/// What a convolution computes besides `conv(x) + bias`, fused into the GPU kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fused<'a> {
    /// Normalise and activate the input over channels first (see [`InputNorm`]).
    pub input_norm: Option<&'a InputNorm>,
    /// Add this tensor (the output's shape and dtype) to the output, e.g. a resnet's skip
    /// connection. The GPU kernel adds it to its f32 accumulator and rounds once; the
    /// reference rounds the convolution to the compute dtype first, as an unfused
    /// `conv + residual` would (at most one bf16 rounding apart).
    pub residual: Option<&'a Tensor>,
}

/// `y = conv3d(x, weight) + bias` for `x: [B, C_in, T, H, W]`, `weight: [C_out, C_in, kt, kh, kw]`,
/// `bias: [C_out]`; returns a contiguous `[B, C_out, T', H', W']` in `x`'s dtype and device.
///
/// The implementation is chosen per call: [`Conv3dKernel::DEFAULT_GPU`] for bf16 tensors on a
/// CUDA device of compute capability 9.x when the kernel supports the shape (see
/// [`gemm::Geometry::plan`]), the reference otherwise. `CADENCE_CONV3D_KERNEL`
/// ([`Conv3dKernel::ENV`]) replaces the GPU kernel (`reference`: never a GPU kernel).
pub fn conv3d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
) -> Result<Tensor> {
    conv3d_with(
        &Conv3dOptions::default(),
        x,
        weight,
        bias,
        cfg,
        Fused::default(),
    )
}

/// [`conv3d`] plus `residual`: `conv3d(x) + bias + residual` (see [`Fused::residual`]).
pub fn conv3d_add(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: &Tensor,
    cfg: Conv3dConfig,
) -> Result<Tensor> {
    conv3d_with(
        &Conv3dOptions::default(),
        x,
        weight,
        bias,
        cfg,
        Fused {
            residual: Some(residual),
            ..Fused::default()
        },
    )
}

/// [`conv3d`] with explicit options and fusions. A GPU kernel named in `options` that cannot
/// compute these inputs is an error, not a silent fallback. Without a kernel in `options` the
/// choice is automatic (see [`conv3d`]).
pub fn conv3d_with(
    options: &Conv3dOptions,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
    fused: Fused,
) -> Result<Tensor> {
    validate(x, weight, bias, cfg)?;
    if let Some(r) = fused.residual {
        let out = output_dims(x, weight, cfg)?;
        if r.dims() != out || r.dtype() != x.dtype() || !r.device().same_device(x.device()) {
            candle_core::bail!(
                "conv3d: residual {:?} {:?} must match the output {out:?} {:?} on the input's device",
                r.dims(),
                r.dtype(),
                x.dtype()
            );
        }
    }
    if let Some(n) = fused.input_norm {
        n.validate(x)?;
    }
    static ENV_CHOICE: EnvChoice<Conv3dKernel> = OnceLock::new();
    let (kernel, strict) = dispatch::resolve(options.kernel, &ENV_CHOICE)?;
    match kernel {
        Conv3dKernel::Reference => reference_fused(x, weight, bias, cfg, fused),
        Conv3dKernel::Mma => gpu_conv3d(kernel, strict, x, weight, bias, cfg, fused),
    }
}

/// GPU `kernel` when it can compute the call; otherwise an error (`strict`) or the reference.
/// Without the `cuda` feature only the reference exists.
fn gpu_conv3d(
    kernel: Conv3dKernel,
    strict: bool,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
    fused: Fused,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    match cuda::plan(x, weight, cfg)? {
        cuda::Plan::Run(geometry) => {
            let poison = dispatch::poisoned_outputs();
            return cuda::run(&geometry, x, weight, bias, fused, poison);
        }
        cuda::Plan::Unsupported(why) if strict => {
            candle_core::bail!("the {kernel} conv3d kernel cannot compute this call: {why}")
        }
        cuda::Plan::Unsupported(_) => {}
    }
    #[cfg(not(feature = "cuda"))]
    if strict {
        candle_core::bail!("the {kernel} conv3d kernel needs cadence-kernels' `cuda` feature")
    }
    reference_fused(x, weight, bias, cfg, fused)
}

/// The reference on `x`'s device: the input norm, the convolution, the residual, unfused.
fn reference_fused(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
    fused: Fused,
) -> Result<Tensor> {
    let normalized = fused
        .input_norm
        .map(|n| normalize_input(x, n))
        .transpose()?;
    let x = normalized.as_ref().unwrap_or(x);
    let y = match x.device() {
        // candle's CPU matmul has no half-precision path: compute in f32 (what a bf16 GPU kernel
        // accumulates in anyway) and round the result back to the input dtype.
        Device::Cpu if matches!(x.dtype(), DType::BF16 | DType::F16) => {
            let f = |t: &Tensor| t.to_dtype(DType::F32);
            let bias = bias.map(f).transpose()?;
            reference(&f(x)?, &f(weight)?, bias.as_ref(), cfg)?.to_dtype(x.dtype())?
        }
        Device::Cpu | Device::Cuda(_) | Device::Metal(_) => reference(x, weight, bias, cfg)?,
    };
    match fused.residual {
        Some(r) => y + r,
        None => Ok(y),
    }
}

/// `[B, C_out, T', H', W']` of a validated call.
fn output_dims(x: &Tensor, w: &Tensor, cfg: Conv3dConfig) -> Result<[usize; 5]> {
    let (b, _, t, h, wd) = x.dims5()?;
    let (c_out, _, kt, kh, kw) = w.dims5()?;
    let (s, p) = (cfg.stride, cfg.padding);
    Ok([
        b,
        c_out,
        (t + 2 * p.t - kt) / s.t + 1,
        (h + 2 * p.h - kh) / s.h + 1,
        (wd + 2 * p.w - kw) / s.w + 1,
    ])
}

fn validate(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, cfg: Conv3dConfig) -> Result<()> {
    let (_, c_in, t, h, wd) = x.dims5()?;
    let (c_out, wc_in, kt, kh, kw) = w.dims5()?;
    if c_in != wc_in {
        candle_core::bail!(
            "conv3d: input has {c_in} channels, weight {:?} expects {wc_in}",
            w.dims()
        );
    }
    if let Some(b) = bias {
        if b.dims() != [c_out] {
            candle_core::bail!("conv3d: bias {:?} must be [{c_out}]", b.dims());
        }
    }
    if t == 0 || h == 0 || wd == 0 {
        candle_core::bail!("conv3d: input {:?} is empty", x.dims());
    }
    let s = cfg.stride;
    if s.t == 0 || s.h == 0 || s.w == 0 {
        candle_core::bail!("conv3d: stride {s:?} must be at least 1 on every axis");
    }
    let p = cfg.padding;
    if t + 2 * p.t < kt || h + 2 * p.h < kh || wd + 2 * p.w < kw {
        candle_core::bail!(
            "conv3d: input {:?} (padding {p:?}) is smaller than the kernel {:?}",
            x.dims(),
            w.dims()
        );
    }
    if x.dtype() != w.dtype() {
        candle_core::bail!(
            "conv3d: input dtype {:?} differs from weight dtype {:?}",
            x.dtype(),
            w.dtype()
        );
    }
    Ok(())
}

/// Sum over temporal taps of 2-D convolutions, in bounded groups of output frames.
fn reference(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, cfg: Conv3dConfig) -> Result<Tensor> {
    grouped(x, w, bias, cfg, FRAME_GROUP_BYTES)
}

/// [`reference`] with output frames grouped so one group reads at most `group_bytes` of input.
fn grouped(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv3dConfig,
    group_bytes: usize,
) -> Result<Tensor> {
    let (s, p) = (cfg.stride, cfg.padding);
    // Zero time padding is materialised; replicated padding is done by the gather indices.
    let (x, pt) = if p.t > 0 && !cfg.replicate_time {
        (x.pad_with_zeros(2, p.t, p.t)?, 0)
    } else {
        (x.clone(), p.t)
    };
    // candle's conv2d takes one padding and one stride for both spatial axes.
    let (x, pad2d) = if p.h == p.w {
        (x, p.h)
    } else {
        (
            x.pad_with_zeros(3, p.h, p.h)?.pad_with_zeros(4, p.w, p.w)?,
            0,
        )
    };
    if s.h != s.w {
        candle_core::bail!("conv3d: different strides for height and width are not supported")
    }
    let (b, c_in, t, h, wd) = x.dims5()?;
    let (c_out, _, kt, kh, kw) = w.dims5()?;
    let t_out = (t + 2 * pt - kt) / s.t + 1;
    let (h_out, w_out) = (
        (h + 2 * pad2d - kh) / s.h + 1,
        (wd + 2 * pad2d - kw) / s.w + 1,
    );

    let frame_bytes = b * c_in * h * wd * x.dtype().size_in_bytes();
    let group = (group_bytes / (frame_bytes * kt).max(1)).clamp(1, t_out);
    let taps: Vec<Tensor> = (0..kt)
        .map(|dt| w.narrow(2, dt, 1)?.squeeze(2)?.contiguous())
        .collect::<Result<_>>()?;
    let bias = bias.map(|b| b.reshape((1, c_out, 1, 1))).transpose()?;
    // candle's index_select needs a contiguous source.
    let x = x.contiguous()?;

    let out = Tensor::zeros((b, c_out, t_out, h_out, w_out), x.dtype(), x.device())?;
    for start in (0..t_out).step_by(group) {
        let n = group.min(t_out - start);
        let mut acc: Option<Tensor> = None;
        for (dt, tap) in taps.iter().enumerate() {
            // Input frame of output frame `start + i` for this tap, in the padded sequence,
            // clamped into the real frames (replicate padding; a no-op without padding).
            let idx: Vec<u32> = (0..n)
                .map(|i| ((start + i) * s.t + dt).saturating_sub(pt).min(t - 1) as u32)
                .collect();
            let idx = Tensor::new(idx.as_slice(), x.device())?;
            // [B, C, n, H, W] -> frames as the batch axis [B*n, C, H, W]
            let frames = x
                .index_select(&idx, 2)?
                .permute((0, 2, 1, 3, 4))?
                .reshape((b * n, c_in, h, wd))?;
            let y = frames.conv2d(tap, pad2d, s.h, 1, 1)?;
            acc = Some(match acc {
                None => match &bias {
                    Some(bias) => y.broadcast_add(bias)?,
                    None => y,
                },
                Some(a) => (a + y)?,
            });
        }
        let acc = match acc {
            Some(a) => a,
            None => candle_core::bail!("conv3d: weight has no temporal taps"),
        };
        let piece = acc
            .reshape((b, n, c_out, h_out, w_out))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?;
        out.slice_set(&piece, 2, start)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::D;

    /// Largest absolute difference between two tensors of one shape.
    fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?
            .abs()?
            .flatten_all()?
            .max(D::Minus1)?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()
    }

    /// Direct six-loop definition of the convolution, the independent oracle.
    fn naive(x: &Tensor, w: &Tensor, bias: &Tensor, cfg: Conv3dConfig) -> Vec<f32> {
        let pt = cfg.padding.t;
        let x = if cfg.replicate_time {
            x.pad_with_same(2, pt, pt)
        } else {
            x.pad_with_zeros(2, pt, pt)
        };
        let x = x
            .and_then(|x| x.pad_with_zeros(3, cfg.padding.h, cfg.padding.h))
            .and_then(|x| x.pad_with_zeros(4, cfg.padding.w, cfg.padding.w))
            .unwrap();
        let (b, ci, t, h, wd) = x.dims5().unwrap();
        let (co, _, kt, kh, kw) = w.dims5().unwrap();
        let s = cfg.stride;
        let (to, ho, wo) = ((t - kt) / s.t + 1, (h - kh) / s.h + 1, (wd - kw) / s.w + 1);
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = bias.to_vec1::<f32>().unwrap();
        let mut out = Vec::new();
        for bi in 0..b {
            for (o, &b0) in bv.iter().enumerate().take(co) {
                for ot in 0..to {
                    for oh in 0..ho {
                        for ow in 0..wo {
                            let mut acc = b0;
                            for c in 0..ci {
                                for a in 0..kt {
                                    for i in 0..kh {
                                        for j in 0..kw {
                                            let xi = (((bi * ci + c) * t + ot * s.t + a) * h
                                                + oh * s.h
                                                + i)
                                                * wd
                                                + ow * s.w
                                                + j;
                                            let wi = (((o * ci + c) * kt + a) * kh + i) * kw + j;
                                            acc += xv[xi] * wv[wi];
                                        }
                                    }
                                }
                            }
                            out.push(acc);
                        }
                    }
                }
            }
        }
        out
    }

    fn check(
        x_dims: (usize, usize, usize, usize, usize),
        k: (usize, usize, usize),
        cfg: Conv3dConfig,
    ) {
        let dev = Device::Cpu;
        let c_out = 3;
        let x = Tensor::randn(0f32, 1f32, x_dims, &dev).unwrap();
        let w = Tensor::randn(0f32, 1f32, (c_out, x_dims.1, k.0, k.1, k.2), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1f32, c_out, &dev).unwrap();
        let got = conv3d(&x, &w, Some(&bias), cfg).unwrap();
        let want = naive(&x, &w, &bias, cfg);
        let want = Tensor::from_vec(want, got.dims(), &dev).unwrap();
        let d = max_abs_diff(&got, &want).unwrap();
        assert!(d < 1e-4, "max abs diff {d} for {x_dims:?} {k:?} {cfg:?}");
    }

    #[test]
    fn matches_the_definition() {
        check(
            (2, 4, 5, 6, 7),
            (3, 3, 3),
            Conv3dConfig::padded(Dims3::new(0, 1, 1)),
        );
        check(
            (1, 2, 6, 5, 5),
            (3, 1, 1),
            Conv3dConfig {
                stride: Dims3::new(2, 1, 1),
                ..Conv3dConfig::default()
            },
        );
        check((1, 3, 4, 6, 6), (1, 1, 1), Conv3dConfig::default());
        check(
            (1, 2, 3, 5, 6),
            (3, 3, 3),
            Conv3dConfig::padded(Dims3::new(1, 2, 1)),
        );
        check(
            (2, 3, 4, 5, 5),
            (3, 3, 3),
            Conv3dConfig::replicate_time(Dims3::new(1, 1, 1)),
        );
        check(
            (1, 2, 1, 4, 4),
            (3, 1, 1),
            Conv3dConfig::replicate_time(Dims3::new(1, 0, 0)),
        );
    }

    #[test]
    fn frame_groups_give_the_same_result() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1f32, (1, 3, 7, 5, 5), &dev).unwrap();
        let w = Tensor::randn(0f32, 1f32, (4, 3, 3, 3, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1f32, 4, &dev).unwrap();
        let cfg = Conv3dConfig::replicate_time(Dims3::all(1));
        let whole = grouped(&x, &w, Some(&b), cfg, usize::MAX).unwrap();
        let one_frame = grouped(&x, &w, Some(&b), cfg, 1).unwrap();
        assert_eq!(max_abs_diff(&whole, &one_frame).unwrap(), 0.0);
        let want = naive(&x, &w, &b, cfg);
        let want = Tensor::from_vec(want, whole.dims(), &dev).unwrap();
        assert!(max_abs_diff(&whole, &want).unwrap() < 1e-4);
    }

    #[test]
    fn rejects_mismatched_channels() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 3, 4, 4), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((1, 3, 1, 1, 1), DType::F32, &dev).unwrap();
        assert!(conv3d(&x, &w, None, Conv3dConfig::default()).is_err());
        let w = Tensor::zeros((1, 2, 5, 1, 1), DType::F32, &dev).unwrap();
        assert!(conv3d(&x, &w, None, Conv3dConfig::default()).is_err());
    }

    #[test]
    fn half_precision_runs_on_cpu() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1f32, (1, 2, 3, 4, 4), &dev).unwrap();
        let w = Tensor::randn(0f32, 1f32, (2, 2, 3, 3, 3), &dev).unwrap();
        let cfg = Conv3dConfig::padded(Dims3::new(1, 1, 1));
        let full = conv3d(&x, &w, None, cfg).unwrap();
        let bf = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
        let half = conv3d(&bf(&x), &bf(&w), None, cfg).unwrap();
        assert_eq!(half.dtype(), DType::BF16);
        let d = max_abs_diff(&half.to_dtype(DType::F32).unwrap(), &full).unwrap();
        assert!(d < 0.2, "{d}");
    }
}
