//! The Fourier rope table: per-token sin/cos of scaled positions.
//!
//! For each token and axis (t, h, w): `scale = (ref - 1)/(size - 1)` (forced to 1 when both are
//! 1), `centre = (size - 1)/2` for h and w but 0 for time, and
//! `angle[b] = ((p - centre) · scale) · band[b]` in f32, with `band[b] = 1/10000^(b/B)` and
//! `B = head_dim/8`. The row is `[sin t | sin h | sin w | cos t | cos h | cos w]`, `B` each. It is
//! applied to q and k by [`cadence_kernels::rope::apply_rope`].

use candle_core::{Device, Tensor};

use cadence_core::{Error, Result};

use crate::packing::COORD_COLUMNS;

/// Base of the geometric frequency ladder.
const TEMPERATURE: f32 = 10000.0;

/// The default bands `1/10000^(b/B)` for `b < B`, computed in f32 as the reference does.
pub fn default_bands(num_bands: usize) -> Vec<f32> {
    (0..num_bands)
        .map(|b| 1.0 / TEMPERATURE.powf(b as f32 / num_bands as f32))
        .collect()
}

/// The `(L, 6B)` rope table for `(L, 9)` coordinates (row-major) and `B` bands, on `device`.
pub fn rope_table(coords: &[f32], bands: &[f32], device: &Device) -> Result<Tensor> {
    if !coords.len().is_multiple_of(COORD_COLUMNS) {
        return Err(Error::InvalidInput(format!(
            "coordinates hold {} values, not a multiple of {COORD_COLUMNS}",
            coords.len()
        )));
    }
    let b = bands.len();
    let tokens = coords.len() / COORD_COLUMNS;
    let mut table = vec![0f32; tokens * 6 * b];
    for (n, (c, row)) in coords
        .chunks_exact(COORD_COLUMNS)
        .zip(table.chunks_exact_mut(6 * b))
        .enumerate()
    {
        for axis in 0..3 {
            let (p, size, reference) = (c[axis], c[3 + axis], c[6 + axis]);
            let scale = if size == 1.0 && reference == 1.0 {
                1.0
            } else {
                (reference - 1.0) / (size - 1.0)
            };
            if !scale.is_finite() {
                return Err(Error::InvalidInput(format!(
                    "token {n}: rope scale (ref {reference} - 1)/(size {size} - 1) is not finite"
                )));
            }
            let centre = if axis == 0 { 0.0 } else { (size - 1.0) / 2.0 };
            let pos = (p - centre) * scale;
            for (k, &band) in bands.iter().enumerate() {
                let angle = pos * band;
                row[axis * b + k] = angle.sin();
                row[(3 + axis) * b + k] = angle.cos();
            }
        }
    }
    Ok(Tensor::from_vec(table, (tokens, 6 * b), device)?)
}
