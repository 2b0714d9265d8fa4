//! Device memory of the DiT: its weights, and the activations of one forward pass, from the
//! config alone (no model needed), for the pipeline's memory plan.
//!
//! # Weights
//!
//! [`weight_bytes`] sums the checkpoint's tensors as the model holds them: the four GEMMs of
//! every layer in the compute dtype, or FP8 (one byte per element, columns padded to 16, one
//! f32 scale per row); every other tensor (norms, embedders, heads) in f32. The real model:
//! 30.64 GB with bf16 GEMMs, 15.36 GB with FP8 ones.
//!
//! # Activations of one forward
//!
//! [`forward_activation_bytes`] follows the tensors `layer.rs` keeps alive, with `L` tokens,
//! `s` bytes per compute-dtype element, hidden width `H`, query width `Q = Hq·D`, key/value
//! width `K = Hk·D`, `G = Hq` gates and a piece of `c = min(L, TOKEN_CHUNK)` tokens:
//!
//! * whole sequence, at the residual adds of the MLP (the largest moment): the caller's `x`,
//!   the mid-layer residual, the f32 copy of `mlp_out` and the new residual (4 × 4H) plus
//!   `mlp_out` itself (sH); before that, during attention: `x`, q/k/v (s(Q + 2K)), the f32
//!   gates (4G) and the attention output (sQ). Also the packed token rows the caller holds
//!   (4 × packed width) and the rope table (4 × 6B).
//! * one piece of the MLP: its norm input (sH), the up projection (sU, U = up width), its f32
//!   copy (4U), the clamped gate (4I) and, in swiglu7 layers, the clamped linear half with its
//!   temporary (8I), and the activation's sigmoid chain (`α·a`, `−`, `exp`, `+1`, `1/x`: 5 ×
//!   4I): 30·I bytes per token in gelu7 layers (I = 4H), 40·I in swiglu7 layers (I ≈ 8H/3).
//!   gelu7 dominates at every real size: 614 KB per token.
//! * one piece of the attention projections: the qkv output and its f32 copy (s + 4)·(Q + 2K
//!   + G), then the q or k norm and rope temporaries (3 × 4Q).
//! * FP8: the per-token quantisation goes through f32 a bounded slice at a time
//!   ([`QUANTISE_TEMPORARY_BYTES`], 36 MiB), and the quantised input (1 byte per element) of
//!   each GEMM.
//!
//! The total is the whole-sequence set plus the largest piece. It counts tensor bytes only; the
//! caching allocator's slack and the CUDA context belong to the memory plan's reserve. At the
//! real width with bf16 compute: about 107 KB per token plus 2.6 GB per piece, so 9.6 GB for
//! the 65,606 tokens of a 5 s 1080p clip, 4.2 GB at 540p (14,662 tokens), 2.9 GB at 256p.

use cadence_kernels::fp8::QUANTISE_TEMPORARY_BYTES;
use candle_core::DType;

use crate::config::{Activation, DitConfig};
use crate::dit::{layer_prefix, LAYERS};
use crate::layer::TOKEN_CHUNK;
use crate::precision::{LoadOptions, WeightFormat};
use crate::weights::{expected_tensors, is_gemm, ROPE_BANDS};

/// Bytes of the temporaries of an FP8 activation quantisation (a bounded slice at a time).
const FP8_QUANTISE_TEMPORARIES: u64 = QUANTISE_TEMPORARY_BYTES as u64;

/// Bytes the model's weights take on its device when loaded with `options`.
pub fn weight_bytes(config: &DitConfig, options: &LoadOptions) -> u64 {
    let split = weight_split(config, options);
    split.non_layer + split.layers + split.rope_bands
}

/// The weights' bytes by part, for placements that hold the layers elsewhere (streaming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightSplit {
    /// Embedders and output heads (f32), which stay on the device.
    pub non_layer: u64,
    /// All transformer layers.
    pub layers: u64,
    /// The largest layer (what a streamed model holds per layer in flight).
    pub largest_layer: u64,
    /// The rope bands (a few numbers the model keeps on the host).
    pub rope_bands: u64,
}

