//! One transformer layer: pre-norm gated GQA attention, then a pre-norm clamped MLP, and the
//! per-modality ("sandwich") experts its norms and GEMMs use ([`ExpertLinear`], [`ExpertNorm`]).
//!
//! The residual stream `x` is f32. Casts to the compute dtype (bf16 in production) happen exactly
//! where the reference rounds: after each pre-norm, after every GEMM, on q/k/v before attention
//! (q/k after the rope), on the attention and gated outputs, and on the activation output.
//! In f32 compute every cast is the identity.
//!
//! # Memory
//!
//! Everything except attention itself works token by token, and it does so on pieces of at most
//! [`TOKEN_CHUNK`] tokens: the pre-norms, the GEMMs, the q/k norms and rope, and the MLP with its
//! f32 activation temporaries. Only the residual stream, q/k/v, the attention output and the
//! two branch outputs ever span the whole sequence. Unchunked, the gelu7 MLP alone would hold
//! about 30 bytes per intermediate column per token (the bf16 and f32 copies of the up
//! projection and the f32 temporaries of the activation): 614 KB per token at the real width,
//! 40 GB for the 65,606 tokens of a 1080p clip. [`crate::footprint`] has the arithmetic.
//! Splitting per-token work changes no value: each row is computed by the same operations
//! (FP8 per-tensor activation scales become per piece, see [`cadence_kernels::fp8::Scaling`]).

use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};

use cadence_core::{trace, Result};
use cadence_kernels::activation::{gelu7, swiglu7};
use cadence_kernels::attention::gate_heads;
use cadence_kernels::norm::rms_norm;
use cadence_kernels::rope::apply_rope;
use cadence_kernels::{attention, linear, AttentionMask, LinearWeight};

use crate::config::{Activation, DitConfig, LayerSpec, NORM_EPS};
use crate::packing::{Modality, ModalitySpans};
use crate::precision::{load_linear, LoadOptions};

/// Tokens per piece of the per-token work of a layer (module docs): large enough that the
/// GEMMs stay efficient (M = 4096 rows), small enough that the pieces' temporaries stay a few
/// GB at the real width (about 2.6 GB in a gelu7 layer).
pub const TOKEN_CHUNK: usize = 4096;

/// What every layer of one forward pass shares.
pub struct LayerContext<'a> {
    /// Token spans per modality (expert dispatch).
    pub spans: &'a ModalitySpans,
    /// `(L, 6B)` rope table.
    pub rope: &'a Tensor,
    /// Frame-window ranges, used by local-attention layers only.
    pub local_mask: Option<&'a AttentionMask>,
}

/// The weights and shape facts of one layer.
#[derive(Debug, Clone)]
pub struct TransformerLayer {
    index: usize,
    spec: LayerSpec,
    heads_q: usize,
    heads_kv: usize,
    head_dim: usize,
    gated: bool,
    compute: DType,
    attn_norm: ExpertNorm,
    qkv: ExpertLinear,
    q_norm: ExpertNorm,
    k_norm: ExpertNorm,
    proj: ExpertLinear,
    mlp_norm: ExpertNorm,
    up: ExpertLinear,
    down: ExpertLinear,
    /// Norms on the attention and MLP outputs (layers in `post_norm_layers`).
    post_norms: Option<(ExpertNorm, ExpertNorm)>,
    /// Tokens per piece of per-token work ([`TOKEN_CHUNK`]).
    token_chunk: usize,
}
cadence_core::tensor_tree!(TransformerLayer {
    attn_norm,
    qkv,
    q_norm,
    k_norm,
    proj,
    mlp_norm,
    up,
    down,
    post_norms,
});

impl TransformerLayer {
    /// Loads layer `index` from `vb` (the layer's `block.layers.{index}` prefix): GEMM weights
    /// dense in the compute dtype or FP8 (`options`), norms in f32. Each weight's key and shape
    /// (per expert) is stated here and nowhere else.
    pub fn load(
        vb: &VarBuilder,
        config: &DitConfig,
        index: usize,
        options: &LoadOptions,
    ) -> Result<Self> {
        let spec = config.layer(index);
        let e = spec.experts;
        let compute = options.compute;
        let (hid, head_dim) = (config.hidden_size, config.head_dim);
        let linear = |name: &str, shape| ExpertLinear::load(&vb.pp(name), shape, e, options);
        let norm = |name: &str, width| ExpertNorm::load(&vb.pp(name), width, e);
        Ok(Self {
            index,
            spec,
            heads_q: config.num_heads_q(),
            heads_kv: config.num_heads_kv(),
            head_dim: config.head_dim,
            gated: config.enable_attn_gating,
            compute,
            attn_norm: norm("attention.pre_norm", hid)?,
            qkv: linear("attention.linear_qkv", (config.qkv_features(), hid))?,
            q_norm: norm("attention.q_norm", head_dim)?,
            k_norm: norm("attention.k_norm", head_dim)?,
            proj: linear(
                "attention.linear_proj",
                (hid, config.num_heads_q() * head_dim),
            )?,
            mlp_norm: norm("mlp.pre_norm", hid)?,
            up: linear("mlp.up_gate_proj", (spec.up_features(), hid))?,
            down: linear("mlp.down_proj", (hid, spec.intermediate))?,
            post_norms: if spec.post_norm {
                Some((norm("attn_post_norm", hid)?, norm("mlp_post_norm", hid)?))
            } else {
                None
            },
            token_chunk: TOKEN_CHUNK,
        })
    }

