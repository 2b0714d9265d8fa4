//! The block-sparse schedule of the model's own frame-window mask (`local_attention_mask` of
//! cadence-model), at a small layout checked tile by tile against the dense mask, and at the
//! 1080p super-resolution layout checked against the arithmetic of kernels/ATTENTION_NOTES.md.

use cadence_kernels::attention::schedule::TileSchedule;
use cadence_model::packing::local_attention_mask;
use cadence_model::packing::TokenLayout;

/// A layout with a token grid of `rows` x `cols` per frame.
fn layout(frames: usize, rows: usize, cols: usize, audio: usize, text: usize) -> TokenLayout {
    TokenLayout {
        latent_channels: 48,
        frames,
        rows,
        cols,
        patch: 2,
        audio,
        text,
    }
}

#[test]
fn small_layout_tiles_match_the_dense_mask() {
    // 6 frames of 3 x 5 = 15 tokens, 9 audio, 4 text, window 1; tiles that straddle frames.
    let l = layout(6, 3, 5, 9, 4);
    let len = l.len();
    let mask = local_attention_mask(&l, 1);
    let dense = mask.dense(len);
    for (bq, bk) in [(8, 8), (16, 8), (8, 32)] {
        let s = TileSchedule::build(Some(&mask), len, bq, bk).unwrap();
        let mut visited = vec![None; s.query_tiles() * len.div_ceil(bk)];
        for t in 0..s.query_tiles() {
            for span in s.spans_of(t) {
                for j in span.tiles() {
                    visited[t * len.div_ceil(bk) + j] = Some(span.is_full());
                }
            }
        }
        for t in 0..s.query_tiles() {
            for j in 0..len.div_ceil(bk) {
                let (mut any, mut all) = (false, true);
                for q in t * bq..(t + 1) * bq {
                    for k in j * bk..(j + 1) * bk {
                        let on = q < len && k < len && dense[q * len + k];
                        any |= on;
                        all &= on;
                    }
                }
                let want = any.then_some(all);
                assert_eq!(visited[t * len.div_ceil(bk) + j], want, "tile ({t}, {j})");
            }
        }
        let allowed = dense.iter().filter(|&&b| b).count() as u64;
        assert_eq!(s.allowed_pairs(), allowed, "tiles {bq}x{bk}");
    }
}

/// 1920x1088 video, 5 s: latent 120 x 68 x 26 frames, patch 2 -> 60 x 34 = 2040 tokens per
/// frame, 53 040 video tokens, 126 audio and 100 text tokens: L = 53 266. Window f = 11.
#[test]
fn sr_1080p_layout_visits_the_tiles_the_notes_count() {
    let l = layout(26, 34, 60, 126, 100);
    assert_eq!((l.tokens_per_frame(), l.len()), (2040, 53_266));
    let mask = local_attention_mask(&l, 11);

    // Allowed pairs: frame i's 2040 queries see (frames in its window) x 2040 + 226 keys;
    // the 226 audio/text queries see all 53 266 (ATTENTION_NOTES.md, "1080p local pattern").
    let window = |i: usize| (i + 11).min(25) + 1 - i.saturating_sub(11);
    let allowed: u64 = (0..26)
        .map(|i| 2040 * (window(i) as u64 * 2040 + 226))
        .sum::<u64>()
        + 226 * 53_266;
    assert_eq!(allowed, 1_963_330_756);

    // The wgmma kernel's 128 x 128 tiles: 121 149 of 417 x 417 = 173 889 visited (69.7 %).
    let s = TileSchedule::build(Some(&mask), l.len(), 128, 128).unwrap();
    assert_eq!(s.query_tiles(), 417);
    assert_eq!(s.allowed_pairs(), allowed);
    assert_eq!(s.visited_tiles(), 121_149);
    // Of those, 2 141 need masking: window edges, tiles straddling two frames, the
    // audio/text boundary and the ragged last tile (L = 416 x 128 + 18).
    assert_eq!(s.partial_tiles(), 2_141);
    // The mma.sync kernel's 128 x 64 tiles: 241 659 of 417 x 833.
    let s = TileSchedule::build(Some(&mask), l.len(), 128, 64).unwrap();
    assert_eq!(s.allowed_pairs(), allowed);
    assert_eq!(s.visited_tiles(), 241_659);
    assert_eq!(s.partial_tiles(), 3_178);
}