/// [`weight_bytes`] split into the parts [`WeightSplit`] names.
pub fn weight_split(config: &DitConfig, options: &LoadOptions) -> WeightSplit {
    let bytes = |s: &cadence_core::TensorSpec| -> u64 {
        let elements = s.shape.iter().product::<usize>() as u64;
        if !is_gemm(s) {
            return 4 * elements;
        }
        let (rows, cols) = (s.shape[0] as u64, s.shape[1] as u64);
        match options.weights {
            WeightFormat::Dense => rows * cols * options.compute.size_in_bytes() as u64,
            WeightFormat::Fp8 { .. } => rows * (cols.next_multiple_of(16) + 4),
        }
    };
    let specs = expected_tensors(config);
    let of = |keep: &dyn Fn(&str) -> bool| -> u64 {
        specs.iter().filter(|s| keep(&s.name)).map(bytes).sum()
    };
    let layers: Vec<u64> = (0..config.num_layers)
        .map(|i| {
            let prefix = format!("{}.", layer_prefix(i));
            of(&|name: &str| name.starts_with(&prefix))
        })
        .collect();
    let in_layers = format!("{LAYERS}.");
    WeightSplit {
        non_layer: of(&|name: &str| !name.starts_with(&in_layers) && name != ROPE_BANDS),
        layers: layers.iter().sum(),
        largest_layer: layers.iter().copied().max().unwrap_or(0),
        rope_bands: of(&|name: &str| name == ROPE_BANDS),
    }
}

/// The activation memory of one forward pass, split as the module docs describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardMemory {
    /// Tensors spanning the whole sequence (the largest moment of a layer).
    pub sequence: u64,
    /// The largest piece's temporaries.
    pub piece: u64,
}

impl ForwardMemory {
    /// Both together: the forward's peak beside the weights.
    pub fn total(&self) -> u64 {
        self.sequence + self.piece
    }
}

/// Peak activation bytes of one forward over `tokens` tokens (module docs).
pub fn forward_activation_bytes(
    config: &DitConfig,
    tokens: usize,
    options: &LoadOptions,
) -> ForwardMemory {
    let s = options.compute.size_in_bytes() as u64;
    let f32b = DType::F32.size_in_bytes() as u64;
    let l = tokens as u64;
    let h = config.hidden_size as u64;
    let q = (config.num_heads_q() * config.head_dim) as u64;
    let kv = (config.num_heads_kv() * config.head_dim) as u64;
    let g = if config.enable_attn_gating {
        config.num_heads_q() as u64
    } else {
        0
    };
    let fixed = f32b * config.packed_width() as u64 + f32b * 6 * config.rope_bands() as u64;
    let attention = f32b * h + s * (q + 2 * kv) + f32b * g + s * q;
    let mlp_adds = 4 * f32b * h + s * h;
    let sequence = l * (fixed + attention.max(mlp_adds));

    let c = tokens.min(TOKEN_CHUNK) as u64;
    let fp8 = matches!(options.weights, WeightFormat::Fp8 { .. });
    let mlp_piece = (0..config.num_layers)
        .map(|i| {
            let spec = config.layer(i);
            let (u, i_w) = (spec.up_features() as u64, spec.intermediate as u64);
            let linear_half = match spec.activation {
                Activation::Gelu7 => 0,
                Activation::Swiglu7 => 2 * f32b * i_w,
            };
            let quantised = if fp8 { h + i_w } else { 0 };
            s * h + s * u + f32b * u + f32b * i_w + linear_half + 5 * f32b * i_w + quantised
        })
        .max()
        .unwrap_or(0);
    let qkv = q + 2 * kv + g;
    let attention_piece = s * h + (s + f32b) * qkv + 3 * f32b * q + if fp8 { h } else { 0 };
    let piece = c * mlp_piece.max(attention_piece) + if fp8 { FP8_QUANTISE_TEMPORARIES } else { 0 };
    ForwardMemory { sequence, piece }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: f64 = 1e9;

    #[test]
    fn real_weights_in_bf16_and_fp8() {
        let c = DitConfig::base();
        let bf16 = weight_bytes(&c, &LoadOptions::dense(DType::BF16)) as f64;
        let fp8 = weight_bytes(&c, &LoadOptions::fp8(DType::BF16)) as f64;
        // manifest_full.json: bytes_in_module_dtypes (15,277,834,240 bf16 elements and
        // 21,584,912 f32 ones, the rope bands included).
        assert_eq!(bf16 as u64, 30_642_008_128);
        assert!((15.3 * GB..15.4 * GB).contains(&fp8), "{fp8}");
    }

    #[test]
    fn activations_per_resolution() {
        let c = DitConfig::base();
        let bf16 = LoadOptions::dense(DType::BF16);
        let at = |tokens| forward_activation_bytes(&c, tokens, &bf16).total() as f64 / GB;
        // Tokens of a 5 s clip (BENCHMARKS.md): 256p, 540p, 1080p.
        let (p256, p540, p1080) = (at(3_910), at(14_662), at(65_606));
        assert!(p256 < p540 && p540 < p1080);
        assert!((9.0..10.5).contains(&p1080), "1080p {p1080:.2} GB");
        assert!((3.5..5.0).contains(&p540), "540p {p540:.2} GB");
        // Without the pieces the gelu7 MLP alone would hold 614 KB per token.
        let piece = forward_activation_bytes(&c, 65_606, &bf16).piece as f64;
        assert!(piece < 2.7 * GB, "{piece}");
    }
}
