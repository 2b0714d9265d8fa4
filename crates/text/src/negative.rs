//! The fixed negative (null) prompt of classifier-free guidance.
//!
//! The reference builds this English text once and encodes it through the same prompt path as
//! user prompts; its context is the unconditional branch of every guided step. The text is the
//! reference's data, shipped verbatim (1719 bytes, no trailing newline). Its encoding is cached
//! on disk by [`crate::NegativePromptCache`].

use candle_core::{DType, Device};

use cadence_core::Result;

use crate::attention::AttentionMode;
use crate::cache::{CacheKey, NegativePromptCache, WeightsIdentity};
use crate::prompt::{EncodedPrompt, PromptEncoder};
use crate::tokenizer::Tokenizer;

/// The negative prompt, verbatim.
pub const NEGATIVE_PROMPT: &str = include_str!("../data/negative_prompt.txt");

/// The cache key of the negative prompt's context, computable before the encoder is loaded
/// (`identity` from [`WeightsIdentity::of_checkpoint`]), so a cache hit skips loading it.
pub fn negative_prompt_key(
    tokenizer: &Tokenizer,
    identity: &WeightsIdentity,
    dtype: DType,
    mode: AttentionMode,
    rows: usize,
) -> Result<CacheKey> {
    let ids = tokenizer.encode(NEGATIVE_PROMPT)?;
    Ok(CacheKey::new(identity, dtype, mode, rows, &ids))
}

impl PromptEncoder {
    /// The context of [`NEGATIVE_PROMPT`] on `output_device`: read from `cache` when it holds
    /// this encoder's result, else encoded (and stored there).
    pub fn encode_negative(
        &self,
        cache: Option<&NegativePromptCache>,
        output_device: &Device,
    ) -> Result<EncodedPrompt> {
        let encode = || self.encode(NEGATIVE_PROMPT, output_device);
        let Some(cache) = cache else {
            return encode();
        };
        let enc = self.encoder();
        let key = negative_prompt_key(
            self.tokenizer(),
            enc.identity(),
            enc.dtype(),
            enc.attention_mode(),
            self.context_rows(),
        )?;
        cache.get_or_encode(&key, output_device, encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_text_is_the_reference_text() {
        assert_eq!(NEGATIVE_PROMPT.len(), 1719);
        assert!(NEGATIVE_PROMPT.starts_with("Bright tones, overexposed"));
        assert!(!NEGATIVE_PROMPT.ends_with('\n'));
    }
}
