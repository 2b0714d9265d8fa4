//! One encoder layer: Gemma-2's "sandwich" of four RMSNorms around attention and the MLP.
//!
//! ```text
//! h = h + post_attn_norm(attention(pre_attn_norm(h)))
//! h = h + post_ffn_norm(mlp(pre_ffn_norm(h)))
//! ```
//! The post norms act on the branch output before the residual add.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use cadence_core::{trace, Result};
use cadence_kernels::AttentionMask;

use crate::attention::{AttentionMode, SelfAttention};
use crate::config::{LayerKind, TextEncoderConfig};
use crate::mlp::GatedMlp;
use crate::norm::GemmaRmsNorm;
use crate::rope::RotaryTables;

/// One encoder layer: pre/post-normed self-attention and gated MLP, each on the residual.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    kind: LayerKind,
    /// The layer's index, naming what it records.
    index: usize,
    pre_attn_norm: GemmaRmsNorm,
    attention: SelfAttention,
    post_attn_norm: GemmaRmsNorm,
    pre_ffn_norm: GemmaRmsNorm,
    mlp: GatedMlp,
    post_ffn_norm: GemmaRmsNorm,
}
cadence_core::tensor_tree!(EncoderLayer {
    pre_attn_norm,
    attention,
    post_attn_norm,
    pre_ffn_norm,
    mlp,
    post_ffn_norm,
});

impl EncoderLayer {
    /// Loads layer `index` from `vb` (the layer's `layers.{index}` prefix).
    pub fn load(vb: &VarBuilder, index: usize, cfg: &TextEncoderConfig) -> Result<Self> {
        let norm = |name: &str| GemmaRmsNorm::load(&vb.pp(name), cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            kind: cfg.layer_kinds[index],
            index,
            pre_attn_norm: norm("pre_self_attn_layernorm")?,
            attention: SelfAttention::load(&vb.pp("self_attn"), index, cfg)?,
            post_attn_norm: norm("post_self_attn_layernorm")?,
            pre_ffn_norm: norm("pre_feedforward_layernorm")?,
            mlp: GatedMlp::load(&vb.pp("mlp"), cfg)?,
            post_ffn_norm: norm("post_feedforward_layernorm")?,
        })
    }

    /// Whether this layer uses the full or the sliding-window mask.
    pub fn kind(&self) -> LayerKind {
        self.kind
    }

    /// Runs the layer on the residual stream `h` `[B, L, H]`.
    pub fn forward(
        &self,
        h: &Tensor,
        rope: &RotaryTables,
        mask: &[Option<AttentionMask>],
        mode: AttentionMode,
    ) -> Result<Tensor> {
        let layer = self.index;
        let a = self.pre_attn_norm.forward(h)?;
        trace::record(|| format!("layer{layer}.attn_norm"), &a);
        let a = self.attention.forward(&a, rope, mask, mode)?;
        let a = self.post_attn_norm.forward(&a)?;
        trace::record(|| format!("layer{layer}.attn_post_norm"), &a);
        let h = (h + a)?;

        let m = self.pre_ffn_norm.forward(&h)?;
        trace::record(|| format!("layer{layer}.ffn_norm"), &m);
        let m = self.mlp.forward(&m)?;
        trace::record(|| format!("layer{layer}.mlp_out"), &m);
        let m = self.post_ffn_norm.forward(&m)?;
        trace::record(|| format!("layer{layer}.ffn_post_norm"), &m);
        let h = (h + m)?;
        trace::record(|| format!("layer{layer}.out"), &h);
        Ok(h)
    }
}
