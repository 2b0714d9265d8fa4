//! The encoder's grouped-query self-attention.
//!
//! `q = x Wq^T` (num_heads heads), `k`/`v` (num_kv_heads heads), RoPE on q and k, then the
//! kernels' attention op once per prompt: scores `q . k * query_pre_attn_scalar^-0.5` in f32,
//! masked softmax over keys, probabilities rounded to the model dtype before `P v` (as the
//! official pipeline's SDPA does), heads concatenated, `o_proj`.

use candle_core::Tensor;
use candle_nn::{Linear, Module, VarBuilder};

use cadence_core::{trace, Result};
use cadence_kernels::attention::{attention_with, AttentionOptions};
use cadence_kernels::AttentionMask;

use crate::config::TextEncoderConfig;
use crate::rope::RotaryTables;

/// Whether attention logits are soft-capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AttentionMode {
    /// What the official pipeline computes: transformers resolves the model to its SDPA
    /// attention, which drops the config's `attn_logit_softcapping`. No soft-cap.
    #[default]
    Official,
    /// transformers' "eager" attention: `tanh(s / cap) * cap` on the scaled logits, before the
    /// mask. Not what the pipeline runs; offered to compare with that variant.
    EagerSoftcap,
}

/// One layer's self-attention block.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
    /// The layer's index, naming what it records.
    index: usize,
}

impl cadence_core::TensorTree for SelfAttention {
    fn for_each_tensor(&self, f: &mut dyn FnMut(&Tensor)) {
        for l in [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj] {
            f(l.weight());
        }
    }

    fn map_tensors(&self, f: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<Self> {
        let mut map = |l: &Linear| -> Result<Linear> { Ok(Linear::new(f(l.weight())?, None)) };
        Ok(Self {
            q_proj: map(&self.q_proj)?,
            k_proj: map(&self.k_proj)?,
            v_proj: map(&self.v_proj)?,
            o_proj: map(&self.o_proj)?,
            ..self.clone()
        })
    }
}

impl SelfAttention {
    /// Loads layer `index`'s `{q,k,v,o}_proj.weight` under `vb`.
    pub fn load(vb: &VarBuilder, index: usize, cfg: &TextEncoderConfig) -> Result<Self> {
        let (h, q, kv) = (cfg.hidden_size, cfg.q_width(), cfg.kv_width());
        let linear = |name: &str, shape: (usize, usize)| -> Result<Linear> {
            Ok(Linear::new(vb.get(shape, &format!("{name}.weight"))?, None))
        };
        Ok(Self {
            q_proj: linear("q_proj", (q, h))?,
            k_proj: linear("k_proj", (kv, h))?,
            v_proj: linear("v_proj", (kv, h))?,
            o_proj: linear("o_proj", (h, q))?,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            scale: cfg.attn_scale(),
            softcap: cfg.attn_logit_softcapping,
            index,
        })
    }

    /// Attends `x` `[B, L, H]`, prompt `b` under `masks[b]` (`None`: every key).
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RotaryTables,
        masks: &[Option<AttentionMask>],
        mode: AttentionMode,
    ) -> Result<Tensor> {
        let layer = self.index;
        let (b, l, _) = x.dims3()?;
        let q = self.q_proj.forward(x)?;
        let k = self.k_proj.forward(x)?;
        let v = self.v_proj.forward(x)?;
        trace::record(|| format!("layer{layer}.q_proj"), &q);
        trace::record(|| format!("layer{layer}.k_proj"), &k);
        trace::record(|| format!("layer{layer}.v_proj"), &v);

        // RoPE works on [B, heads, L, d]; the op takes one prompt as [L, heads, d].
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, l, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = rope.apply(&heads(q, self.num_heads)?)?.transpose(1, 2)?;
        let k = rope.apply(&heads(k, self.num_kv_heads)?)?.transpose(1, 2)?;
        let v = v.reshape((b, l, self.num_kv_heads, self.head_dim))?;
        let options = AttentionOptions {
            scale: Some(self.scale),
            softcap: self.softcap.filter(|_| mode == AttentionMode::EagerSoftcap),
            round_probabilities: true,
            ..Default::default()
        };
        if masks.len() != b {
            return Err(cadence_core::Error::InvalidInput(format!(
                "{} attention masks for a batch of {b} prompts",
                masks.len()
            )));
        }
        let mut prompts = Vec::with_capacity(b);
        for (i, mask) in masks.iter().enumerate() {
            let (q, k, v) = (q.get(i)?, k.get(i)?, v.get(i)?);
            prompts.push(attention_with(&options, &q, &k, &v, None, mask.as_ref())?);
        }
        let context =
            Tensor::stack(&prompts, 0)?.reshape((b, l, self.num_heads * self.head_dim))?;
        trace::record(|| format!("layer{layer}.attn_context"), &context);
        let out = self.o_proj.forward(&context)?;
        trace::record(|| format!("layer{layer}.attn_out"), &out);
        Ok(out)
    }
}
