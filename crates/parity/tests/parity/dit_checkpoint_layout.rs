//! The real checkpoint layout: keys and shapes derived from the config (no weights allocated)
//! against the reference's full-size manifest, and the presets against its configs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cadence_core::TensorSpec;
use cadence_model::weights::expected_tensors;
use cadence_model::{DitConfig, DitVariant};
use cadence_parity::fixtures;
use serde_json::Value;

fn manifest() -> Value {
    let path: PathBuf = fixtures::root().join("dit/manifest_full.json");
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn manifest_keys(m: &Value) -> BTreeMap<String, Vec<usize>> {
    m["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect()
}

fn derived(specs: &[TensorSpec]) -> BTreeMap<String, Vec<usize>> {
    specs
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone()))
        .collect()
}

#[test]
fn derived_keys_match_the_full_size_manifest_key_for_key() {
    let m = manifest();
    let want = manifest_keys(&m);
    let config = DitConfig::from_reference_json(&m["model_config"]).unwrap();
    assert_eq!(
        config,
        DitVariant::Base.config(),
        "the manifest's config is the base preset"
    );
    let got = derived(&expected_tensors(&config));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let shapes: Vec<_> = want
        .iter()
        .filter(|(k, s)| got.get(*k).is_some_and(|g| g != *s))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && shapes.is_empty(),
        "missing {missing:?}\nextra {extra:?}\nshapes {shapes:?}"
    );
    assert_eq!(got.len(), m["num_keys"].as_u64().unwrap() as usize);

    // Parameter count, excluding the non-learned rope buffer.
    let params: usize = expected_tensors(&config)
        .iter()
        .filter(|s| !s.optional)
        .map(|s| s.shape.iter().product::<usize>())
        .sum();
    assert_eq!(params as u64, m["total_parameters"].as_u64().unwrap());
}

#[test]
fn sr_1080p_preset_is_the_reference_override_with_identical_keys() {
    let m = manifest();
    let sr = DitConfig::from_reference_json(&m["sr_1080_arch"]["model_config"]).unwrap();
    assert_eq!(sr, DitVariant::Sr1080p.config());
    assert_eq!(derived(&expected_tensors(&sr)), manifest_keys(&m));
}

#[test]
fn configs_read_from_json_reject_typos_and_contradictions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"arch_config": {"num_layers": 6, "hidden_size": 256, "head_dim": 64, "num_query_groups": 2, "mm_layers": [0, 5], "gelu7_layers": [0]}}"#).unwrap();
    let c = DitConfig::from_json_file(&path).unwrap();
    assert_eq!((c.num_layers, c.num_heads_q(), c.num_heads_kv()), (6, 4, 2));
    assert_eq!(
        c.text_in_channels, 3584,
        "unspecified fields keep the base model's values"
    );

    std::fs::write(&path, r#"{"num_layer": 6}"#).unwrap();
    let err = DitConfig::from_json_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("num_layer") && err.contains("config.json"),
        "{err}"
    );

    std::fs::write(&path, r#"{"num_heads_q": 32}"#).unwrap();
    let err = DitConfig::from_json_file(&path).unwrap_err().to_string();
    assert!(err.contains("num_heads_q is 32"), "{err}");

    std::fs::write(&path, r#"{"num_layers": 4, "mm_layers": [0, 7]}"#).unwrap();
    let err = DitConfig::from_json_file(&path).unwrap_err().to_string();
    assert!(err.contains("mm_layers names layer 7"), "{err}");
}

#[test]
fn variants_parse_from_their_names() {
    for v in DitVariant::ALL {
        assert_eq!(v.name().parse::<DitVariant>().unwrap(), v);
    }
    assert_eq!(
        "distilled".parse::<DitVariant>().unwrap(),
        DitVariant::Distilled
    );
    let err = "4k".parse::<DitVariant>().unwrap_err().to_string();
    assert!(err.contains("base, distill, 540p_sr, 1080p_sr"), "{err}");
}
