//! Per-token coordinates that drive the Fourier rope.
//!
//! Each token gets 9 values `(t, h, w, T, H, W, ref_T, ref_H, ref_W)`: its position, the size of
//! its modality's grid, and the reference grid the position is scaled to (see `crate::rope`).
//!
//! | rows  | t, h, w | sizes | refs (v2) | refs (v1) |
//! |-------|---------|-------|-----------|-----------|
//! | video | t, i, j | T, rows, cols | T, rows, cols | T, rows, cols |
//! | audio | a, 0, 0 | A, 1, 1 | (A-1)/4+1, 1, 1 | T, 1, 1 |
//! | text  | v2: k-Lt; v1: k+offset; 0, 0 | Lt, 1, 1 | 1, 1, 1 | 2, 1, 1 |
//!
//! Video spatial refs always equal the sizes (the reference hard-codes its "extra"
//! interpolation).

use super::config::{CoordsStyle, PackingConfig};
use super::layout::TokenLayout;

/// Columns per token.
pub const COLUMNS: usize = 9;

/// Audio latent frames per video latent frame (the VAE's temporal stride), which sets the v2
/// audio time reference `(A-1)/4 + 1`.
const AUDIO_FRAMES_PER_LATENT_FRAME: usize = 4;

/// Row-major `(L, 9)` coordinates for `layout`.
pub fn coords(layout: &TokenLayout, config: &PackingConfig) -> Vec<f32> {
    let mut out = Vec::with_capacity(layout.len() * COLUMNS);
    let (t_size, h_size, w_size) = (layout.frames, layout.rows, layout.cols);
    for t in 0..t_size {
        for i in 0..h_size {
            for j in 0..w_size {
                let grid = [t_size, h_size, w_size].map(|v| v as f32);
                out.extend([t as f32, i as f32, j as f32]);
                out.extend(grid);
                out.extend(grid);
            }
        }
    }
    let audio_ref = match config.coords_style {
        CoordsStyle::V2 => {
            (layout.audio.saturating_sub(1) / AUDIO_FRAMES_PER_LATENT_FRAME + 1) as f32
        }
        CoordsStyle::V1 => t_size as f32,
    };
    for a in 0..layout.audio {
        out.extend([
            a as f32,
            0.,
            0.,
            layout.audio as f32,
            1.,
            1.,
            audio_ref,
            1.,
            1.,
        ]);
    }
    let lt = layout.text as i64;
    for k in 0..lt {
        let (t, text_ref) = match config.coords_style {
            CoordsStyle::V2 => (k - lt, 1.0),
            CoordsStyle::V1 => (k + config.text_offset, 2.0),
        };
        out.extend([t as f32, 0., 0., lt as f32, 1., 1., text_ref, 1., 1.]);
    }
    out
}
