//! `t5gemma_encoder` cases: the T5Gemma encoder and the prompt path against the official
//! pipeline, computed on the given device.
//!
//! Tensor names drive the check: `<stage>.[<variant>.][<scenario>.]<leaf>` where a scenario is
//! any `s` with an `in.<s>.input_ids` (none = `in.input_ids`) and the variants are the case's
//! documented alternative computations (`eager_softcap`: soft-capped attention; `bf16`: bf16
//! compute). `out` leaves are the encoder output and the prompt path's `context_padded` /
//! `original_len`; `mid` leaves are the names the encoder records (see
//! [`TextEncoder::forward`]). Every `out.*`/`mid.*` tensor
//! is checked; an unknown one fails the case.
//!
//! The encoder runs on the device in the dtype the case and each tensor name ask for
//! (`case.json: compute`, else f32; a `bf16`/`f32` name segment overrides it). The fixture gates
//! bf16 results as informational only and states no bf16 tolerance, so there is no separate
//! bf16 mode. Tokenizing and the integer `original_len` are CPU work by nature.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::fixtures::{tensor, Case};
use cadence_core::trace::{self, Recorded};
use cadence_core::{Checkpoint, Error, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::rules::{check, Rule, Tolerances};
use cadence_text::{
    AttentionMode, EncodedPrompt, PromptEncoder, TextEncoder, TextEncoderConfig, TokenBatch,
    Tokenizer, ENCODER_PREFIX,
};

/// One computation of a case: which inputs, which attention, which dtype.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Run {
    scenario: String,
    mode: AttentionMode,
    dtype: DType,
}

/// What a tensor name asks for.
struct Target {
    stage: String,
    run: Run,
    leaf: String,
}

fn parse_name(name: &str, io: &HashMap<String, Tensor>, default_dtype: DType) -> Result<Target> {
    let (stage, rest) = name
        .split_once('.')
        .ok_or_else(|| Error::InvalidInput(format!("tensor name {name} has no stage")))?;
    let mut run = Run {
        scenario: String::new(),
        mode: AttentionMode::Official,
        dtype: default_dtype,
    };
    let segs: Vec<&str> = rest.split('.').collect();
    let mut i = 0;
    while i + 1 < segs.len() {
        match segs[i] {
            "eager_softcap" => run.mode = AttentionMode::EagerSoftcap,
            "bf16" => run.dtype = DType::BF16,
            "f32" => run.dtype = DType::F32,
            s if io.contains_key(&format!("in.{s}.input_ids")) => run.scenario = s.to_string(),
            _ => break,
        }
        i += 1;
    }
    Ok(Target {
        stage: stage.to_string(),
        run,
        leaf: segs[i..].join("."),
    })
}

fn input_name(scenario: &str, what: &str) -> String {
    if scenario.is_empty() {
        format!("in.{what}")
    } else {
        format!("in.{scenario}.{what}")
    }
}

struct Fixture {
    case: Case,
    io: HashMap<String, Tensor>,
    cfg: TextEncoderConfig,
    ckpt: Checkpoint,
    rows: usize,
    tolerances: Tolerances,
    device: Device,
}

impl Fixture {
    fn open(case: &Case, device: &Device) -> Result<Self> {
        let prefix = case.get("/weights/encoder_prefix").and_then(Value::as_str);
        if prefix.is_some_and(|p| p != ENCODER_PREFIX) {
            return Err(Error::Config(format!(
                "case encoder prefix {prefix:?} differs from {ENCODER_PREFIX}"
            )));
        }
        let cfg_json = case
            .get("/config_encoder")
            .ok_or_else(|| Error::Config("case.json has no config_encoder".into()))?;
        Ok(Self {
            case: case.clone(),
            io: case.io()?,
            cfg: TextEncoderConfig::from_hf_json(cfg_json)?,
            ckpt: Checkpoint::open(case.file("weights.safetensors"))?,
            rows: case.f64_at("/target_length")? as usize,
            tolerances: Tolerances::from_case(case)?,
            device: device.clone(),
        })
    }

