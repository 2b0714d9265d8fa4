//! The prompt path as the pipeline consumes it: text -> tokens -> encoder -> f16 context of a
//! fixed number of rows.
//!
//! After the encoder the reference casts the hidden states to f16 and zero-pads or trims them
//! to [`CONTEXT_ROWS`] rows. `original_len` is the number of rows the DiT reads: the token
//! count when it is below the target, else the target itself (a longer prompt is encoded in
//! full and then cut, with a warning here).

use std::ffi::OsStr;

use candle_core::{DType, Device, Tensor};

use cadence_core::{Error, Result};

use crate::batch::TokenBatch;
use crate::encoder::TextEncoder;
use crate::tokenizer::Tokenizer;

/// Rows of the text context handed to the DiT. The pipeline pads (with zeros) or trims every
/// encoded prompt to this length; the DiT then reads only the first `original_len` rows.
pub const CONTEXT_ROWS: usize = 640;

/// Element type of the context. The reference casts the encoder output (bf16) to f16
/// (`.half()`, round-to-nearest-even) before padding; bf16 -> f16 is exact except for
/// magnitudes above 65504 (inf) or below 6.1e-5 (subnormal rounding).
pub const CONTEXT_DTYPE: DType = DType::F16;

/// An encoded prompt as the pipeline consumes it.
#[derive(Debug, Clone)]
pub struct EncodedPrompt {
    /// `[rows, hidden]` in [`CONTEXT_DTYPE`]; rows past `original_len` are zero.
    pub context: Tensor,
    /// How many leading rows of `context` the DiT reads (`min(tokens, rows)`).
    pub original_len: usize,
    /// Number of tokens the encoder saw (may exceed `original_len`).
    pub token_count: usize,
}

impl EncodedPrompt {
    /// Casts `hidden` (`[L, H]` or `[1, L, H]`, the encoder output of one prompt) to f16 and
    /// pads with zeros or trims to `rows` rows.
    pub fn from_hidden(hidden: &Tensor, rows: usize) -> Result<Self> {
        let hidden = match hidden.rank() {
            2 => hidden.clone(),
            3 if hidden.dim(0)? == 1 => hidden.squeeze(0)?,
            _ => {
                return Err(Error::InvalidInput(format!(
                    "expected the hidden states of one prompt, [L, H] or [1, L, H], got {:?}",
                    hidden.dims()
                )))
            }
        };
        let (len, width) = hidden.dims2()?;
        let kept = len.min(rows);
        let mut context = hidden.narrow(0, 0, kept)?.to_dtype(CONTEXT_DTYPE)?;
        if kept < rows {
            let zeros = Tensor::zeros((rows - kept, width), CONTEXT_DTYPE, hidden.device())?;
            context = Tensor::cat(&[&context, &zeros], 0)?;
        }
        Ok(Self {
            context: context.contiguous()?,
            original_len: kept,
            token_count: len,
        })
    }

    /// Moves the context to `device` (for example from the encoder's CPU to the DiT's GPU).
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            context: self.context.to_device(device)?,
            ..self.clone()
        })
    }

    /// The context as the reference hands it to the DiT: `[1, rows, H]` f32.
    pub fn context_f32(&self) -> Result<Tensor> {
        Ok(self.context.to_dtype(DType::F32)?.unsqueeze(0)?)
    }
}

/// Tokenizer and encoder together: prompt text in, [`EncodedPrompt`] out.
///
/// Dropping it (or taking it apart with [`PromptEncoder::into_parts`] and dropping the encoder)
/// frees the encoder's weights; the prompts it produced own their memory and stay valid.
#[derive(Debug)]
pub struct PromptEncoder {
    tokenizer: Tokenizer,
    encoder: TextEncoder,
    rows: usize,
}

impl PromptEncoder {
    /// Pairs a tokenizer with an encoder, producing [`CONTEXT_ROWS`]-row contexts.
    pub fn new(tokenizer: Tokenizer, encoder: TextEncoder) -> Self {
        Self {
            tokenizer,
            encoder,
            rows: CONTEXT_ROWS,
        }
    }

    /// Produces contexts of `rows` rows instead of [`CONTEXT_ROWS`] (tests, other pipelines).
    pub fn with_context_rows(mut self, rows: usize) -> Self {
        self.rows = rows;
        self
    }

