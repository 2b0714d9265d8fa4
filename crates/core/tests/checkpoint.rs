//! Checkpoint layouts: single file, sharded with an index, dtype conversion, and the errors
//! that name every bad key.

use std::collections::HashMap;
use std::path::Path;

use cadence_core::{Checkpoint, Error, ErrorKind, TensorSpec};
use candle_core::{DType, Device, Tensor};

fn tensor(shape: &[usize], dtype: DType, start: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::arange(start, start + n as f32, &Device::Cpu)
        .unwrap()
        .reshape(shape)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn save(path: &Path, tensors: &[(&str, Tensor)]) {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| (k.to_string(), t.clone()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn write_index(dir: &Path, map: &[(&str, &str)]) {
    let weight_map: serde_json::Map<String, serde_json::Value> = map
        .iter()
        .map(|(k, f)| (k.to_string(), serde_json::Value::from(*f)))
        .collect();
    let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// Two shards: a bf16 matrix and f32 vectors, like the real DiT shards.
fn sharded(dir: &Path) {
    save(
        &dir.join("model-00001-of-00002.safetensors"),
        &[("a.weight", tensor(&[2, 3], DType::BF16, 0.))],
    );
    save(
        &dir.join("model-00002-of-00002.safetensors"),
        &[
            ("a.norm", tensor(&[3], DType::F32, 10.)),
            ("b.bias", tensor(&[2], DType::F32, 20.)),
        ],
    );
    write_index(
        dir,
        &[
            ("a.weight", "model-00001-of-00002.safetensors"),
            ("a.norm", "model-00002-of-00002.safetensors"),
            ("b.bias", "model-00002-of-00002.safetensors"),
        ],
    );
}

fn specs() -> Vec<TensorSpec> {
    vec![
        TensorSpec::new("a.weight", [2, 3]),
        TensorSpec::new("a.norm", [3]),
        TensorSpec::new("b.bias", [2]),
    ]
}

#[test]
fn sharded_folder_and_index_file_open_the_same_tensors() {
    let dir = tempfile::tempdir().unwrap();
    sharded(dir.path());
    for path in [
        dir.path().to_path_buf(),
        dir.path().join("model.safetensors.index.json"),
    ] {
        let ckpt = Checkpoint::open(&path).unwrap();
        assert_eq!(ckpt.files().len(), 2);
        ckpt.verify("", &specs()).unwrap();
        let w = ckpt.load("a.weight", DType::F32, &Device::Cpu).unwrap();
        assert_eq!(w.dtype(), DType::F32);
        assert_eq!(
            w.to_vec2::<f32>().unwrap(),
            vec![vec![0., 1., 2.], vec![3., 4., 5.]]
        );
        // f32 stored, bf16 wanted: converted on load.
        let n = ckpt.load("a.norm", DType::BF16, &Device::Cpu).unwrap();
        assert_eq!(n.dtype(), DType::BF16);
        assert_eq!(
            n.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
            vec![10., 11., 12.]
        );
    }
}

#[test]
fn single_file_in_a_folder_or_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    save(&file, &[("x", tensor(&[4], DType::F16, 1.))]);
    for path in [dir.path(), file.as_path()] {
        let ckpt = Checkpoint::open(path).unwrap();
        assert_eq!(ckpt.stored()["x"].dtype, DType::F16);
        assert_eq!(
            ckpt.load("x", DType::F32, &Device::Cpu)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            vec![1., 2., 3., 4.]
        );
    }
}

#[test]
fn mismatch_names_every_missing_unexpected_and_misshaped_key() {
    let dir = tempfile::tempdir().unwrap();
    sharded(dir.path());
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let expected = vec![
        TensorSpec::new("a.weight", [3, 2]),
        TensorSpec::new("a.norm", [3]),
        TensorSpec::new("c.weight", [5]),
        TensorSpec::optional("rope.bands", [4]),
    ];
    let err = ckpt.verify("", &expected).unwrap_err();
    let Error::KeyMismatch { report, .. } = &err else {
        panic!("wrong error: {err}")
    };
    assert!(
        report.contains("missing: c.weight (expected shape [5])"),
        "{report}"
    );
    assert!(report.contains("unexpected: b.bias [2]"), "{report}");
    assert!(
        report.contains("wrong shape: a.weight is [2, 3] in the file, the model expects [3, 2]"),
        "{report}"
    );
    assert!(
        !report.contains("rope.bands"),
        "optional keys may be absent: {report}"
    );
    assert_eq!(report.lines().count(), 3, "{report}");
}

#[test]
fn a_prefix_scopes_verification_to_one_submodel() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    save(
        &file,
        &[
            ("model.encoder.w", tensor(&[2], DType::F32, 0.)),
            ("model.decoder.w", tensor(&[9], DType::F32, 0.)),
        ],
    );
    let ckpt = Checkpoint::open(&file).unwrap();
    ckpt.verify("model.encoder.", &[TensorSpec::new("w", [2])])
        .unwrap();
    let report = ckpt.mismatch_report("model.", &[TensorSpec::new("encoder.w", [2])]);
    assert!(report.contains("unexpected: model.decoder.w"), "{report}");
}

#[test]
fn index_and_shards_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    sharded(dir.path());
    write_index(
        dir.path(),
        &[
            ("a.weight", "model-00001-of-00002.safetensors"),
            ("a.norm", "model-00002-of-00002.safetensors"),
            ("ghost", "model-00002-of-00002.safetensors"),
        ],
    );
    let err = Checkpoint::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("ghost: listed in the index"), "{err}");
    assert!(
        err.contains("b.bias: stored in a shard but not listed"),
        "{err}"
    );
}

