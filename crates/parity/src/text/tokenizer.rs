//! `tokenizer` cases: the ids the pipeline feeds the encoder (flags from
//! `tokenizer_config.json`: no `<bos>`/`<eos>` for T5Gemma), the ids and tokens of
//! `tokenizer.json`'s own template, decoding, and right-padded batches. Tokenizing is CPU work
//! by nature, so no device is involved.

use crate::fixtures::Case;
use cadence_core::{Error, Result};
use serde_json::Value;

use cadence_text::Tokenizer;

fn ids(v: &Value, key: &str) -> Result<Vec<u32>> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Config(format!("string entry has no {key}")))?
        .iter()
        .map(|x| {
            x.as_u64()
                .map(|x| x as u32)
                .ok_or_else(|| Error::Config(format!("{key} holds a non-id")))
        })
        .collect()
}

fn mismatch(
    text: &str,
    what: &str,
    got: impl std::fmt::Debug,
    want: impl std::fmt::Debug,
) -> Error {
    Error::InvalidInput(format!("{text:?}: {what}: got {got:?}, want {want:?}"))
}

/// Checks every string and the padded batch the case lists.
pub(super) fn check_case(case: &Case) -> Result<()> {
    let tok = Tokenizer::from_dir(&case.dir)?;
    let strings = case
        .get("/strings")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Config("case.json has no strings".into()))?;
    for s in strings {
        let text = s
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Config("string entry has no text".into()))?;
        let mut checked = 0;
        if s.get("ids_pipeline").is_some() {
            let want = ids(s, "ids_pipeline")?;
            let got = tok.encode(text)?;
            if got != want {
                return Err(mismatch(text, "pipeline ids", got, want));
            }
            checked += 1;
        }
        // tokenizer.json as-is: its stored post-processor adds the special tokens.
        let raw = tok
            .inner()
            .encode(text, true)
            .map_err(|e| Error::InvalidInput(format!("{text:?}: {e}")))?;
        if s.get("ids_tokenizer_json").is_some() {
            let want = ids(s, "ids_tokenizer_json")?;
            if raw.get_ids() != want.as_slice() {
                return Err(mismatch(text, "tokenizer.json ids", raw.get_ids(), want));
            }
            checked += 1;
        }
        if let Some(want) = s.get("tokens_tokenizer_json").and_then(Value::as_array) {
            let want: Vec<&str> = want.iter().filter_map(Value::as_str).collect();
            if raw.get_tokens() != want.as_slice() {
                return Err(mismatch(text, "tokens", raw.get_tokens(), want));
            }
            checked += 1;
        }
        if let Some(want) = s.get("decoded_from_pipeline_ids").and_then(Value::as_str) {
            let got = tok.decode(&ids(s, "ids_pipeline")?)?;
            if got != want {
                return Err(mismatch(text, "decoded", got, want));
            }
            checked += 1;
        }
        if checked == 0 {
            return Err(Error::Config(format!("{text:?}: nothing to check")));
        }
    }
    if let Some(ex) = case.get("/batch_padding_example") {
        let texts: Vec<&str> = ex
            .get("texts")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let batch = tok.encode_padded(&texts)?;
        let rows = |k: &str| -> Result<Vec<Vec<u64>>> {
            serde_json::from_value(ex.get(k).cloned().unwrap_or_default())
                .map_err(|e| Error::Config(format!("batch_padding_example.{k}: {e}")))
        };
        let got_ids: Vec<Vec<u64>> = batch
            .ids
            .iter()
            .map(|r| r.iter().map(|&x| x as u64).collect())
            .collect();
        let got_mask: Vec<Vec<u64>> = batch
            .valid
            .iter()
            .map(|r| r.iter().map(|&x| u64::from(x)).collect())
            .collect();
        if got_ids != rows("input_ids")? || got_mask != rows("attention_mask")? {
            return Err(mismatch("batch", "padded batch", &batch, ex));
        }
    }
    Ok(())
}
