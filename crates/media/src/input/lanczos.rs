//! Pillow's LANCZOS resampling, reproduced bit for bit.
//!
//! The reference pipeline resizes the conditioning image with `PIL.Image.resize(..., LANCZOS)`.
//! No Rust crate matches Pillow exactly (`image`'s and `fast_image_resize`'s Lanczos3 differ by a
//! few levels on 30–45 % of pixels), so this follows Pillow's `Resample.c` algorithm
//! (codecs/SPEC.md §5.1): separable, horizontal pass first with an 8-bit rounded and clipped
//! intermediate, then vertical; per-output weights from `sinc(t)·sinc(t/3)` over a support
//! widened by the downscale factor, normalised, quantised to 22 fractional bits, accumulated in
//! integers with rounding.

/// Fractional bits of the fixed-point weights (Pillow's `PRECISION_BITS` = 32 − 8 − 2).
const PRECISION_BITS: u32 = 22;

/// Lanczos window half-width (a = 3).
const SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    // Pillow's window is half-open: [-3, 3).
    if (-SUPPORT..SUPPORT).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// The taps of one output sample: first input index and fixed-point weights.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// Fixed-point weights mapping `in_size` samples to `out_size` (Pillow `precompute_coeffs` +
/// `normalize_coeffs_8bpc`).
fn coefficients(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = SUPPORT * filter_scale;
    let inv = 1.0 / filter_scale;
    (0..out_size)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            // C's (int) truncates toward zero; negative values are clamped to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> = (xmin..xmax)
                .map(|x| lanczos((x as f64 - center + 0.5) * inv))
                .collect();
            let sum: f64 = raw.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if sum != 0.0 { w / sum } else { w };
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            Taps {
                start: xmin,
                weights,
            }
        })
        .collect()
}

/// Rounds a fixed-point accumulator to a byte (Pillow `clip8`).
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved RGB8 image (`width x height x 3`) to `out_w x out_h`.
pub fn resize_rgb8(rgb: &[u8], width: usize, height: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    // Horizontal pass (skipped when the width does not change: it would be the identity).
    let horizontal = if out_w == width {
        rgb.to_vec()
    } else {
        let taps = coefficients(width, out_w);
        let mut out = vec![0u8; out_w * height * 3];
        for y in 0..height {
            let row = &rgb[y * width * 3..(y + 1) * width * 3];
            let out_row = &mut out[y * out_w * 3..(y + 1) * out_w * 3];
            for (x, t) in taps.iter().enumerate() {
                for c in 0..3 {
                    let mut acc = half;
                    for (k, &w) in t.weights.iter().enumerate() {
                        acc += i64::from(row[(t.start + k) * 3 + c]) * i64::from(w);
                    }
                    out_row[x * 3 + c] = clip8(acc);
                }
            }
        }
        out
    };
    if out_h == height {
        return horizontal;
    }
    // Vertical pass on the 8-bit intermediate.
    let taps = coefficients(height, out_h);
    let stride = out_w * 3;
    let mut out = vec![0u8; out_w * out_h * 3];
    let mut acc = vec![0i64; stride];
    for (y, t) in taps.iter().enumerate() {
        acc.fill(half);
        for (k, &w) in t.weights.iter().enumerate() {
            let src = &horizontal[(t.start + k) * stride..(t.start + k + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(src) {
                *a += i64::from(p) * i64::from(w);
            }
        }
        for (o, &a) in out[y * stride..(y + 1) * stride].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(640, 448), (640, 1920), (362, 1088), (10, 3)] {
            for t in coefficients(i, o) {
                let s: i32 = t.weights.iter().sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= t.weights.len() as i32,
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn flat_image_stays_flat_and_identity_is_exact() {
        let img = vec![77u8; 20 * 10 * 3];
        assert!(resize_rgb8(&img, 20, 10, 7, 13).iter().all(|&v| v == 77));
        let ramp: Vec<u8> = (0..20 * 10 * 3).map(|i| (i % 251) as u8).collect();
        assert_eq!(resize_rgb8(&ramp, 20, 10, 20, 10), ramp);
    }
}
