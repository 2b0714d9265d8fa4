//! Gated grouped-query attention with an optional key-range mask.
//!
//! Shapes follow one token sequence: `q` is `(L, Hq, D)`, `k` and `v` are `(L, Hk, D)`, and
//! query head `n` reads key/value head `n / (Hq / Hk)` (consecutive blocks). The softmax is
//! non-causal over all `L` tokens unless a mask restricts which keys a query may see. Both
//! models call it: the DiT on its packed stream, the text encoder once per prompt of a batch
//! (with its own scale, optional soft-cap and rounding point, see [`AttentionOptions`]).
//!
//! Numerics match the reference's FlashAttention call: scores, softmax and the P·V product in
//! f32; the result is rounded to the inputs' dtype (bf16 in production). The per-head gate,
//! when given, multiplies that rounded result by `sigmoid(gate)` in f32 and rounds again, which
//! is exactly the reference's `bf16(bf16(attn) * sigmoid(g))`.
//!
//! A masked key's score is the lowest finite f32, not `-inf`, as in PyTorch's additive masks:
//! a query with no admissible key (a padded prompt position whose window holds only padding)
//! then averages every value uniformly instead of producing NaN, which would reach real rows
//! through its key and value in the next layer. Rows with an admissible key are unaffected
//! (`exp(lowest - max)` is 0).
//!
//! Implementations ([`AttentionKernel`]): the candle-op reference below runs on every device;
//! on CUDA devices of compute capability 9.x (H100, H200) the project's own kernels
//! (`kernels/attention_sm90.cu`, `kernels/attention_sm80.cu`, feature `cuda`) compute bf16
//! calls block-sparse, skipping the key tiles a mask excludes ([`schedule`]). The GPU kernels
//! round the probabilities to bf16 before P·V, as FlashAttention does.

pub mod schedule;

#[cfg(feature = "cuda")]
mod cuda;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::OnceLock;

use candle_core::{DType, Result, Tensor, D};

use crate::activation::sigmoid;
use crate::dispatch::{self, EnvChoice, KernelChoice};

/// Key ranges each query may attend to, as half-open `(query range, key range)` pairs over
/// token indices.
///
/// A query attends to the union of the key ranges paired with every query range containing it.
/// The local (frame-window) attention of the super-resolution model is expressed this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionMask {
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl AttentionMask {
    /// A mask from `(query range, key range)` pairs.
    pub fn new(pairs: Vec<(Range<usize>, Range<usize>)>) -> Self {
        Self { pairs }
    }

    /// The `(query range, key range)` pairs.
    pub fn pairs(&self) -> &[(Range<usize>, Range<usize>)] {
        &self.pairs
    }

    /// The dense `(len, len)` boolean mask, row-major: `true` where query `i` may attend key `j`.
    pub fn dense(&self, len: usize) -> Vec<bool> {
        let mut mask = vec![false; len * len];
        for (q, k) in &self.pairs {
            for i in q.start.min(len)..q.end.min(len) {
                mask[i * len + k.start.min(len)..i * len + k.end.min(len)].fill(true);
            }
        }
        mask
    }

    /// Additive mask rows for queries `rows` over `len` keys: 0 where allowed, the lowest
    /// finite f32 elsewhere (see the module comment).
    fn additive_rows(&self, rows: Range<usize>, len: usize) -> Result<Tensor> {
        let n = rows.len();
        let mut add = vec![f32::MIN; n * len];
        for (q, k) in &self.pairs {
            let (lo, hi) = (q.start.max(rows.start), q.end.min(rows.end));
            for i in lo..hi {
                let row = (i - rows.start) * len;
                add[row + k.start.min(len)..row + k.end.min(len)].fill(0.0);
            }
        }
        Tensor::from_vec(add, (n, len), &candle_core::Device::Cpu)
    }
}

/// Which implementation computes attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionKernel {
    /// The candle-op reference: any device, any float dtype; the parity baseline.
    Reference,
    /// `kernels/attention_sm80.cu`: mma.sync tensor cores, cp.async loads. The simple kernel
    /// and the fallback (CUDA compute capability 9.x, bf16).
    Mma,
    /// `kernels/attention_sm90.cu`: wgmma tensor cores fed by TMA, producer/consumer
    /// warpgroups. The default on Hopper (CUDA 9.x, bf16).
    Wgmma,
    /// The same kernel with FlashAttention-3's overlaps: the softmax of one key tile runs
    /// under the previous tile's P·V product, and the two consumer warpgroups take turns on
    /// the tensor cores (CUDA 9.x, bf16).
    WgmmaPipelined,
}

