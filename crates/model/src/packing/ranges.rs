//! Key ranges of the frame-window ("local") attention used by the 1080p super-resolution model.
//!
//! With `tpf` video tokens per latent frame, `Nv` video tokens, `L` tokens and window `f`:
//! - each frame `i`'s queries see video frames `i-f ..= i+f` (clipped to the video segment);
//! - every video query also sees all audio and text;
//! - audio and text queries see everything.
//!
//! The pairs are produced in exactly the reference's order, so they compare row for row with
//! its `q_ranges`/`k_ranges`.

use cadence_kernels::AttentionMask;

use super::layout::TokenLayout;

/// The frame-window attention mask for `layout` with a window of `window` frames per side.
pub fn local_attention_mask(layout: &TokenLayout, window: usize) -> AttentionMask {
    let tpf = layout.tokens_per_frame();
    let nv = layout.video_tokens();
    let len = layout.len();
    let mut pairs = Vec::with_capacity(layout.frames + 2);
    for i in 0..layout.frames {
        let lo = i.saturating_sub(window) * tpf;
        let hi = ((i + window + 1) * tpf).min(nv);
        pairs.push((i * tpf..(i + 1) * tpf, lo.min(nv)..hi));
    }
    pairs.push((0..nv, nv..len));
    pairs.push((nv..len, 0..len));
    AttentionMask::new(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(frames: usize) -> TokenLayout {
        TokenLayout {
            latent_channels: 48,
            frames,
            rows: 1,
            cols: 2,
            patch: 2,
            audio: 3,
            text: 2,
        }
    }

    #[test]
    fn frame_window_clips_to_the_video_segment() {
        let mask = local_attention_mask(&layout(4), 1);
        let pairs = mask.pairs();
        assert_eq!(pairs[0], (0..2, 0..4));
        assert_eq!(pairs[1], (2..4, 0..6));
        assert_eq!(pairs[3], (6..8, 4..8));
        assert_eq!(pairs[4], (0..8, 8..13));
        assert_eq!(pairs[5], (8..13, 0..13));
    }

    #[test]
    fn video_queries_see_their_window_plus_audio_and_text() {
        let l = layout(4);
        let dense = local_attention_mask(&l, 1).dense(l.len());
        let row = |i: usize| -> Vec<bool> { dense[i * 13..(i + 1) * 13].to_vec() };
        // Frame 3 (tokens 6, 7) sees frames 2-3 and all 5 audio/text tokens, not frames 0-1.
        assert_eq!(
            row(6),
            [false, false, false, false, true, true, true, true, true, true, true, true, true]
        );
        assert!(row(9).iter().all(|&b| b), "audio sees everything");
    }
}