    /// The layer's derived facts.
    pub fn spec(&self) -> &LayerSpec {
        &self.spec
    }

    /// The four GEMM weights, in forward order: qkv, proj, up_gate, down.
    pub fn gemms(&self) -> [&LinearWeight; 4] {
        [&self.qkv, &self.proj, &self.up, &self.down].map(ExpertLinear::weight)
    }

    /// `x + Attn(x)`, then `+ MLP(·)`. `x` is the f32 residual stream `(L, hidden)`.
    pub fn forward(&self, x: &Tensor, ctx: &LayerContext) -> Result<Tensor> {
        let i = self.index;
        // A parity capture may feed the layer the reference's input instead (teacher forcing).
        let x = &trace::forced(|| format!("layer_{i}_in"), x)?;
        let mut attn_out = self.attention(x, ctx)?;
        if let Some((norm, _)) = &self.post_norms {
            attn_out = norm.forward(&attn_out, ctx.spans)?.to_dtype(self.compute)?;
        }
        trace::record(|| format!("attn_out_{i}"), &attn_out);
        let x = (x + attn_out.to_dtype(DType::F32)?)?;
        drop(attn_out);

        let mut mlp_out = self.mlp(&x, ctx.spans)?;
        if let Some((_, norm)) = &self.post_norms {
            mlp_out = norm.forward(&mlp_out, ctx.spans)?.to_dtype(self.compute)?;
        }
        trace::record(|| format!("mlp_out_{i}"), &mlp_out);
        let x = (x + mlp_out.to_dtype(DType::F32)?)?;
        drop(mlp_out);
        trace::record(|| format!("layer_{i}"), &x);
        Ok(x)
    }

    /// The attention branch (SPEC §7 a–h); returns `linear_proj`'s output in the compute dtype.
    fn attention(&self, x: &Tensor, ctx: &LayerContext) -> Result<Tensor> {
        let (len, _) = x.dims2()?;
        let (hq, d) = (self.heads_q, self.head_dim);
        let detail = trace::wants_detail(self.index);
        // Details are recorded whole, so a traced layer runs as one piece.
        let chunk = if detail { len.max(1) } else { self.token_chunk };
        let mut parts: [Vec<Tensor>; 4] = Default::default();
        for (start, n) in pieces(len, chunk) {
            let spans = ctx.spans.slice(start..start + n);
            let rope = ctx.rope.narrow(0, start, n)?;
            let qkvg = self.project_qkv(&x.narrow(0, start, n)?, &spans, &rope, detail)?;
            for (part, t) in parts.iter_mut().zip(qkvg) {
                part.push(t);
            }
        }
        let [q, k, v, gate] = parts.map(cat_pieces);
        let (q, k, v) = (q?, k?, v?);
        let gate = if self.gated { Some(gate?) } else { None };

        let mask = if self.spec.local_attn {
            ctx.local_mask
        } else {
            None
        };
        let i = self.index;
        let gated = if detail {
            // Unfused, so the pre-gate output can be recorded; the same math as the fused op.
            trace::record(|| format!("l{i}.attn_q"), &q);
            trace::record(|| format!("l{i}.attn_k"), &k);
            trace::record(|| format!("l{i}.attn_v"), &v);
            let core = attention(&q, &k, &v, None, mask)?;
            trace::record(|| format!("l{i}.attn_core"), &core);
            match &gate {
                Some(g) => gate_heads(&core, g)?,
                None => core,
            }
        } else {
            attention(&q, &k, &v, gate.as_ref(), mask)?
        };
        drop((q, k, v, gate));
        let gated = gated.reshape((len, hq * d))?;
        map_pieces(&gated, ctx.spans, chunk, |rows, spans| {
            self.proj.forward(rows, spans)
        })
    }

