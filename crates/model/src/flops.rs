//! Floating-point operation counts of a forward pass, for benchmarks and the compute floor.
//!
//! A multiply-add counts as 2 operations. GEMMs: every token runs its own expert's linears in
//! every layer. Attention: `QKᵀ` and `PV` each cost `2·head_dim` per (query, visible key, query
//! head); the softmax, norms, rope and activations are a few operations per element and are
//! left out (under 1 % of the total at every size).

use cadence_kernels::AttentionMask;

use crate::config::DitConfig;
use crate::packing::TokenLayout;

/// Operations of one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardFlops {
    /// Linear layers of the transformer block, the embedders and the output heads.
    pub gemm: u64,
    /// The attention products of every layer.
    pub attention: u64,
}

impl ForwardFlops {
    /// Both together.
    pub fn total(&self) -> u64 {
        self.gemm + self.attention
    }
}

/// GEMM weights one token multiplies in the transformer block (one expert per sandwich layer).
pub fn block_params_per_token(config: &DitConfig) -> u64 {
    let hid = config.hidden_size as u64;
    let q_width = (config.num_heads_q() * config.head_dim) as u64;
    (0..config.num_layers)
        .map(|i| {
            let l = config.layer(i);
            hid * config.qkv_features() as u64
                + q_width * hid
                + hid * l.up_features() as u64
                + l.intermediate as u64 * hid
        })
        .sum()
}

/// Query-key pairs a layer evaluates: all `L²`, or those the mask allows.
pub fn attended_pairs(len: usize, mask: Option<&AttentionMask>) -> u64 {
    match mask {
        None => (len as u64).pow(2),
        Some(m) => m
            .pairs()
            .iter()
            .map(|(q, k)| (q.len() * k.len()) as u64)
            .sum(),
    }
}

/// Operations of one forward pass over `layout`; `local_mask` applies to the local-attention
/// layers only.
pub fn forward_flops(
    config: &DitConfig,
    layout: &TokenLayout,
    local_mask: Option<&AttentionMask>,
) -> ForwardFlops {
    let len = layout.len();
    let hid = config.hidden_size as u64;
    let embed = layout.video_tokens() as u64 * config.video_in_channels as u64
        + layout.audio as u64 * config.audio_in_channels as u64
        + layout.text as u64 * config.text_in_channels as u64;
    let heads = layout.video_tokens() as u64 * config.video_in_channels as u64
        + layout.audio as u64 * config.audio_in_channels as u64;
    let gemm = 2 * (len as u64 * block_params_per_token(config) + hid * (embed + heads));
    let per_pair = 4 * (config.head_dim * config.num_heads_q()) as u64;
    let attention = (0..config.num_layers)
        .map(|i| {
            let mask = if config.layer(i).local_attn {
                local_mask
            } else {
                None
            };
            per_pair * attended_pairs(len, mask)
        })
        .sum();
    ForwardFlops { gemm, attention }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packing::local_attention_mask;

    #[test]
    fn active_parameters_match_the_model_card() {
        // manifest_full.json: block_active_parameters_per_token, which also counts each
        // layer's two pre-norms and q/k norms (one expert).
        let c = DitConfig::base();
        let norms = (c.num_layers * (2 * c.hidden_size + 2 * c.head_dim)) as u64;
        assert_eq!(block_params_per_token(&c) + norms, 10_913_064_960);
    }

    #[test]
    fn local_attention_counts_only_visible_pairs() {
        let layout = TokenLayout {
            latent_channels: 48,
            frames: 4,
            rows: 1,
            cols: 2,
            patch: 2,
            audio: 3,
            text: 2,
        };
        let mask = local_attention_mask(&layout, 1);
        // Video rows (2 per frame): frames 0 and 3 see 2 frames (4 keys), frames 1 and 2 see 3
        // (6 keys), and every video row sees the 5 audio/text keys; audio/text rows see all 13.
        let video = 2 * (4 + 6 + 6 + 4) + 8 * 5;
        assert_eq!(
            attended_pairs(layout.len(), Some(&mask)),
            (video + 5 * 13) as u64
        );
        assert_eq!(attended_pairs(layout.len(), None), 169);
    }
}