impl KernelChoice for AttentionKernel {
    const OP: &'static str = "attention";
    /// `reference`, `mma`, `wgmma` or `wgmma-pipelined`.
    const ENV: &'static str = "CADENCE_ATTENTION_KERNEL";
    const ALL: &'static [Self] = &[
        Self::Reference,
        Self::Mma,
        Self::Wgmma,
        Self::WgmmaPipelined,
    ];
    const DEFAULT_GPU: Self = Self::Wgmma;

    fn from_policy(policy: &dispatch::KernelPolicy) -> Option<Self> {
        policy.attention
    }

    fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Mma => "mma",
            Self::Wgmma => "wgmma",
            Self::WgmmaPipelined => "wgmma-pipelined",
        }
    }
}

impl fmt::Display for AttentionKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AttentionKernel {
    type Err = candle_core::Error;

    fn from_str(s: &str) -> Result<Self> {
        dispatch::parse(s)
    }
}

/// How [`attention_with`] computes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttentionOptions {
    /// The implementation; `None` chooses per call (see [`attention`]).
    pub kernel: Option<AttentionKernel>,
    /// The factor on `q·k`; `None` is `1/sqrt(D)`. Gemma's `query_pre_attn_scalar^-0.5`
    /// differs from it. The GPU kernels take only the default.
    pub scale: Option<f64>,
    /// `cap · tanh(s / cap)` on the scaled scores, before the mask (Gemma's eager
    /// attention). Reference only.
    pub softcap: Option<f64>,
    /// Whether the reference rounds the probabilities to the inputs' dtype before P·V, as
    /// PyTorch's SDPA does (the text encoder's target). The GPU kernels always do, as
    /// FlashAttention does; the DiT's fixtures keep them in f32. No effect on f32 inputs.
    pub round_probabilities: bool,
}

impl AttentionOptions {
    /// Whether only the reference computes these options.
    fn reference_only(&self) -> Option<&'static str> {
        if self.scale.is_some() {
            Some("an explicit score scale")
        } else if self.softcap.is_some() {
            Some("a logit soft-cap")
        } else {
            None
        }
    }
}

/// Attention output `(L, Hq, D)` in the dtype of `q`.
///
/// `gate` is `(L, Hq)` (one scalar per token and head) or `None` for the ungated result.
///
/// The implementation is chosen per call: [`AttentionKernel::DEFAULT_GPU`] when the
/// tensors are bf16 on a CUDA device of compute capability 9.x, head_dim is a multiple of 8
/// up to 128, `Hq` is a multiple of `Hk` and every query has at least one key; the reference
/// otherwise, and for the options only it computes (an explicit scale, a soft-cap).
/// `CADENCE_ATTENTION_KERNEL` ([`AttentionKernel::ENV`]) replaces the GPU kernel.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    gate: Option<&Tensor>,
    mask: Option<&AttentionMask>,
) -> Result<Tensor> {
    attention_with(&AttentionOptions::default(), q, k, v, gate, mask)
}

/// [`attention`] with explicit options. A GPU kernel named in `options` that cannot compute
/// these inputs is an error, not a silent fallback. Without a kernel in `options`, the choice
/// is automatic (see [`attention`]); `CADENCE_ATTENTION_KERNEL` then only replaces the GPU
/// kernel used where one applies (`reference`: never a GPU kernel), so an A/B run of the whole
/// model still computes its f32 calls with the reference.
pub fn attention_with(
    options: &AttentionOptions,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    gate: Option<&Tensor>,
    mask: Option<&AttentionMask>,
) -> Result<Tensor> {
    static ENV_CHOICE: EnvChoice<AttentionKernel> = OnceLock::new();
    let (kernel, strict) = dispatch::resolve(options.kernel, &ENV_CHOICE)?;
    match (kernel, options.reference_only()) {
        (AttentionKernel::Reference, _) => reference_attention(options, q, k, v, gate, mask),
        (_, Some(why)) if strict => {
            candle_core::bail!("the {kernel} attention kernel cannot compute {why}")
        }
        (_, Some(_)) => reference_attention(options, q, k, v, gate, mask),
        (_, None) => gpu_attention(options, kernel, strict, q, k, v, gate, mask),
    }
}