    /// SPEC §7 a–f for one piece of tokens: pre-norm, qkv GEMM, q/k norms, rope. Returns q, k,
    /// v in the compute dtype (`(n, H, D)`) and the gate logits `(n, Hq)` in f32 (an empty
    /// tensor when the layer is ungated); every f32 temporary is freed on return.
    fn project_qkv(
        &self,
        x: &Tensor,
        spans: &ModalitySpans,
        rope: &Tensor,
        detail: bool,
    ) -> Result<[Tensor; 4]> {
        let (len, _) = x.dims2()?;
        let (hq, hk, d) = (self.heads_q, self.heads_kv, self.head_dim);
        let h = self.attn_norm.forward(x, spans)?.to_dtype(self.compute)?;
        let qkv = self.qkv.forward(&h, spans)?.to_dtype(DType::F32)?;
        drop(h);
        // Column blocks: [q (hq·d) | k (hk·d) | v (hk·d) | gates (hq)], each head-major.
        let v = qkv
            .narrow(1, (hq + hk) * d, hk * d)?
            .reshape((len, hk, d))?
            .to_dtype(self.compute)?;
        let gate = if self.gated {
            qkv.narrow(1, (hq + 2 * hk) * d, hq)?.contiguous()?
        } else {
            Tensor::zeros(0, DType::F32, x.device())?
        };
        let i = self.index;
        // q and k: norm, then rope, each block freeing its f32 temporaries on exit.
        let rotated = |name: &str, offset: usize, heads: usize, norm: &ExpertNorm| {
            let normed = norm.forward(
                &qkv.narrow(1, offset, heads * d)?.reshape((len, heads, d))?,
                spans,
            )?;
            if detail {
                trace::record(|| format!("l{i}.{name}_normed"), &normed);
            }
            let roped = apply_rope(&normed, rope)?;
            if detail {
                trace::record(|| format!("l{i}.{name}_rope"), &roped);
            }
            Ok::<_, cadence_core::Error>(roped.to_dtype(self.compute)?)
        };
        let q = rotated("q", 0, hq, &self.q_norm)?;
        let k = rotated("k", hq * d, hk, &self.k_norm)?;
        Ok([q, k, v, gate])
    }

    /// The MLP branch (SPEC §7 i–k), a piece of tokens at a time; returns `down_proj`'s output
    /// in the compute dtype.
    fn mlp(&self, x: &Tensor, spans: &ModalitySpans) -> Result<Tensor> {
        map_pieces(x, spans, self.token_chunk, |rows, spans| {
            let m = self.mlp_norm.forward(rows, spans)?.to_dtype(self.compute)?;
            let u = self.up.forward(&m, spans)?;
            let act = match self.spec.activation {
                Activation::Gelu7 => gelu7(&u)?,
                Activation::Swiglu7 => swiglu7(&u)?,
            };
            self.down.forward(&act.to_dtype(self.compute)?, spans)
        })
    }
}

/// `(start, len)` of the pieces of at most `chunk` tokens covering `0..len`.
fn pieces(len: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len)
        .step_by(chunk.max(1))
        .map(move |start| (start, chunk.min(len - start)))
}

