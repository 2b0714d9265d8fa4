//! Token ids ready for the encoder: one or more rows of equal length with a padding mask.

use candle_core::{DType, Tensor};

use cadence_core::{Error, Result};

/// Rows of token ids, right-padded to a common length, with the mask of real tokens.
///
/// The pipeline always encodes one prompt at a time (no padding); batches exist to compare with
/// the reference's padded batches and for callers that want to amortise a forward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// `ids[b][p]`, all rows of the same length.
    pub ids: Vec<Vec<u32>>,
    /// `valid[b][p]`: whether position `p` of row `b` is a real token (false = padding).
    pub valid: Vec<Vec<bool>>,
}

impl TokenBatch {
    /// One unpadded row, as the pipeline encodes a prompt.
    pub fn single(ids: Vec<u32>) -> Self {
        let valid = vec![true; ids.len()];
        Self {
            ids: vec![ids],
            valid: vec![valid],
        }
    }

    /// Rows of any lengths, right-padded with `pad_id` to the longest.
    pub fn right_padded(rows: Vec<Vec<u32>>, pad_id: u32) -> Self {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let valid = rows
            .iter()
            .map(|r| (0..len).map(|p| p < r.len()).collect())
            .collect();
        let ids = rows
            .into_iter()
            .map(|mut r| {
                r.resize(len, pad_id);
                r
            })
            .collect();
        Self { ids, valid }
    }

    /// Reads `input_ids` and `attention_mask` tensors of shape `[B, L]` (any integer dtype, as
    /// transformers produces them; mask 1 = real token).
    pub fn from_tensors(input_ids: &Tensor, attention_mask: &Tensor) -> Result<Self> {
        if input_ids.dims() != attention_mask.dims() || input_ids.rank() != 2 {
            return Err(Error::InvalidInput(format!(
                "input_ids {:?} and attention_mask {:?} must both be [batch, length]",
                input_ids.dims(),
                attention_mask.dims()
            )));
        }
        let ids = input_ids.to_dtype(DType::I64)?.to_vec2::<i64>()?;
        let mask = attention_mask.to_dtype(DType::I64)?.to_vec2::<i64>()?;
        let ids = ids
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|id| {
                        u32::try_from(id).map_err(|_| {
                            Error::InvalidInput(format!("token id {id} is not a valid id"))
                        })
                    })
                    .collect::<Result<Vec<u32>>>()
            })
            .collect::<Result<_>>()?;
        let valid = mask
            .into_iter()
            .map(|row| row.into_iter().map(|m| m != 0).collect())
            .collect();
        Ok(Self { ids, valid })
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.ids.len()
    }

    /// Common row length.
    pub fn len(&self) -> usize {
        self.ids.first().map_or(0, Vec::len)
    }

    /// Whether the batch holds no token at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the shape invariants and that every id is below `vocab_size`.
    pub fn validate(&self, vocab_size: usize) -> Result<()> {
        if self.ids.is_empty() || self.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to encode: the prompt has no tokens (is it empty?)".into(),
            ));
        }
        let len = self.len();
        if self.ids.len() != self.valid.len()
            || self.ids.iter().any(|r| r.len() != len)
            || self.valid.iter().any(|r| r.len() != len)
        {
            return Err(Error::InvalidInput(
                "token batch rows and masks must all have the same length".into(),
            ));
        }
        if let Some(&id) = self
            .ids
            .iter()
            .flatten()
            .find(|&&id| id as usize >= vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {id} is outside the encoder's vocabulary of {vocab_size}; \
                 does the tokenizer belong to this checkpoint?"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_padding_marks_padding_invalid() {
        let b = TokenBatch::right_padded(vec![vec![5, 6, 7], vec![8]], 0);
        assert_eq!(b.ids, vec![vec![5, 6, 7], vec![8, 0, 0]]);
        assert_eq!(b.valid[1], vec![true, false, false]);
        assert!(b.validate(9).is_ok());
        assert!(b
            .validate(8)
            .unwrap_err()
            .to_string()
            .contains("vocabulary"));
        assert!(TokenBatch::single(vec![]).validate(9).is_err());
    }
}
