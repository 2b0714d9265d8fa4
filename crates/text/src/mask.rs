//! Bidirectional attention masks of the encoder: which key each query may attend to.
//!
//! Nothing is causal. A full layer lets query `p` attend key `q` iff `q` is not padding; a
//! sliding layer additionally requires `|p - q| < window` (symmetric, strict). The masks are
//! `u8` (1 = may attend) of shape `[B, L, L]`; they are small, built on the host from the
//! padding mask and copied to the device once per forward.

use candle_core::{Device, Tensor};

use cadence_core::{Error, Result};

use crate::config::LayerKind;

/// The two masks one forward pass needs.
#[derive(Debug, Clone)]
pub struct AttentionMasks {
    /// Mask of the full-attention layers.
    pub full: Tensor,
    /// Mask of the sliding-window layers.
    pub sliding: Tensor,
}

impl AttentionMasks {
    /// Builds both masks from per-row padding masks (`valid[b][q]` = key `q` of row `b` is a real
    /// token), all rows of the same length `L`.
    pub fn new(valid: &[Vec<bool>], window: usize, device: &Device) -> Result<Self> {
        let b = valid.len();
        let l = valid.first().map_or(0, Vec::len);
        if valid.iter().any(|row| row.len() != l) {
            return Err(Error::InvalidInput(
                "attention mask rows differ in length".into(),
            ));
        }
        let mut full = Vec::with_capacity(b * l * l);
        let mut sliding = Vec::with_capacity(b * l * l);
        for row in valid {
            for p in 0..l {
                for (q, &key_valid) in row.iter().enumerate() {
                    full.push(u8::from(key_valid));
                    sliding.push(u8::from(key_valid && p.abs_diff(q) < window));
                }
            }
        }
        Ok(Self {
            full: Tensor::from_vec(full, (b, l, l), device)?,
            sliding: Tensor::from_vec(sliding, (b, l, l), device)?,
        })
    }

    /// The mask of a layer of the given kind.
    pub fn for_layer(&self, kind: LayerKind) -> &Tensor {
        match kind {
            LayerKind::Full => &self.full,
            LayerKind::Sliding => &self.sliding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_is_symmetric_strict_and_skips_padding() {
        let valid = vec![vec![true, true, true, true, false]];
        let m = AttentionMasks::new(&valid, 2, &Device::Cpu).unwrap();
        let s = m.sliding.get(0).unwrap().to_vec2::<u8>().unwrap();
        assert_eq!(s[2], vec![0, 1, 1, 1, 0]);
        assert_eq!(s[0], vec![1, 1, 0, 0, 0]);
        assert_eq!(s[4], vec![0, 0, 0, 1, 0]);
        let f = m.full.get(0).unwrap().to_vec2::<u8>().unwrap();
        assert_eq!(f[0], vec![1, 1, 1, 1, 0]);
    }
}