/// The library says which file is missing and that it is a weights problem; the front ends add
/// how to get it (the CLI names `cadence fetch`, a server its own advice), so no message of the
/// library names a command.
#[test]
fn missing_shard_and_missing_folder_name_the_file_and_are_weights_errors() {
    let dir = tempfile::tempdir().unwrap();
    sharded(dir.path());
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = Checkpoint::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Weights);
    let message = err.to_string();
    assert!(
        message.contains("model-00002-of-00002.safetensors")
            && message.contains("missing; download it again")
            && !message.contains("cadence"),
        "{message}"
    );

    let err = Checkpoint::open(dir.path().join("nowhere")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Weights);
    let message = err.to_string();
    assert!(
        message.contains("nowhere")
            && message.contains("no such file or folder")
            && !message.contains("cadence"),
        "{message}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = Checkpoint::open(empty.path()).unwrap_err().to_string();
    assert!(err.contains("model.safetensors.index.json"), "{err}");
}

#[test]
fn compressed_shards_are_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    sharded(dir.path());
    let shard = dir.path().join("model-00001-of-00002.safetensors");
    std::fs::rename(
        &shard,
        dir.path().join("model-00001-of-00002.safetensors.zst"),
    )
    .unwrap();
    let err = Checkpoint::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("zstd -d"), "{err}");
}

#[test]
fn a_corrupt_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    std::fs::write(&file, b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage").unwrap();
    let err = Checkpoint::open(&file).unwrap_err().to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn loading_an_absent_key_names_it() {
    let dir = tempfile::tempdir().unwrap();
    sharded(dir.path());
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let err = ckpt
        .load("nope", DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor nope is not in the checkpoint"),
        "{err}"
    );
}

/// A float weight stored as an integer type (a file relabelled F32 -> I32, say) is refused,
/// naming the key, the stored and the accepted types; a spec may accept more (FP8 weights).
#[test]
fn a_tensor_of_a_type_the_model_cannot_read_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save(
        &path,
        &[
            ("a.weight", tensor(&[2, 3], DType::BF16, 0.)),
            ("a.norm", tensor(&[3], DType::U32, 0.)),
            ("b.bias", tensor(&[2], DType::I64, 0.)),
        ],
    );
    let ckpt = Checkpoint::open(&path).unwrap();
    let err = ckpt.verify("", &specs()).unwrap_err().to_string();
    assert!(
        err.contains("wrong dtype: a.norm is stored as u32, the model reads f16, bf16, f32, f64"),
        "{err}"
    );
    assert!(
        err.contains("wrong dtype: b.bias is stored as i64"),
        "{err}"
    );
    assert!(!err.contains("a.weight"), "{err}");
    let accepting = specs()
        .into_iter()
        .map(|s| s.stored_as(&[DType::U32, DType::I64, DType::BF16]))
        .collect::<Vec<_>>();
    ckpt.verify("", &accepting).unwrap();
}
