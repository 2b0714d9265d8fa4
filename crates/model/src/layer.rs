//! One transformer layer: pre-norm gated GQA attention, then a pre-norm clamped MLP.
//!
//! The residual stream `x` is f32. Casts to the compute dtype (bf16 in production) happen exactly
//! where the reference rounds: after each pre-norm, after every GEMM, on q/k/v before attention
//! (q/k after the rope), on the attention and gated outputs, and on the activation output.
//! In f32 compute every cast is the identity.

use candle_core::{DType, Device, Tensor};

use cadence_core::{Result, WeightSource};
use cadence_kernels::activation::{gelu7, swiglu7};
use cadence_kernels::attention::gate_heads;
use cadence_kernels::rope::apply_rope;
use cadence_kernels::{attention, AttentionMask};

use crate::config::{Activation, DitConfig, LayerSpec};
use crate::experts::{ExpertLinear, ExpertNorm};
use crate::packing::ModalitySpans;
use crate::trace::{record, Trace};
use crate::weights::layer_key;

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
}

impl TransformerLayer {
    /// Loads layer `index`; GEMM weights in `compute`, norms in f32.
    pub fn load(
        ckpt: &dyn WeightSource,
        config: &DitConfig,
        index: usize,
        compute: DType,
        device: &Device,
    ) -> Result<Self> {
        let spec = config.layer(index);
        let e = spec.experts;
        let linear =
            |name: &str| ExpertLinear::load(ckpt, &layer_key(index, name), e, compute, device);
        let norm = |name: &str| ExpertNorm::load(ckpt, &layer_key(index, name), e, device);
        Ok(Self {
            index,
            spec,
            heads_q: config.num_heads_q(),
            heads_kv: config.num_heads_kv(),
            head_dim: config.head_dim,
            gated: config.enable_attn_gating,
            compute,
            attn_norm: norm("attention.pre_norm")?,
            qkv: linear("attention.linear_qkv")?,
            q_norm: norm("attention.q_norm")?,
            k_norm: norm("attention.k_norm")?,
            proj: linear("attention.linear_proj")?,
            mlp_norm: norm("mlp.pre_norm")?,
            up: linear("mlp.up_gate_proj")?,
            down: linear("mlp.down_proj")?,
            post_norms: if spec.post_norm {
                Some((norm("attn_post_norm")?, norm("mlp_post_norm")?))
            } else {
                None
            },
        })
    }

    /// The layer's derived facts.
    pub fn spec(&self) -> &LayerSpec {
        &self.spec
    }

    /// `x + Attn(x)`, then `+ MLP(·)`. `x` is the f32 residual stream `(L, hidden)`.
    pub fn forward(
        &self,
        x: &Tensor,
        ctx: &LayerContext,
        mut trace: Option<&mut Trace>,
    ) -> Result<Tensor> {
        let i = self.index;
        let mut attn_out = self.attention(x, ctx, &mut trace)?;
        if let Some((norm, _)) = &self.post_norms {
            attn_out = norm.forward(&attn_out, ctx.spans)?.to_dtype(self.compute)?;
        }
        record(&mut trace, || format!("attn_out_{i}"), &attn_out);
        let x = (x + attn_out.to_dtype(DType::F32)?)?;

        let mut mlp_out = self.mlp(&x, ctx.spans)?;
        if let Some((_, norm)) = &self.post_norms {
            mlp_out = norm.forward(&mlp_out, ctx.spans)?.to_dtype(self.compute)?;
        }
        record(&mut trace, || format!("mlp_out_{i}"), &mlp_out);
        let x = (x + mlp_out.to_dtype(DType::F32)?)?;
        record(&mut trace, || format!("layer_{i}"), &x);
        Ok(x)
    }

    /// The attention branch (SPEC §7 a–h); returns `linear_proj`'s output in the compute dtype.
    fn attention(
        &self,
        x: &Tensor,
        ctx: &LayerContext,
        trace: &mut Option<&mut Trace>,
    ) -> Result<Tensor> {
        let (len, _) = x.dims2()?;
        let (hq, hk, d) = (self.heads_q, self.heads_kv, self.head_dim);
        let h = self
            .attn_norm
            .forward(x, ctx.spans)?
            .to_dtype(self.compute)?;
        let qkv = self.qkv.forward(&h, ctx.spans)?.to_dtype(DType::F32)?;
        // Column blocks: [q (hq·d) | k (hk·d) | v (hk·d) | gates (hq)], each head-major.
        let q = qkv.narrow(1, 0, hq * d)?.reshape((len, hq, d))?;
        let k = qkv.narrow(1, hq * d, hk * d)?.reshape((len, hk, d))?;
        let v = qkv
            .narrow(1, (hq + hk) * d, hk * d)?
            .reshape((len, hk, d))?;
        let gate = if self.gated {
            Some(qkv.narrow(1, (hq + 2 * hk) * d, hq)?)
        } else {
            None
        };

        let q = self.q_norm.forward(&q, ctx.spans)?;
        let k = self.k_norm.forward(&k, ctx.spans)?;
        let detail = trace.as_ref().is_some_and(|t| t.wants_detail(self.index));
        let i = self.index;
        if detail {
            record(trace, || format!("l{i}.q_normed"), &q);
            record(trace, || format!("l{i}.k_normed"), &k);
        }
        let q = apply_rope(&q, ctx.rope)?;
        let k = apply_rope(&k, ctx.rope)?;
        if detail {
            record(trace, || format!("l{i}.q_rope"), &q);
            record(trace, || format!("l{i}.k_rope"), &k);
        }
        let (q, k, v) = (
            q.to_dtype(self.compute)?,
            k.to_dtype(self.compute)?,
            v.to_dtype(self.compute)?,
        );
        let mask = if self.spec.local_attn {
            ctx.local_mask
        } else {
            None
        };
        let gated = if detail {
            // Unfused, so the pre-gate output can be recorded; the same math as the fused op.
            record(trace, || format!("l{i}.attn_q"), &q);
            record(trace, || format!("l{i}.attn_k"), &k);
            record(trace, || format!("l{i}.attn_v"), &v);
            let core = attention(&q, &k, &v, None, mask)?;
            record(trace, || format!("l{i}.attn_core"), &core);
            match &gate {
                Some(g) => gate_heads(&core, g)?,
                None => core,
            }
        } else {
            attention(&q, &k, &v, gate.as_ref(), mask)?
        };
        self.proj.forward(&gated.reshape((len, hq * d))?, ctx.spans)
    }

    /// The MLP branch (SPEC §7 i–k); returns `down_proj`'s output in the compute dtype.
    fn mlp(&self, x: &Tensor, spans: &ModalitySpans) -> Result<Tensor> {
        let m = self.mlp_norm.forward(x, spans)?.to_dtype(self.compute)?;
        let u = self.up.forward(&m, spans)?;
        let act = match self.spec.activation {
            Activation::Gelu7 => gelu7(&u)?,
            Activation::Swiglu7 => swiglu7(&u)?,
        };
        self.down.forward(&act.to_dtype(self.compute)?, spans)
    }
}