/// The pieces concatenated along the token dim (the one piece itself when there is one).
fn cat_pieces(mut parts: Vec<Tensor>) -> Result<Tensor> {
    if parts.len() == 1 {
        if let Some(t) = parts.pop() {
            return Ok(t);
        }
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// `f` applied to pieces of at most `chunk` rows of `x` (with their modality spans), the
/// results concatenated along the rows; one call without copies when `x` fits in one piece.
fn map_pieces(
    x: &Tensor,
    spans: &ModalitySpans,
    chunk: usize,
    f: impl Fn(&Tensor, &ModalitySpans) -> Result<Tensor>,
) -> Result<Tensor> {
    let (len, _) = x.dims2()?;
    if len <= chunk {
        return f(x, spans);
    }
    let parts = pieces(len, chunk)
        .map(|(start, n)| f(&x.narrow(0, start, n)?, &spans.slice(start..start + n)))
        .collect::<Result<Vec<_>>>()?;
    cat_pieces(parts)
}

// Sandwich experts: weights that exist once per modality in sandwich layers, and once in
// others. They are stacked along dim 0 in the order video, audio, text; each token uses its own
// modality's expert. Tokens are grouped by modality, so dispatch runs each expert on its
// contiguous span and concatenates the results in order.

/// Runs `f(rows, expert)` on each modality's span of `x` (dim 0) and concatenates the results.
/// With a single expert, `f` sees all rows at once.
fn per_expert(
    x: &Tensor,
    spans: &ModalitySpans,
    experts: usize,
    f: impl Fn(&Tensor, usize) -> Result<Tensor>,
) -> Result<Tensor> {
    if experts == 1 {
        return f(x, 0);
    }
    let mut parts = Vec::with_capacity(experts);
    for m in Modality::ALL {
        let range = spans.range(m);
        if !range.is_empty() {
            parts.push(f(&x.narrow(0, range.start, range.len())?, m.id())?);
        }
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// A bias-free linear layer with one weight block per expert: `(experts·out, in)`, dense or
/// FP8 ([`crate::precision::WeightFormat`]); the product runs through the op boundary's [`linear`].
#[derive(Debug, Clone)]
pub struct ExpertLinear {
    weight: LinearWeight,
    out_features: usize,
    experts: usize,
}
cadence_core::tensor_tree!(ExpertLinear { weight });

impl ExpertLinear {
    /// Loads `weight` (`(experts·out_features, in_features)`) under `vb`, dense in the compute
    /// dtype or FP8, as `options` say.
    pub fn load(
        vb: &VarBuilder,
        (out_features, in_features): (usize, usize),
        experts: usize,
        options: &LoadOptions,
    ) -> Result<Self> {
        let shape = (experts * out_features, in_features);
        let weight = load_linear(vb, shape, options.compute, options.weights)?;
        Ok(Self {
            weight,
            out_features,
            experts,
        })
    }

    /// `x · Wₑᵀ` per expert, `x` `(L, in)` in the compute dtype; the product accumulates in f32
    /// and is returned in the compute dtype (rounded once, as the reference's bf16 GEMM). With
    /// FP8 weights each expert's rows are quantised per token on the way in.
    pub fn forward(&self, x: &Tensor, spans: &ModalitySpans) -> Result<Tensor> {
        per_expert(x, spans, self.experts, |rows, e| {
            let w = self
                .weight
                .narrow_rows(e * self.out_features, self.out_features)?;
            Ok(linear(rows, &w)?)
        })
    }

    /// The stacked weight of all experts.
    pub fn weight(&self) -> &LinearWeight {
        &self.weight
    }
}

/// An RMSNorm with one scale vector per expert, applied over the last dim.
#[derive(Debug, Clone)]
pub struct ExpertNorm {
    /// `1 + w` per expert, f32, `(experts·width)`.
    scale: Tensor,
    width: usize,
    experts: usize,
}
cadence_core::tensor_tree!(ExpertNorm { scale });

impl ExpertNorm {
    /// Loads the stored offset `weight` (`(experts·width)`) under `vb` and keeps `1 + w` (f32).
    pub fn load(vb: &VarBuilder, width: usize, experts: usize) -> Result<Self> {
        let w = vb.get_with_hints_dtype(experts * width, "weight", Init::Const(0.0), DType::F32)?;
        Ok(Self {
            scale: (w + 1.0)?,
            width,
            experts,
        })
    }

    /// Normalises `x` (`(L, …, width)`, any float dtype) in f32 and returns f32.
    pub fn forward(&self, x: &Tensor, spans: &ModalitySpans) -> Result<Tensor> {
        per_expert(x, spans, self.experts, |rows, e| {
            let scale = self.scale.narrow(0, e * self.width, self.width)?;
            Ok(rms_norm(rows, &scale, NORM_EPS)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packing::TokenLayout;
    use crate::rope::{default_bands, rope_table};
    use crate::weights::expected_tensors;
    use cadence_core::RandomWeights;
    use candle_core::Device;

    #[test]
    fn pieces_of_tokens_give_the_same_layer() {
        let config = DitConfig {
            num_layers: 2,
            hidden_size: 64,
            head_dim: 16,
            num_query_groups: 2,
            text_in_channels: 32,
            mm_layers: vec![0],
            gelu7_layers: vec![0],
            ..DitConfig::base()
        };
        let weights = RandomWeights::seeded(&expected_tensors(&config), "", 7);
        let layout = TokenLayout {
            latent_channels: 48,
            frames: 2,
            rows: 4,
            cols: 6,
            patch: 2,
            audio: 5,
            text: 6,
        };
        let len = layout.len();
        let spans = layout.spans();
        let coords = crate::packing::coords(&layout, &crate::packing::PackingConfig::base());
        let rope = rope_table(&coords, &default_bands(config.rope_bands()), &Device::Cpu).unwrap();
        let ctx = LayerContext {
            spans: &spans,
            rope: &rope,
            local_mask: None,
        };
        let x = Tensor::randn(0f32, 1.0, (len, 64), &Device::Cpu).unwrap();
        for i in 0..2 {
            let options = LoadOptions::dense(DType::F32);
            let vb = cadence_core::var_builder::var_builder(&weights, DType::F32, &Device::Cpu);
            let vb = vb.pp(crate::dit::layer_prefix(i));
            let mut layer = TransformerLayer::load(&vb, &config, i, &options).unwrap();
            let whole = layer.forward(&x, &ctx).unwrap();
            layer.token_chunk = 5;
            let pieces = layer.forward(&x, &ctx).unwrap();
            let diff = cadence_core::compare::diff(&whole, &pieces)
                .unwrap()
                .max_abs;
            assert!(diff <= 1e-5, "layer {i}: pieces differ by {diff}");
        }
    }
}
