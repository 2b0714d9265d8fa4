//! Modality ids and the contiguous spans each modality occupies.
//!
//! Every per-token op of a sandwich layer picks the weights of the token's modality ("expert").
//! The reference sorts tokens by modality id, runs experts on the groups and undoes the sort.
//! Packed sequences are already grouped (video, audio, text), so the model keeps the original
//! order and dispatches experts over contiguous spans; [`grouping_permutation`] exists for
//! callers that assemble sequences in another order.

use std::ops::Range;

use cadence_core::{Error, Result};

/// The three token modalities, numbered as the reference numbers them (and as experts are
/// stacked in sandwich-layer weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Modality {
    /// Video latent patches (id 0).
    Video = 0,
    /// Audio latent frames (id 1).
    Audio = 1,
    /// Text-encoder rows (id 2).
    Text = 2,
}

impl Modality {
    /// All modalities in id order.
    pub const ALL: [Modality; 3] = [Modality::Video, Modality::Audio, Modality::Text];

    /// The reference's integer id.
    pub fn id(self) -> usize {
        self as usize
    }
}

/// Contiguous token ranges of video, audio and text, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModalitySpans {
    counts: [usize; 3],
}

impl ModalitySpans {
    /// Spans from the token count of each modality (video, audio, text).
    pub fn new(counts: [usize; 3]) -> Self {
        Self { counts }
    }

    /// Spans of a sequence given its per-token ids; fails unless the ids are grouped in
    /// ascending order (use [`grouping_permutation`] first otherwise).
    pub fn from_ids(ids: &[u8]) -> Result<Self> {
        if let Some(i) = ids.windows(2).position(|w| w[0] > w[1]) {
            return Err(Error::InvalidInput(format!(
                "modality ids are not grouped: token {} has id {} after id {}",
                i + 1,
                ids[i + 1],
                ids[i]
            )));
        }
        let mut counts = [0usize; 3];
        for &id in ids {
            let slot = counts
                .get_mut(id as usize)
                .ok_or_else(|| Error::InvalidInput(format!("modality id {id} is not 0, 1 or 2")))?;
            *slot += 1;
        }
        Ok(Self { counts })
    }

    /// Token range of `m`.
    pub fn range(&self, m: Modality) -> Range<usize> {
        let start: usize = self.counts[..m.id()].iter().sum();
        start..start + self.counts[m.id()]
    }

    /// Token count of `m`.
    pub fn count(&self, m: Modality) -> usize {
        self.counts[m.id()]
    }

    /// Total tokens.
    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The spans of the tokens `range` (a piece of the sequence processed on its own): each
    /// modality's count inside the range.
    pub fn slice(&self, range: Range<usize>) -> Self {
        let mut counts = [0usize; 3];
        for m in Modality::ALL {
            let r = self.range(m);
            counts[m.id()] = r
                .end
                .min(range.end)
                .saturating_sub(r.start.max(range.start));
        }
        Self { counts }
    }

    /// Per-token modality ids.
    pub fn ids(&self) -> Vec<u8> {
        Modality::ALL
            .iter()
            .flat_map(|&m| std::iter::repeat_n(m.id() as u8, self.count(m)))
            .collect()
    }
}

/// A stable sort of tokens by modality id: `order[i]` is the original index of the token at
/// grouped position `i`; `inverse` undoes it. Identity for packed sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// Original index of each grouped position.
    pub order: Vec<usize>,
    /// Grouped position of each original index.
    pub inverse: Vec<usize>,
}

/// Groups tokens by modality id, keeping the original order within a modality.
pub fn grouping_permutation(ids: &[u8]) -> Grouping {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i]);
    let mut inverse = vec![0; ids.len()];
    for (pos, &orig) in order.iter().enumerate() {
        inverse[orig] = pos;
    }
    Grouping { order, inverse }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_ids_round_trip() {
        let spans = ModalitySpans::new([4, 2, 3]);
        assert_eq!(spans.range(Modality::Audio), 4..6);
        assert_eq!(spans.range(Modality::Text), 6..9);
        assert_eq!(ModalitySpans::from_ids(&spans.ids()).unwrap(), spans);
        assert_eq!(spans.slice(3..7), ModalitySpans::new([1, 2, 1]));
        assert_eq!(spans.slice(0..9), spans);
        assert_eq!(spans.slice(5..5), ModalitySpans::new([0, 0, 0]));
    }

    #[test]
    fn ungrouped_ids_are_rejected_with_the_position() {
        let err = ModalitySpans::from_ids(&[0, 2, 1]).unwrap_err().to_string();
        assert!(err.contains("token 2"), "{err}");
        assert!(ModalitySpans::from_ids(&[0, 3]).is_err());
    }

    #[test]
    fn grouping_is_stable_and_invertible() {
        let ids = [2, 0, 1, 0, 2, 1];
        let g = grouping_permutation(&ids);
        assert_eq!(g.order, vec![1, 3, 2, 5, 0, 4]);
        let grouped: Vec<u8> = g.order.iter().map(|&i| ids[i]).collect();
        assert_eq!(grouped, vec![0, 0, 1, 1, 2, 2]);
        for (orig, &pos) in g.inverse.iter().enumerate() {
            assert_eq!(g.order[pos], orig);
        }
        assert_eq!(grouping_permutation(&[0, 0, 1, 2]).order, vec![0, 1, 2, 3]);
    }
}
