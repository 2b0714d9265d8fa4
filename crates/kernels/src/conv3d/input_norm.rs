//! The channel norm and activation in front of a convolution (`norm -> act -> conv`, the start
//! of every resnet branch and head of the video codecs), fused into the convolution's input pass.
//!
//! At 1080p the codecs' norms, run as separate candle ops, read and write each activation about
//! ten times in f32; fused, the GPU kernel computes the per-position statistics in one extra
//! read of the input and applies norm and activation while it copies the input to channels-last
//! anyway (`kernels/conv3d_layout.cu`). [`normalize_input`] is the reference: the codecs' own
//! sequence of operations, also usable on its own (Wan's causal caches keep normalised frames).

use candle_core::{DType, Result, Tensor};

/// Bytes of f32 temporaries one group of frames may take in [`normalize_input`].
const GROUP_BYTES: usize = 64 << 20;

/// How the per-position scale `s` of [`InputNorm`] is computed over the `C` channels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// `s = 1 / sqrt(mean(x²) + eps)`: Turbo-VAED's affine-free RMSNorm.
    Rms {
        /// Added to the mean square.
        eps: f64,
    },
    /// `s = sqrt(C) / max(‖x‖₂, eps)`: Wan2.2's `RMS_norm` (an L2 normalisation, eps a lower
    /// bound on the norm).
    L2 {
        /// Lower bound of the norm (1e-12 in Wan).
        eps: f64,
    },
}

/// The activation after the norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// The norm's output as it is.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `x · sigmoid(x)`.
    Silu,
}

impl Activation {
    /// The kernel's code (`ChannelsLastParams::act`).
    pub fn code(self) -> i32 {
        match self {
            Self::None => 0,
            Self::Relu => 1,
            Self::Silu => 2,
        }
    }
}

/// A channel norm and activation applied to a convolution's input: per position, in f32,
/// `y = round(x · s · gamma[c])` with `s` from [`NormKind`], then `round(act(y))` with the
/// activation in f32, where `round` is the input's dtype (the order the codecs compute in on
/// the GPU, so fused and unfused agree to the last bit of the input, up to f32 summation order).
#[derive(Debug, Clone)]
pub struct InputNorm {
    /// How the per-position scale is computed.
    pub kind: NormKind,
    /// Per-channel multiplier `[C]` (Wan's gamma), any float dtype; `None` for 1.
    pub gamma: Option<Tensor>,
    /// Activation after the norm.
    pub act: Activation,
}

impl InputNorm {
    /// Fails, naming the mismatch, when `gamma` is not `[channels]` on `x`'s device.
    pub(super) fn validate(&self, x: &Tensor) -> Result<()> {
        let c = x.dim(1)?;
        if let Some(g) = &self.gamma {
            if g.dims() != [c] || !g.device().same_device(x.device()) {
                candle_core::bail!(
                    "conv3d input norm: gamma {:?} must be [{c}] on the input's device",
                    g.dims()
                );
            }
        }
        Ok(())
    }
}