/// GPU `kernel` when it can compute the call; otherwise an error (`strict`) or the reference.
/// Without the `cuda` feature only the reference exists.
#[allow(clippy::too_many_arguments)]
fn gpu_attention(
    options: &AttentionOptions,
    kernel: AttentionKernel,
    strict: bool,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    gate: Option<&Tensor>,
    mask: Option<&AttentionMask>,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    match cuda::plan(kernel, q, k, v, mask)? {
        cuda::Plan::Run(launch) => {
            return launch.run(q, k, v, gate, dispatch::poisoned_outputs());
        }
        cuda::Plan::Unsupported(why) if strict => {
            candle_core::bail!("the {kernel} attention kernel cannot compute this call: {why}")
        }
        cuda::Plan::Unsupported(_) => {}
    }
    #[cfg(not(feature = "cuda"))]
    if strict {
        candle_core::bail!("the {kernel} attention kernel needs cadence-kernels' `cuda` feature")
    }
    reference_attention(options, q, k, v, gate, mask)
}

/// Bytes of f32 scores one query block may take in the reference implementation.
const SCORE_BLOCK_BYTES: usize = 256 << 20;

fn reference_attention(
    options: &AttentionOptions,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    gate: Option<&Tensor>,
    mask: Option<&AttentionMask>,
) -> Result<Tensor> {
    let out_dtype = q.dtype();
    let (len, hq, dim) = q.dims3()?;
    let (k_len, hk, k_dim) = k.dims3()?;
    if k.dims() != v.dims() || k_len != len || k_dim != dim || hk == 0 || hq % hk != 0 {
        candle_core::bail!(
            "attention shapes do not fit: q {:?}, k {:?}, v {:?} (query heads must be a multiple of kv heads)",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let group = hq / hk;
    let scale = options.scale.unwrap_or(1.0 / (dim as f64).sqrt());
    let round_probabilities = options.round_probabilities && out_dtype != DType::F32;
    // Head-major layouts: (H, L, D).
    let qh = q.to_dtype(DType::F32)?.transpose(0, 1)?.contiguous()?;
    let kh = k.to_dtype(DType::F32)?.transpose(0, 1)?.contiguous()?;
    let vh = v.to_dtype(DType::F32)?.transpose(0, 1)?.contiguous()?;
    let block = (SCORE_BLOCK_BYTES / (4 * group * len.max(1))).clamp(1, len.max(1));

    let mut heads = Vec::with_capacity(hk);
    for g in 0..hk {
        let q_g = qh.narrow(0, g * group, group)?; // (group, L, D)
        let k_t = kh.narrow(0, g, 1)?.transpose(1, 2)?; // (1, D, L)
        let v_g = vh.narrow(0, g, 1)?; // (1, L, D)
        let mut blocks = Vec::with_capacity(len.div_ceil(block));
        for start in (0..len).step_by(block) {
            let n = block.min(len - start);
            let mut scores = (q_g.narrow(1, start, n)?.broadcast_matmul(&k_t)? * scale)?;
            if let Some(cap) = options.softcap {
                scores = ((scores / cap)?.tanh()? * cap)?;
            }
            if let Some(mask) = mask {
                scores = scores.broadcast_add(
                    &mask
                        .additive_rows(start..start + n, len)?
                        .to_device(q.device())?,
                )?;
            }
            let mut probs = softmax_last_dim(&scores)?;
            if round_probabilities {
                probs = probs.to_dtype(out_dtype)?.to_dtype(DType::F32)?;
            }
            blocks.push(probs.broadcast_matmul(&v_g)?);
        }
        heads.push(Tensor::cat(&blocks, 1)?);
    }
    // (Hq, L, D) -> (L, Hq, D), rounded to the compute dtype as the kernel's output is.
    let core = Tensor::cat(&heads, 0)?
        .transpose(0, 1)?
        .to_dtype(out_dtype)?;
    match gate {
        None => core.contiguous(),
        Some(gate) => gate_heads(&core, gate),
    }
}

/// The gating epilogue on its own: `core · sigmoid(gate)` per (token, head), computed in f32
/// and returned in `core`'s dtype. [`attention`] with a gate equals this applied to its ungated
/// output; callers that need the pre-gate output (tracing) use the two steps.
pub fn gate_heads(core: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let g = sigmoid(&gate.to_dtype(DType::F32)?)?.unsqueeze(D::Minus1)?;
    core.to_dtype(DType::F32)?
        .broadcast_mul(&g)?
        .to_dtype(core.dtype())
}

/// Numerically stable softmax over the last dim, in f32.
fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Direct evaluation of the definition, one query and head at a time, in f64, with the
    /// scale and soft-cap of `options`.
    fn naive(
        (q, k, v): (&[f32], &[f32], &[f32]),
        (l, hq, hk, d): (usize, usize, usize, usize),
        options: &AttentionOptions,
        allowed: &dyn Fn(usize, usize) -> bool,
    ) -> Vec<f32> {
        let scale = options.scale.unwrap_or(1.0 / (d as f64).sqrt());
        let cap = |s: f64| options.softcap.map_or(s, |c| (s / c).tanh() * c);
        let mut out = vec![0f32; l * hq * d];
        for i in 0..l {
            for h in 0..hq {
                let kvh = h / (hq / hk);
                let mut s: Vec<f64> = (0..l)
                    .map(|j| {
                        if !allowed(i, j) {
                            return f64::NEG_INFINITY;
                        }
                        cap((0..d)
                            .map(|c| {
                                q[(i * hq + h) * d + c] as f64 * k[(j * hk + kvh) * d + c] as f64
                            })
                            .sum::<f64>()
                            * scale)
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                s.iter_mut().for_each(|x| *x = (*x - m).exp());
                let z: f64 = s.iter().sum();
                for c in 0..d {
                    out[(i * hq + h) * d + c] = ((0..l)
                        .map(|j| s[j] * v[(j * hk + kvh) * d + c] as f64)
                        .sum::<f64>()
                        / z) as f32;
                }
            }
        }
        out
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        // Small LCG: deterministic inputs without a dependency.
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Random `q` `(l, hq, d)` (times `gain`), `k` and `v` `(l, hk, d)`: the values and the
    /// tensors.
    #[allow(clippy::type_complexity)]
    fn problem(
        (l, hq, hk, d): (usize, usize, usize, usize),
        seed: u64,
        gain: f32,
    ) -> ((Vec<f32>, Vec<f32>, Vec<f32>), (Tensor, Tensor, Tensor)) {
        let q: Vec<f32> = random(l * hq * d, seed).iter().map(|x| x * gain).collect();
        let (k, v) = (random(l * hk * d, seed + 1), random(l * hk * d, seed + 2));
        let t = |x: &[f32], h| Tensor::from_vec(x.to_vec(), (l, h, d), &Device::Cpu).unwrap();
        let tensors = (t(&q, hq), t(&k, hk), t(&v, hk));
        ((q, k, v), tensors)
    }

    fn max_error(got: &Tensor, want: &[f32]) -> f32 {
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }

    #[test]
    fn matches_the_definition_with_gqa_and_ranges() {
        let dims @ (l, ..) = (13, 6, 2, 8);
        let ((q, k, v), (qt, kt, vt)) = problem(dims, 1, 1.0);
        let mask = AttentionMask::new(vec![(0..5, 0..7), (0..5, 10..13), (5..13, 0..13)]);
        let dense = mask.dense(l);
        for m in [None, Some(&mask)] {
            let got = attention(&qt, &kt, &vt, None, m).unwrap();
            let want = naive((&q, &k, &v), dims, &Default::default(), &|i, j| {
                m.is_none() || dense[i * l + j]
            });
            let err = max_error(&got, &want);
            assert!(err < 1e-5, "max error {err}");
        }
    }

    #[test]
    fn scale_and_softcap_follow_the_options_and_gpu_kernels_decline_them() {
        let dims = (9, 4, 2, 8);
        // Large queries so the cap bends the scores.
        let ((q, k, v), (qt, kt, vt)) = problem(dims, 4, 8.0);
        let options = AttentionOptions {
            scale: Some(0.3),
            softcap: Some(1.5),
            ..Default::default()
        };
        let got = attention_with(&options, &qt, &kt, &vt, None, None).unwrap();
        let want = naive((&q, &k, &v), dims, &options, &|_, _| true);
        let err = max_error(&got, &want);
        assert!(err < 1e-5, "max error {err}");
        let plain = naive((&q, &k, &v), dims, &Default::default(), &|_, _| true);
        assert!(
            max_error(&got, &plain) > 1e-2,
            "the options change the result"
        );

        let strict = AttentionOptions {
            kernel: Some(AttentionKernel::Wgmma),
            ..options
        };
        let err = attention_with(&strict, &qt, &kt, &vt, None, None).unwrap_err();
        assert!(err.to_string().contains("soft-cap") || err.to_string().contains("scale"));
    }

    #[test]
    fn rounded_probabilities_are_the_inputs_dtype_before_pv() {
        let (l, h, d) = (7, 2, 8);
        let dev = Device::Cpu;
        let t = |seed| {
            Tensor::from_vec(random(l * h * d, seed), (l, h, d), &dev)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap()
        };
        let (q, k, v) = (t(7), t(8), t(9));
        let run = |round_probabilities| {
            let options = AttentionOptions {
                round_probabilities,
                ..Default::default()
            };
            attention_with(&options, &q, &k, &v, None, None).unwrap()
        };
        // By hand: f32 softmax, rounded to bf16, P·V in f32, rounded to bf16.
        let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap().transpose(0, 1).unwrap();
        let s = (f(&q).matmul(&f(&k).t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
        let p = softmax_last_dim(&s).unwrap();
        let p = p
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let want = p
            .matmul(&f(&v).contiguous().unwrap())
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let diff = |a: &Tensor, b: &Tensor| cadence_core::compare::diff(a, b).unwrap().max_abs;
        assert_eq!(diff(&run(true), &want), 0.0);
        assert!(diff(&run(false), &want) > 0.0);
    }

    #[test]
    fn a_query_without_admissible_keys_averages_every_value() {
        let dev = Device::Cpu;
        let q = Tensor::new(&[[[1f32]], [[2.0]], [[3.0]]], &dev).unwrap();
        let v = Tensor::new(&[[[0f32]], [[3.0]], [[9.0]]], &dev).unwrap();
        // Query 2 has no key at all; queries 0 and 1 see key 0 only.
        let mask = AttentionMask::new(vec![(0..2, 0..1)]);
        let out = attention(&q, &q, &v, None, Some(&mask))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(out, vec![0.0, 0.0, 4.0]);
    }

    #[test]
    fn gate_scales_each_head() {
        let dev = Device::Cpu;
        let q = Tensor::ones((3, 2, 4), DType::F32, &dev).unwrap();
        let k = Tensor::ones((3, 1, 4), DType::F32, &dev).unwrap();
        let v = Tensor::arange(0f32, 12., &dev)
            .unwrap()
            .reshape((3, 1, 4))
            .unwrap();
        let gate = Tensor::new(&[[0f32, 100.], [0., 100.], [0., 100.]], &dev).unwrap();
        let out = attention(&q, &k, &v, Some(&gate), None).unwrap();
        // Uniform softmax: the mean of v's rows is [4, 5, 6, 7]; head 0 is halved, head 1 kept.
        let h0 = out
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let h1 = out
            .narrow(1, 1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(&h0[..4], &[2., 2.5, 3., 3.5]), "{h0:?}");
        assert!(close(&h1[..4], &[4., 5., 6., 7.]), "{h1:?}");
    }

    #[test]
    fn kernel_names_round_trip() {
        for &k in AttentionKernel::ALL {
            assert_eq!(k.name().parse::<AttentionKernel>().unwrap(), k);
        }
        assert!("flash".parse::<AttentionKernel>().is_err());
    }

    #[test]
    fn cpu_calls_use_the_reference_and_named_gpu_kernels_refuse() {
        let dev = Device::Cpu;
        let q = Tensor::new(&[[[0.5f32, -1.0]], [[1.5, 0.25]]], &dev).unwrap();
        let auto = attention(&q, &q, &q, None, None).unwrap();
        let options = AttentionOptions {
            kernel: Some(AttentionKernel::Reference),
            ..Default::default()
        };
        let reference = dispatch::with_poisoned_outputs(|| {
            attention_with(&options, &q, &q, &q, None, None).unwrap()
        });
        let diff = cadence_core::compare::diff(&auto, &reference).unwrap();
        assert_eq!(diff.max_abs, 0.0);
        for kernel in [
            AttentionKernel::Mma,
            AttentionKernel::Wgmma,
            AttentionKernel::WgmmaPipelined,
        ] {
            let options = AttentionOptions {
                kernel: Some(kernel),
                ..Default::default()
            };
            let err = attention_with(&options, &q, &q, &q, None, None).unwrap_err();
            assert!(err.to_string().contains(kernel.name()), "{err}");
        }
    }
}