    /// Rows of the contexts produced.
    pub fn context_rows(&self) -> usize {
        self.rows
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn encoder(&self) -> &TextEncoder {
        &self.encoder
    }

    /// The same tokenizer (shared) with `f(encoder)` as the encoder: the same weights moved
    /// elsewhere, for instance.
    pub fn map_encoder(&self, f: impl FnOnce(&TextEncoder) -> Result<TextEncoder>) -> Result<Self> {
        Ok(Self {
            tokenizer: self.tokenizer.clone(),
            encoder: f(&self.encoder)?,
            rows: self.rows,
        })
    }

    /// The same tokenizer with `f(encoder)` as the encoder, consuming this one (the encoder's
    /// memory can be reused on the way).
    pub fn into_map_encoder(
        self,
        f: impl FnOnce(TextEncoder) -> Result<TextEncoder>,
    ) -> Result<Self> {
        Ok(Self {
            encoder: f(self.encoder)?,
            ..self
        })
    }

    /// Takes the pair apart (to drop the encoder and keep the tokenizer, for instance).
    pub fn into_parts(self) -> (Tokenizer, TextEncoder) {
        (self.tokenizer, self.encoder)
    }

    /// The token ids of `prompt`, refusing an empty prompt and warning when the DiT will see
    /// only part of it.
    pub fn tokenize(&self, prompt: &str) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(prompt)?;
        if ids.is_empty() {
            return Err(Error::InvalidInput(
                "the prompt is empty; describe the video to generate".into(),
            ));
        }
        if ids.len() > self.rows {
            tracing::warn!(
                tokens = ids.len(),
                kept = self.rows,
                "the prompt has {} tokens; it is encoded in full but the video model reads only \
                 the first {} (as the reference does); shorten it to use all of it",
                ids.len(),
                self.rows
            );
        }
        Ok(ids)
    }

    /// Encodes one prompt and returns its context on `output_device`.
    pub fn encode(&self, prompt: &str, output_device: &Device) -> Result<EncodedPrompt> {
        let ids = self.tokenize(prompt)?;
        self.encode_ids(ids, output_device)
    }

    /// [`Self::encode`] for a prompt given as raw bytes (a file, stdin); invalid UTF-8 is an
    /// error naming the offending position.
    pub fn encode_bytes(&self, prompt: &[u8], output_device: &Device) -> Result<EncodedPrompt> {
        self.encode(prompt_from_bytes(prompt)?, output_device)
    }

    /// [`Self::encode`] for a prompt given as an OS string (a command-line argument).
    pub fn encode_os_str(&self, prompt: &OsStr, output_device: &Device) -> Result<EncodedPrompt> {
        self.encode(&prompt_from_os_str(prompt)?, output_device)
    }

    /// Encodes already tokenized ids (one prompt) and returns its context on `output_device`.
    pub fn encode_ids(&self, ids: Vec<u32>, output_device: &Device) -> Result<EncodedPrompt> {
        let hidden = self.encoder.forward(&TokenBatch::single(ids))?;
        EncodedPrompt::from_hidden(&hidden, self.rows)?.to_device(output_device)
    }
}

/// The prompt text of raw bytes, or an error saying where the bytes stop being UTF-8.
pub fn prompt_from_bytes(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| {
        Error::InvalidInput(format!(
            "the prompt is not valid UTF-8 (bad byte at offset {}); save it as UTF-8 text",
            e.valid_up_to()
        ))
    })
}

/// The prompt text of an OS string, or an error if it is not valid Unicode.
pub fn prompt_from_os_str(s: &OsStr) -> Result<String> {
    s.to_str().map(str::to_owned).ok_or_else(|| {
        Error::InvalidInput(format!(
            "the prompt {} is not valid Unicode; pass it as UTF-8 text",
            s.to_string_lossy()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden(len: usize) -> Tensor {
        Tensor::arange(1f32, (len * 2 + 1) as f32, &Device::Cpu)
            .unwrap()
            .reshape((1, len, 2))
            .unwrap()
    }

    #[test]
    fn short_prompts_are_zero_padded() {
        let p = EncodedPrompt::from_hidden(&hidden(3), 5).unwrap();
        assert_eq!((p.original_len, p.token_count), (3, 3));
        assert_eq!(p.context.dtype(), CONTEXT_DTYPE);
        let rows = p
            .context
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(rows[2], vec![5.0, 6.0]);
        assert_eq!(rows[3], vec![0.0, 0.0]);
        assert_eq!(p.context_f32().unwrap().dims(), &[1, 5, 2]);
    }

    #[test]
    fn long_prompts_are_trimmed_and_report_the_target_length() {
        let p = EncodedPrompt::from_hidden(&hidden(7), 5).unwrap();
        assert_eq!((p.original_len, p.token_count), (5, 7));
        assert_eq!(p.context.dims(), &[5, 2]);
    }

    #[test]
    fn bad_bytes_are_reported_with_their_offset() {
        let err = prompt_from_bytes(b"caf\xe9 au lait")
            .unwrap_err()
            .to_string();
        assert!(err.contains("offset 3"), "{err}");
        assert_eq!(prompt_from_bytes("café".as_bytes()).unwrap(), "café");
    }

    #[cfg(unix)]
    #[test]
    fn non_unicode_os_strings_are_an_error() {
        use std::os::unix::ffi::OsStrExt;
        let err = prompt_from_os_str(OsStr::from_bytes(b"a\xffb")).unwrap_err();
        assert!(err.to_string().contains("not valid Unicode"));
    }
}
