//! Bidirectional attention masks of the encoder: which key each query may attend to.
//!
//! Nothing is causal. A full layer lets query `p` attend key `q` iff `q` is not padding; a
//! sliding layer additionally requires `|p - q| < window` (symmetric, strict). Each prompt of a
//! batch gets its masks as the kernels' key ranges ([`AttentionMask`]), or none where every
//! key is admissible (the pipeline never pads, and its prompts are shorter than the window).

use candle_core::{Device, Tensor};

use cadence_core::{Error, Result};
use cadence_kernels::AttentionMask;

use crate::config::LayerKind;

/// The masks of one forward pass, one per prompt and layer kind; `None` admits every key.
#[derive(Debug, Clone)]
pub struct AttentionMasks {
    len: usize,
    full: Vec<Option<AttentionMask>>,
    sliding: Vec<Option<AttentionMask>>,
}

impl AttentionMasks {
    /// Builds both masks from per-row padding masks (`valid[b][q]` = key `q` of row `b` is a real
    /// token), all rows of the same length `L`.
    pub fn new(valid: &[Vec<bool>], window: usize) -> Result<Self> {
        let len = valid.first().map_or(0, Vec::len);
        if valid.iter().any(|row| row.len() != len) {
            return Err(Error::InvalidInput(
                "attention mask rows differ in length".into(),
            ));
        }
        let mut full = Vec::with_capacity(valid.len());
        let mut sliding = Vec::with_capacity(valid.len());
        for row in valid {
            let runs = valid_runs(row);
            let everything = runs.len() == 1 && runs[0] == (0..len);
            full.push(
                (!everything).then(|| {
                    AttentionMask::new(runs.iter().map(|r| (0..len, r.clone())).collect())
                }),
            );
            sliding.push((!everything || window < len).then(|| {
                let mut pairs = Vec::new();
                for p in 0..len {
                    let near = (p + 1).saturating_sub(window)..(p + window).min(len);
                    for r in &runs {
                        let keys = near.start.max(r.start)..near.end.min(r.end);
                        if !keys.is_empty() {
                            pairs.push((p..p + 1, keys));
                        }
                    }
                }
                AttentionMask::new(pairs)
            }));
        }
        Ok(Self { len, full, sliding })
    }

    /// The masks of a layer of the given kind, one per prompt.
    pub fn for_layer(&self, kind: LayerKind) -> &[Option<AttentionMask>] {
        match kind {
            LayerKind::Full => &self.full,
            LayerKind::Sliding => &self.sliding,
        }
    }

    /// A layer kind's masks as one dense `u8` tensor `[B, L, L]` (1 = may attend), the form
    /// the reference records.
    pub fn dense(&self, kind: LayerKind, device: &Device) -> Result<Tensor> {
        let rows = self.for_layer(kind);
        let mut dense = Vec::with_capacity(rows.len() * self.len * self.len);
        for mask in rows {
            match mask {
                Some(m) => dense.extend(m.dense(self.len).into_iter().map(u8::from)),
                None => dense.extend(std::iter::repeat_n(1u8, self.len * self.len)),
            }
        }
        Ok(Tensor::from_vec(
            dense,
            (rows.len(), self.len, self.len),
            device,
        )?)
    }
}

/// The maximal runs of real (non-padding) keys.
fn valid_runs(row: &[bool]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = None;
    for (q, &real) in row.iter().chain([&false]).enumerate() {
        match (start, real) {
            (None, true) => start = Some(q),
            (Some(s), false) => {
                runs.push(s..q);
                start = None;
            }
            _ => {}
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(m: &AttentionMasks, kind: LayerKind) -> Vec<Vec<u8>> {
        m.dense(kind, &Device::Cpu)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec2::<u8>()
            .unwrap()
    }

    #[test]
    fn sliding_window_is_symmetric_strict_and_skips_padding() {
        let valid = vec![vec![true, true, true, true, false]];
        let m = AttentionMasks::new(&valid, 2).unwrap();
        let s = dense(&m, LayerKind::Sliding);
        assert_eq!(s[2], vec![0, 1, 1, 1, 0]);
        assert_eq!(s[0], vec![1, 1, 0, 0, 0]);
        assert_eq!(s[4], vec![0, 0, 0, 1, 0]);
        let f = dense(&m, LayerKind::Full);
        assert_eq!(f[0], vec![1, 1, 1, 1, 0]);
    }

    #[test]
    fn unpadded_prompts_within_the_window_need_no_mask() {
        let m = AttentionMasks::new(&[vec![true; 4]], 4).unwrap();
        assert!(m.for_layer(LayerKind::Full)[0].is_none());
        assert!(m.for_layer(LayerKind::Sliding)[0].is_none());
        let m = AttentionMasks::new(&[vec![true; 4]], 3).unwrap();
        assert!(m.for_layer(LayerKind::Sliding)[0].is_some());
        assert_eq!(dense(&m, LayerKind::Sliding)[0], vec![1, 1, 1, 0]);
    }

    #[test]
    fn padding_anywhere_splits_the_keys() {
        let valid = vec![vec![false, true, true, false, true]];
        let m = AttentionMasks::new(&valid, 8).unwrap();
        assert_eq!(dense(&m, LayerKind::Full)[3], vec![0, 1, 1, 0, 1]);
        assert_eq!(dense(&m, LayerKind::Sliding)[0], vec![0, 1, 1, 0, 1]);
    }
}
