//! FP8 checkpoints of the DiT: the block's GEMM weights quantised once and stored, so later
//! loads read 15.3 GB instead of 30.6 GB and skip the quantisation.
//!
//! Layout: a sharded safetensors folder that [`cadence_core::Checkpoint::open`] and
//! [`crate::DitModel::load_dir_with`] read like any other: `model.safetensors.index.json` plus
//! `model-00001-of-000NN.safetensors` (the embedders, the rope bands when the source has them,
//! and the output heads) and one shard per transformer layer. In a layer shard each GEMM weight
//! `K` is stored as `K` (F8_E4M3, its original `(out, in)` shape) and `K_scale` (F32, `(out,)`),
//! the convention of [`cadence_kernels::fp8`]; every other tensor is stored as f32, the dtype
//! the model holds it in. The index's `metadata.format` is [`FORMAT`].
//!
//! The FP8 values are those [`crate::DitModel::load_with`] computes at load with a bf16 compute
//! dtype: each weight is read as bf16 (what the reference computes with) and scaled per output
//! channel by `absmax / 448`. A model loaded from the folder is therefore identical to one
//! quantised at load from the source checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use cadence_core::var_builder::var_builder;
use cadence_core::{Checkpoint, Error, Result, WeightSource};
use cadence_kernels::fp8::{scale_key, SCALE_SUFFIX};
use cadence_kernels::LinearWeight;

use crate::config::DitConfig;
use crate::dit::{layer_prefix, CONFIG_FILE, LAYERS};
use crate::precision::{load_linear, WeightFormat};
use crate::variant::DitVariant;
use crate::weights::{accepted_tensors, expected_tensors, gemm_weights, is_gemm, ROPE_BANDS};

/// `metadata.format` of the index of an FP8 checkpoint.
pub const FORMAT: &str = "cadence-dit-fp8-e4m3-per-channel";

/// Writes the FP8 checkpoint of the model in `source` (verified against `config`) into `dir`,
/// creating it. Returns the files written (the shards, then the index).
pub fn write_fp8_checkpoint(
    source: &dyn WeightSource,
    config: &DitConfig,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    config.validate()?;
    source.verify("", &accepted_tensors(config))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let expected = expected_tensors(config);
    let gemms: HashMap<&str, &[usize]> = expected
        .iter()
        .filter(|s| is_gemm(s))
        .map(|s| (s.name.as_str(), s.shape.as_slice()))
        .collect();
    let cpu = Device::Cpu;
    let vb = var_builder(source, DType::BF16, &cpu);

    // The first shard holds every tensor outside the layers (the rope bands if stored).
    let in_layers = format!("{LAYERS}.");
    let outer: Vec<String> = expected
        .iter()
        .map(|s| s.name.clone())
        .filter(|n| !n.starts_with(&in_layers))
        .filter(|n| n != ROPE_BANDS || source.contains(ROPE_BANDS))
        .collect();
    let mut shards: Vec<Vec<String>> = vec![outer];
    for i in 0..config.num_layers {
        let prefix = format!("{}.", layer_prefix(i));
        shards.push(
            source
                .keys()
                .into_iter()
                .filter(|k| k.starts_with(&prefix) && !k.ends_with(SCALE_SUFFIX))
                .collect(),
        );
    }

    let total = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut written = Vec::with_capacity(total + 1);
    let mut total_bytes = 0usize;
    for (n, keys) in shards.iter().enumerate() {
        let name = format!("model-{:05}-of-{total:05}.safetensors", n + 1);
        let mut tensors = HashMap::new();
        for key in keys {
            if let Some(shape) = gemms.get(key.as_str()) {
                let under = vb.pp(key.trim_end_matches(".weight"));
                let shape = (shape[0], shape[1]);
                let LinearWeight::Fp8 { weight, .. } =
                    load_linear(&under, shape, DType::BF16, WeightFormat::FP8)?
                else {
                    return Err(Error::Config(format!("{key}: expected an FP8 weight")));
                };
                tensors.insert(key.clone(), weight.unpadded_data()?);
                tensors.insert(scale_key(key), weight.scale().clone());
            } else {
                tensors.insert(key.clone(), source.load(key, DType::F32, &cpu)?);
            }
        }
        for (k, t) in &tensors {
            total_bytes += t.elem_count() * t.dtype().size_in_bytes();
            weight_map.insert(k.clone(), name.clone());
        }
        let path = dir.join(&name);
        candle_core::safetensors::save(&tensors, &path).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            message: format!("writing the shard failed: {e}"),
        })?;
        written.push(path);
    }

    let index = serde_json::json!({
        "metadata": { "format": FORMAT, "total_size": total_bytes },
        "weight_map": weight_map,
    });
    let path = dir.join(cadence_core::checkpoint::INDEX_FILE);
    let text = serde_json::to_string_pretty(&index)
        .map_err(|e| Error::Config(format!("serialising the index: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    written.push(path);
    Ok(written)
}

/// Converts the checkpoint folder `src` (architecture from its `config.json`, else the
/// variant's preset) into an FP8 checkpoint folder `dst`, copying `config.json` along.
pub fn convert_dir(src: &Path, variant: DitVariant, dst: &Path) -> Result<Vec<PathBuf>> {
    let config_path = src.join(CONFIG_FILE);
    let config = if config_path.is_file() {
        DitConfig::from_json_file(&config_path)?
    } else {
        variant.config()
    };
    let mut written = write_fp8_checkpoint(&Checkpoint::open(src)?, &config, dst)?;
    if config_path.is_file() {
        let to = dst.join(CONFIG_FILE);
        std::fs::copy(&config_path, &to).map_err(|e| Error::io(&to, e))?;
        written.push(to);
    }
    Ok(written)
}

/// Whether a weight source holds FP8 GEMM weights (any `_scale` tensor of a GEMM key).
pub fn is_fp8(source: &dyn WeightSource, config: &DitConfig) -> bool {
    gemm_weights(config)
        .iter()
        .any(|s| source.contains(&scale_key(&s.name)))
}
