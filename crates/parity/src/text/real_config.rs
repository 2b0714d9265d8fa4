//! `t5gemma_real_config` cases (facts, no tensors): the real T5Gemma-9B encoder's tensor list,
//! derived from its config alone (no weight allocated), against the checkpoint manifest, key
//! for key. Nothing is computed on a device.

use std::collections::BTreeMap;

use crate::fixtures::Case;
use cadence_core::{Error, Result};
use serde_json::Value;

use cadence_text::{TextEncoderConfig, ENCODER_PREFIX};

/// Checks the preset config, the derived key list and the parameter counts against the case.
pub(super) fn check_case(case: &Case) -> Result<()> {
    let cfg_json = case
        .get("/encoder_config")
        .ok_or_else(|| Error::Config("case.json has no encoder_config".into()))?;
    let cfg = TextEncoderConfig::from_hf_json(cfg_json)?;
    if cfg != TextEncoderConfig::t5gemma_9b() {
        return Err(Error::InvalidInput(format!(
            "the t5gemma_9b preset differs from the case's config: {cfg:?}"
        )));
    }
    let manifest: Value = cadence_core::error::read_json(&case.file("manifest_full.json"))?;
    if let Some(prefix) = manifest.get("prefix").and_then(Value::as_str) {
        if prefix != ENCODER_PREFIX {
            return Err(Error::InvalidInput(format!("manifest prefix {prefix}")));
        }
    }
    let listed: BTreeMap<String, Vec<usize>> = manifest
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Config("manifest has no keys".into()))?
        .iter()
        .map(|k| {
            let key = k.get("key").and_then(Value::as_str);
            let shape: Option<Vec<usize>> = k
                .get("shape")
                .and_then(|s| serde_json::from_value(s.clone()).ok());
            match (key, shape) {
                (Some(key), Some(shape)) => Ok((key.to_string(), shape)),
                _ => Err(Error::Config(format!("manifest entry {k} lacks key/shape"))),
            }
        })
        .collect::<Result<_>>()?;
    let derived: BTreeMap<String, Vec<usize>> = cfg
        .tensor_specs()
        .into_iter()
        .map(|s| (format!("{ENCODER_PREFIX}{}", s.name), s.shape))
        .collect();
    let mut report = Vec::new();
    for (k, shape) in &listed {
        match derived.get(k) {
            None => report.push(format!("manifest key {k} {shape:?} is not derived")),
            Some(s) if s != shape => report.push(format!("{k}: derived {s:?}, manifest {shape:?}")),
            Some(_) => {}
        }
    }
    for k in derived.keys().filter(|k| !listed.contains_key(*k)) {
        report.push(format!("derived key {k} is not in the manifest"));
    }
    let counts = [
        ("/num_encoder_tensors", derived.len()),
        ("/num_encoder_params", cfg.num_params()),
    ];
    for (ptr, ours) in counts {
        if let Some(n) = manifest.pointer(ptr).and_then(Value::as_u64) {
            if n as usize != ours {
                report.push(format!("{ptr}: manifest {n}, derived {ours}"));
            }
        }
    }
    if let Some(n) = case.get("/params/encoder_total").and_then(Value::as_u64) {
        if n as usize != cfg.num_params() {
            report.push(format!(
                "params.encoder_total {n}, derived {}",
                cfg.num_params()
            ));
        }
    }
    if report.is_empty() {
        println!(
            "  {} keys, {} parameters match",
            derived.len(),
            cfg.num_params()
        );
        Ok(())
    } else {
        Err(Error::InvalidInput(report.join("\n")))
    }
}
