//! The prompt tokenizer, loaded from the checkpoint's `tokenizer.json` with Hugging Face's
//! `tokenizers` crate, adding special tokens the way the reference's Python class does.
//!
//! The trap: transformers' `GemmaTokenizerFast` ignores the post-processor stored in
//! `tokenizer.json` (which prepends `<bos>`) and rebuilds it from `tokenizer_config.json`'s
//! `add_bos_token` / `add_eos_token`. T5Gemma's config sets both to false, so the encoder sees
//! the bare token sequence. [`Tokenizer::encode`] reproduces that: it encodes without the stored
//! template and adds `<bos>`/`<eos>` only as the flags say.

use std::path::Path;

use serde_json::Value;

use cadence_core::{Error, Result};

use crate::batch::TokenBatch;

/// File name of the tokenizer model inside a checkpoint folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// File name of the tokenizer flags beside it.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The prompt tokenizer. Cloning shares the vocabulary (256k entries for T5Gemma).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: std::sync::Arc<tokenizers::Tokenizer>,
    bos: Option<u32>,
    eos: Option<u32>,
    pad_id: u32,
}

impl Tokenizer {
    /// Loads `tokenizer.json` and the flags of `tokenizer_config.json` from a folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join(TOKENIZER_FILE))
    }

    /// Loads a `tokenizer.json`; the flags come from a `tokenizer_config.json` beside it. When
    /// there is none, T5Gemma's flags are assumed (no `<bos>`, no `<eos>`, `<pad>` padding).
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::checkpoint(path, format!("not a readable tokenizer.json: {e}")))?;
        Self::with_flags(inner, path)
    }

    /// A tokenizer from the text of a `tokenizer.json`, with T5Gemma's flags (no `<bos>`, no
    /// `<eos>`, `<pad>` padding). Used for the embedded demo model.
    pub fn from_json(json: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(json.as_bytes())
            .map_err(|e| Error::InvalidInput(format!("not a valid tokenizer.json: {e}")))?;
        Self::with_flags(inner, Path::new(TOKENIZER_FILE))
    }

    /// Reads the special-token flags from the `tokenizer_config.json` beside `path`, or
    /// assumes T5Gemma's.
    fn with_flags(inner: tokenizers::Tokenizer, path: &Path) -> Result<Self> {
        let config_path = path.with_file_name(TOKENIZER_CONFIG_FILE);
        let flags = if config_path.is_file() {
            let value: Value = cadence_core::error::read_json(&config_path)?;
            SpecialTokenFlags::from_config(&value)
        } else {
            tracing::info!(
                "no {TOKENIZER_CONFIG_FILE} beside {}; using T5Gemma's flags (no <bos>/<eos>)",
                path.display()
            );
            SpecialTokenFlags::t5gemma()
        };
        let id = |token: &str, what: &str| {
            inner.token_to_id(token).ok_or_else(|| {
                Error::checkpoint(
                    path,
                    format!("{what} token {token:?} is not in the vocabulary"),
                )
            })
        };
        Ok(Self {
            bos: flags.add_bos.then(|| id(&flags.bos, "bos")).transpose()?,
            eos: flags.add_eos.then(|| id(&flags.eos, "eos")).transpose()?,
            pad_id: id(&flags.pad, "pad")?,
            inner: std::sync::Arc::new(inner),
        })
    }

    /// The ids the encoder receives for `text`: the tokens, plus `<bos>`/`<eos>` where the
    /// flags ask for them (never, for T5Gemma). No truncation and no padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::InvalidInput(format!("cannot tokenize the prompt: {e}")))?;
        let mut ids = Vec::with_capacity(encoding.len() + 2);
        ids.extend(self.bos);
        ids.extend_from_slice(encoding.get_ids());
        ids.extend(self.eos);
        Ok(ids)
    }

    /// Encodes several texts and right-pads them with `<pad>` to a common length.
    pub fn encode_padded(&self, texts: &[&str]) -> Result<TokenBatch> {
        let rows = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(TokenBatch::right_padded(rows, self.pad_id))
    }

    /// The text of `ids` (special tokens kept, byte tokens fused, `▁` as spaces).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::InvalidInput(format!("cannot decode token ids: {e}")))
    }

    /// Id of the padding token.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The underlying `tokenizers` object (with `tokenizer.json`'s own post-processor).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// What `tokenizer_config.json` says about special tokens.
struct SpecialTokenFlags {
    add_bos: bool,
    add_eos: bool,
    bos: String,
    eos: String,
    pad: String,
}

impl SpecialTokenFlags {
    /// The flags of the real T5Gemma tokenizer_config.json.
    fn t5gemma() -> Self {
        Self {
            add_bos: false,
            add_eos: false,
            bos: "<bos>".into(),
            eos: "<eos>".into(),
            pad: "<pad>".into(),
        }
    }

    /// Reads the flags; absent ones take `GemmaTokenizerFast`'s defaults (bos yes, eos no).
    fn from_config(v: &Value) -> Self {
        let flag = |k: &str, default: bool| v.get(k).and_then(Value::as_bool).unwrap_or(default);
        // A token is either a string or an AddedToken object with a "content" field.
        let token = |k: &str, default: &str| {
            v.get(k)
                .and_then(|t| {
                    t.as_str()
                        .or_else(|| t.get("content").and_then(Value::as_str))
                })
                .unwrap_or(default)
                .to_string()
        };
        Self {
            add_bos: flag("add_bos_token", true),
            add_eos: flag("add_eos_token", false),
            bos: token("bos_token", "<bos>"),
            eos: token("eos_token", "<eos>"),
            pad: token("pad_token", "<pad>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_flags_take_the_python_class_defaults() {
        let f = SpecialTokenFlags::from_config(&serde_json::json!({
            "bos_token": {"content": "<s>"}, "pad_token": "<p>"
        }));
        assert!(f.add_bos && !f.add_eos);
        assert_eq!((f.bos.as_str(), f.pad.as_str()), ("<s>", "<p>"));
    }

    #[test]
    fn unreadable_tokenizer_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKENIZER_FILE);
        std::fs::write(&path, "{ not json").unwrap();
        let err = Tokenizer::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
    }
}
