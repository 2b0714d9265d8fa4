//! The encoder's grouped-query self-attention.
//!
//! `q = x Wq^T` (num_heads heads), `k`/`v` (num_kv_heads heads), RoPE on q and k, scores
//! `q . k * query_pre_attn_scalar^-0.5`, masked softmax over keys in f32, `P v`, heads
//! concatenated, `o_proj`. Query head `j` reads kv head `j / group`.
//!
//! The scores are formed in f32 from the (model-dtype) q and k, as fused attention kernels do,
//! and the probabilities are cast back to the model dtype before `P v`. For f32 models this is
//! plain eager attention.

use candle_core::{DType, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

use cadence_core::{trace, Result};

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

    /// Attends `x` `[B, L, H]` under `mask` `[B, L, L]` (u8, 1 = may attend).
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RotaryTables,
        mask: &Tensor,
        mode: AttentionMode,
    ) -> Result<Tensor> {
        let layer = self.index;
        let (b, l, _) = x.dims3()?;
        let dtype = x.dtype();
        let q = self.q_proj.forward(x)?;
        let k = self.k_proj.forward(x)?;
        let v = self.v_proj.forward(x)?;
        trace::record(|| format!("layer{layer}.q_proj"), &q);
        trace::record(|| format!("layer{layer}.k_proj"), &k);
        trace::record(|| format!("layer{layer}.v_proj"), &v);

        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, l, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = rope.apply(&heads(q, self.num_heads)?)?;
        let k = rope.apply(&heads(k, self.num_kv_heads)?)?;
        let v = heads(v, self.num_kv_heads)?;

        // Grouped-query attention without copying k/v: the `group` query heads that share a kv
        // head are consecutive, so [B, heads, L, d] is [B, kv_heads, group*L, d] in memory.
        let group = self.num_heads / self.num_kv_heads;
        let q = q.reshape((b, self.num_kv_heads, group * l, self.head_dim))?;
        let scores = q
            .to_dtype(DType::F32)?
            .matmul(&k.to_dtype(DType::F32)?.t()?)?
            .reshape((b, self.num_heads, l, l))?;
        let mut scores = (scores * self.scale)?;
        if let (AttentionMode::EagerSoftcap, Some(cap)) = (mode, self.softcap) {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        let scores = masked_fill_min(&scores, mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let context = probs
            .reshape((b, self.num_kv_heads, group * l, l))?
            .matmul(&v)?
            .reshape((b, self.num_heads, l, self.head_dim))?
            .transpose(1, 2)?
            .reshape((b, l, self.num_heads * self.head_dim))?;
        trace::record(|| format!("layer{layer}.attn_context"), &context);
        let out = self.o_proj.forward(&context)?;
        trace::record(|| format!("layer{layer}.attn_out"), &out);
        Ok(out)
    }
}

/// Replaces the scores of keys the mask forbids by the lowest f32.
///
/// The lowest finite value rather than `-inf`: a padded query may have no admissible key at all
/// (its window holds only padding), and `-inf` everywhere would make its softmax NaN, which
/// would then reach real rows through its key/value in the next layer. With a finite value such
/// a row is a uniform average, and real rows are unaffected (`exp(min - max)` is 0).
fn masked_fill_min(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let shape = scores.dims().to_vec();
    let mask = mask.unsqueeze(1)?.broadcast_as(shape.as_slice())?;
    let lowest = Tensor::new(f32::MIN, scores.device())?.broadcast_as(shape.as_slice())?;
    Ok(mask.where_cond(scores, &lowest)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fully_masked_rows_stay_finite() {
        let dev = Device::Cpu;
        let scores = Tensor::new(&[[[[1f32, 2.0], [3.0, 4.0]]]], &dev).unwrap();
        let mask = Tensor::new(&[[[1u8, 0], [0, 0]]], &dev).unwrap();
        let filled = masked_fill_min(&scores, &mask).unwrap();
        let p = candle_nn::ops::softmax_last_dim(&filled)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(p, vec![1.0, 0.0, 0.5, 0.5]);
    }
}