/// `[B, C, T, H, W]` normalised over channels and activated as [`InputNorm`] describes, in
/// `x`'s dtype, computed in f32 a few frames at a time.
pub fn normalize_input(x: &Tensor, norm: &InputNorm) -> Result<Tensor> {
    norm.validate(x)?;
    let (b, c, t, h, w) = x.dims5()?;
    let group = (GROUP_BYTES / (b * c * h * w * 4).max(1)).clamp(1, t.max(1));
    let gamma = norm
        .gamma
        .as_ref()
        .map(|g| g.to_dtype(DType::F32)?.reshape((1, c, 1, 1, 1)))
        .transpose()?;
    let out = Tensor::zeros(x.shape(), x.dtype(), x.device())?;
    for start in (0..t).step_by(group) {
        let n = group.min(t - start);
        let xf = x.narrow(2, start, n)?.to_dtype(DType::F32)?;
        let squares = xf.sqr()?.sum_keepdim(1)?;
        let scale = match norm.kind {
            NormKind::Rms { eps } => ((squares / c as f64)? + eps)?.sqrt()?.recip()?,
            NormKind::L2 { eps } => (squares.sqrt()?.maximum(eps)?.recip()? * (c as f64).sqrt())?,
        };
        let mut y = xf.broadcast_mul(&scale)?;
        if let Some(g) = &gamma {
            y = y.broadcast_mul(g)?;
        }
        // Rounded to the compute dtype, then activated in f32 and rounded again: what candle's
        // CUDA kernels do for a bf16 `silu` (its CPU bf16 `silu` rounds at every step).
        let y = y.to_dtype(x.dtype())?;
        let y = match norm.act {
            Activation::None => y,
            Activation::Relu => y.relu()?,
            Activation::Silu => y.to_dtype(DType::F32)?.silu()?.to_dtype(x.dtype())?,
        };
        out.slice_set(&y.contiguous()?, 2, start)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv3d::test_shapes::Rng;
    use candle_core::Device;

    /// The definition, position by position in f64.
    fn naive(x: &Tensor, norm: &InputNorm) -> Vec<f32> {
        let (b, c, t, h, w) = x.dims5().unwrap();
        let p = t * h * w;
        let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let gamma: Vec<f32> = match &norm.gamma {
            Some(g) => g.to_vec1().unwrap(),
            None => vec![1.0; c],
        };
        let mut out = vec![0f32; v.len()];
        for bi in 0..b {
            for pos in 0..p {
                let at = |ci: usize| (bi * c + ci) * p + pos;
                let ss: f64 = (0..c).map(|ci| f64::from(v[at(ci)]).powi(2)).sum();
                let s = match norm.kind {
                    NormKind::Rms { eps } => 1.0 / (ss / c as f64 + eps).sqrt(),
                    NormKind::L2 { eps } => (c as f64).sqrt() / ss.sqrt().max(eps),
                };
                for ci in 0..c {
                    let y = f64::from(v[at(ci)]) * s * f64::from(gamma[ci]);
                    out[at(ci)] = match norm.act {
                        Activation::None => y,
                        Activation::Relu => y.max(0.0),
                        Activation::Silu => y / (1.0 + (-y).exp()),
                    } as f32;
                }
            }
        }
        out
    }

    #[test]
    fn normalize_input_follows_the_definition() {
        let dev = Device::Cpu;
        let mut rng = Rng::new(3);
        let x = rng.normal(&[2, 5, 3, 2, 3], &dev);
        let gamma = rng.normal(&[5], &dev);
        let cases = [
            (NormKind::Rms { eps: 1e-8 }, None, Activation::Silu),
            (NormKind::Rms { eps: 1e-6 }, None, Activation::None),
            (NormKind::Rms { eps: 1e-8 }, None, Activation::Relu),
            (NormKind::L2 { eps: 1e-12 }, Some(gamma), Activation::Silu),
        ];
        for (kind, gamma, act) in cases {
            let norm = InputNorm { kind, gamma, act };
            let got = normalize_input(&x, &norm).unwrap();
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = naive(&x, &norm);
            let d = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-5, "{kind:?} {act:?}: max diff {d}");
        }
    }

    #[test]
    fn a_zero_position_stays_zero_under_the_l2_norm() {
        let x = Tensor::zeros((1, 3, 1, 1, 2), DType::F32, &Device::Cpu).unwrap();
        let norm = InputNorm {
            kind: NormKind::L2 { eps: 1e-12 },
            gamma: None,
            act: Activation::Silu,
        };
        let y = normalize_input(&x, &norm).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0.0; 6]);
    }

    #[test]
    fn a_misshapen_gamma_is_refused() {
        let x = Tensor::zeros((1, 3, 1, 1, 2), DType::F32, &Device::Cpu).unwrap();
        let norm = InputNorm {
            kind: NormKind::L2 { eps: 1e-12 },
            gamma: Some(Tensor::ones(4, DType::F32, &Device::Cpu).unwrap()),
            act: Activation::None,
        };
        let err = normalize_input(&x, &norm).unwrap_err().to_string();
        assert!(err.contains("gamma"), "{err}");
    }
}