    fn default_dtype(&self) -> DType {
        match self.case.compute() {
            Some("bf16") => DType::BF16,
            _ => DType::F32,
        }
    }

    fn encoder(&self, mode: AttentionMode, dtype: DType) -> Result<TextEncoder> {
        Ok(
            TextEncoder::load(&self.ckpt, &self.cfg, dtype, &self.device)?
                .with_attention_mode(mode),
        )
    }

    fn batch(&self, scenario: &str) -> Result<TokenBatch> {
        TokenBatch::from_tensors(
            tensor(&self.case, &self.io, &input_name(scenario, "input_ids"))?,
            tensor(
                &self.case,
                &self.io,
                &input_name(scenario, "attention_mask"),
            )?,
        )
    }

    /// Checks `got` against the case's tensor `name` under the case's rule.
    fn expect(&self, name: &str, got: &Tensor, rows: Option<&[Vec<bool>]>) -> Result<()> {
        let want = tensor(&self.case, &self.io, name)?;
        let rule = self.tolerances.rule_for(name, want.dtype())?;
        // Padded query rows are undefined for float outputs; integer tensors (masks, lengths)
        // are defined everywhere and compared whole.
        let rows = rows.filter(|_| !want.dtype().is_int());
        let summary = check(name, got, want, &rule, rows)?;
        let note = if rule == Rule::Informational {
            " (informational)"
        } else {
            ""
        };
        println!("  {summary}{note}");
        Ok(())
    }
}

/// Checks every `out.*`/`mid.*` tensor of the case, the prompt path from text, and the sharded
/// checkpoint layout, with the encoder on `device`.
pub(super) fn check_case(case: &Case, device: &Device) -> Result<()> {
    let fx = Fixture::open(case, device)?;
    let mut runs: HashMap<Run, (Tensor, Recorded)> = HashMap::new();
    let mut names: Vec<&String> = fx.io.keys().collect();
    names.sort();
    let mut checked = 0;
    for name in names {
        if name.starts_with("in.") {
            continue;
        }
        let t = parse_name(name, &fx.io, fx.default_dtype())?;
        if !runs.contains_key(&t.run) {
            let enc = fx.encoder(t.run.mode, t.run.dtype)?;
            let batch = fx.batch(&t.run.scenario)?;
            let (hidden, recorded) = trace::capture([], || enc.forward(&batch));
            runs.insert(t.run.clone(), (hidden?, recorded));
        }
        let (hidden, trace) = &runs[&t.run];
        let valid = fx.batch(&t.run.scenario)?.valid;
        let got = match (t.stage.as_str(), t.leaf.as_str()) {
            ("out", "last_hidden_state") => hidden.clone(),
            ("out", "context_padded") => {
                EncodedPrompt::from_hidden(hidden, fx.rows)?.context_f32()?
            }
            ("out", "original_len") => {
                let p = EncodedPrompt::from_hidden(hidden, fx.rows)?;
                Tensor::new(&[p.original_len as i64], &Device::Cpu)?
            }
            ("mid", leaf) => trace.get(leaf).cloned().ok_or_else(|| {
                Error::InvalidInput(format!("{name}: the encoder records no {leaf}"))
            })?,
            _ => return Err(Error::InvalidInput(format!("{name}: unknown tensor"))),
        };
        fx.expect(name, &got, Some(&valid))?;
        checked += 1;
    }
    if checked == 0 {
        return Err(Error::InvalidInput("no out.*/mid.* tensor to check".into()));
    }
    check_prompts(&fx)?;
    check_sharded_layout(&fx)
}

