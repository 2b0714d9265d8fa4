//! The work a generation does, counted as it runs: DiT forward passes and their operations
//! (by [`cadence_model::flops`], from the shapes each pass actually saw), and the text
//! encoder's operations. Benchmarks divide these by the stage times.

use std::cell::Cell;
use std::sync::Mutex;

use cadence_core::Result;
use cadence_model::flops::{attended_pairs, forward_flops};
use cadence_model::packing::local_attention_mask;
use cadence_model::packing::TokenLayout;
use cadence_text::{LayerKind, TextEncoderConfig};

use crate::dit_velocity::DitVelocity;
use crate::velocity::{Velocity, VelocityInput, VelocityModel};

use super::placement::{lock, Slot};

/// Operations and sequence length of one forward pass of `dit` on `input`, as
/// [`cadence_model::packing::pack`] lays the tokens out.
fn pass(dit: &DitVelocity, input: &VelocityInput<'_>) -> Result<(u64, usize)> {
    let (_, channels, frames, height, width) = input.video.dims5()?;
    let packing = dit.packing();
    let patch = packing.patch_size;
    let layout = TokenLayout {
        latent_channels: channels,
        frames,
        rows: height / patch,
        cols: width / patch,
        patch,
        audio: input.audio.dim(1)?,
        text: input.text.len,
    };
    let config = dit.model().config();
    let mask = match packing.frame_receptive_field {
        Some(window) if !config.local_attn_layers.is_empty() => {
            Some(local_attention_mask(&layout, window))
        }
        _ => None,
    };
    let flops = forward_flops(config, &layout, mask.as_ref()).total();
    Ok((flops, layout.len()))
}

/// What one denoising stage's DiT passes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DitWork {
    /// Forward passes (two per guided step).
    pub forwards: usize,
    /// Their operations (a multiply-add is 2), by [`cadence_model::flops::forward_flops`].
    pub flops: u64,
    /// The longest sequence a pass saw (video + audio + text tokens; an unconditional pass
    /// carries the negative prompt's text).
    pub tokens: usize,
}

/// A DiT in its placement slot that tallies its passes while the sampler drives it. Each pass
/// computes with the model the slot holds at that moment (a visiting DiT arrives on the device
/// when its stage starts).
pub(super) struct Counted<'d> {
    slot: &'d Mutex<Slot<DitVelocity>>,
    work: Cell<DitWork>,
}

impl<'d> Counted<'d> {
    pub(super) fn new(slot: &'d Mutex<Slot<DitVelocity>>) -> Self {
        Self {
            slot,
            work: Cell::new(DitWork::default()),
        }
    }

    /// The tally so far, and a fresh start (one call per stage).
    pub(super) fn take(&self) -> DitWork {
        self.work.take()
    }

    fn count(&self, dit: &DitVelocity, input: &VelocityInput<'_>) -> Result<()> {
        let (flops, tokens) = pass(dit, input)?;
        let mut w = self.work.get();
        w.forwards += 1;
        w.flops += flops;
        w.tokens = w.tokens.max(tokens);
        self.work.set(w);
        Ok(())
    }
}

impl VelocityModel for Counted<'_> {
    fn velocity(&self, input: &VelocityInput<'_>) -> Result<Velocity> {
        let slot = lock(self.slot);
        self.count(slot.model(), input)?;
        slot.model().velocity(input)
    }

    fn velocity_pair(
        &self,
        cond: &VelocityInput<'_>,
        uncond: &VelocityInput<'_>,
    ) -> Result<(Velocity, Velocity)> {
        let slot = lock(self.slot);
        self.count(slot.model(), cond)?;
        self.count(slot.model(), uncond)?;
        slot.model().velocity_pair(cond, uncond)
    }
}

/// Operations of one text-encoder pass over `tokens` tokens: every linear layer per token, and
/// `QKᵀ` plus `PV` over the query-key pairs each layer lets attend (all pairs in full layers,
/// `|q - k| < sliding_window` in sliding ones). Norms, rope and activations are left out.
pub(super) fn text_encoder_flops(config: &TextEncoderConfig, tokens: usize) -> u64 {
    let (h, m, q, kv) = (
        config.hidden_size as u64,
        config.intermediate_size as u64,
        config.q_width() as u64,
        config.kv_width() as u64,
    );
    // q, k, v and o projections, then gate, up and down.
    let linear_per_token = h * q + 2 * h * kv + q * h + 3 * h * m;
    let attention: u64 = config
        .layer_kinds
        .iter()
        .map(|kind| {
            let pairs = match kind {
                LayerKind::Full => attended_pairs(tokens, None),
                LayerKind::Sliding => sliding_pairs(tokens, config.sliding_window),
            };
            4 * q * pairs
        })
        .sum();
    2 * tokens as u64 * linear_per_token * config.num_layers() as u64 + attention
}

/// Pairs `(p, q)` of `0..len` with `|p - q| < window`.
fn sliding_pairs(len: usize, window: usize) -> u64 {
    (0..len)
        .map(|p| {
            let reach = window.saturating_sub(1);
            (p.min(reach) + (len - 1 - p).min(reach) + 1) as u64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_pairs_count_the_band() {
        // len 4, window 2: each row sees itself and its neighbours: 2 + 3 + 3 + 2.
        assert_eq!(sliding_pairs(4, 2), 10);
        assert_eq!(sliding_pairs(4, 100), 16);
        assert_eq!(sliding_pairs(3, 1), 3);
        assert_eq!(sliding_pairs(0, 3), 0);
    }

    #[test]
    fn text_encoder_operations_are_twice_the_weights_per_token_plus_attention() {
        let c = TextEncoderConfig::t5gemma_9b();
        // The per-token GEMM weights of the real encoder: 42 layers of 198.2M (no embedding).
        let per_token = (text_encoder_flops(&c, 1) - 4 * c.q_width() as u64 * 42) / 2;
        assert_eq!(per_token, 42 * 198_180_864);
        // Below the window every layer attends all pairs.
        let t = 100u64;
        assert_eq!(
            text_encoder_flops(&c, 100),
            2 * t * per_token + 42 * 4 * c.q_width() as u64 * t * t
        );
    }
}