/// The tokenizer the case names (`case.json: tokenizer`, a path relative to the case first).
fn case_tokenizer(case: &Case) -> Result<Tokenizer> {
    let path = case
        .get("/tokenizer")
        .and_then(Value::as_str)
        .and_then(|s| s.split_whitespace().next())
        .map(|p| case.dir.join(p))
        .filter(|p| p.is_file())
        .ok_or_else(|| Error::Config("case.json names no existing tokenizer file".into()))?;
    Tokenizer::from_file(&path)
}

/// Text -> ids -> context through the public prompt path, for every prompt of the case.
fn check_prompts(fx: &Fixture) -> Result<()> {
    let prompts = fx
        .case
        .get("/prompts")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Config("case.json has no prompts".into()))?;
    let tokenizer = case_tokenizer(&fx.case)?;
    let encoder = fx.encoder(AttentionMode::Official, fx.default_dtype())?;
    let pe = PromptEncoder::new(tokenizer, encoder).with_context_rows(fx.rows);
    for (key, prompt) in prompts {
        let scenario = if fx.io.contains_key(&format!("in.{key}.input_ids")) {
            key.clone()
        } else {
            String::new()
        };
        let want = fx.batch(&scenario)?;
        let got = match prompt {
            Value::String(text) => TokenBatch::single(pe.tokenize(text)?),
            Value::Array(texts) => {
                let texts: Vec<&str> = texts.iter().filter_map(Value::as_str).collect();
                pe.tokenizer().encode_padded(&texts)?
            }
            _ => return Err(Error::Config(format!("prompt {key} is not text"))),
        };
        if got != want {
            return Err(Error::InvalidInput(format!(
                "prompt {key}: tokenizer gives {:?}, the case's inputs are {:?}",
                got.ids, want.ids
            )));
        }
        let Value::String(text) = prompt else {
            continue;
        };
        let out = |leaf: &str| {
            if scenario.is_empty() {
                format!("out.{leaf}")
            } else {
                format!("out.{scenario}.{leaf}")
            }
        };
        if fx.io.contains_key(&out("context_padded")) {
            let p = pe.encode(text, &fx.device)?;
            fx.expect(&out("context_padded"), &p.context_f32()?, None)?;
            let len = Tensor::new(&[p.original_len as i64], &Device::Cpu)?;
            fx.expect(&out("original_len"), &len, None)?;
        }
    }
    Ok(())
}

/// The same weights split into shards behind a `model.safetensors.index.json`, with a
/// `config.json`, load through [`TextEncoder::open`] and give bit-identical outputs.
fn check_sharded_layout(fx: &Fixture) -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let all = fx.case.tensors("weights.safetensors")?;
    let mut keys: Vec<&String> = all.keys().collect();
    keys.sort();
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in keys.chunks(keys.len().div_ceil(3)).enumerate() {
        let file = format!("model-{:05}-of-00003.safetensors", i + 1);
        let part: HashMap<String, Tensor> = chunk
            .iter()
            .map(|k| ((*k).clone(), all[*k].clone()))
            .collect();
        candle_core::safetensors::save(&part, dir.path().join(&file))?;
        for k in chunk {
            weight_map.insert((*k).clone(), Value::String(file.clone()));
        }
    }
    let write = |name: &str, v: Value| -> Result<()> {
        let path: PathBuf = dir.path().join(name);
        std::fs::write(&path, v.to_string()).map_err(|e| Error::io(&path, e))
    };
    write(
        "model.safetensors.index.json",
        serde_json::json!({ "metadata": {}, "weight_map": weight_map }),
    )?;
    write(
        "config.json",
        serde_json::json!({ "model_type": "t5gemma", "encoder": fx.case.get("/config_encoder") }),
    )?;
    let sharded = TextEncoder::open(dir.path(), DType::F32, &fx.device)?;
    let single = fx.encoder(AttentionMode::Official, DType::F32)?;
    let batch = fx.batch("")?;
    let (a, b) = (sharded.forward(&batch)?, single.forward(&batch)?);
    check("sharded vs single file", &a, &b, &Rule::Exact, None)?;
    Ok(())
}
