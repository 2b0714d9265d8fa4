//! The checkpoint loaders on the real container formats (`codecs/loader_samples/`), the
//! full-size key/shape lists (`codecs/manifest_full.json`), and hostile input.

use std::path::{Path, PathBuf};

use cadence_codec::loader::{pickle, TorchArchive};
use cadence_codec::{
    oobleck, turbo, Oobleck, OobleckConfig, StateDict, TurboConfig, TurboVaed, WanConfig, WanVae,
};
use cadence_core::checkpoint::mismatch_report;
use cadence_core::{RandomWeights, TensorSpec};
use cadence_parity::fixtures;
use candle_core::{DType, Device};
use serde_json::Value;

fn codecs_dir() -> PathBuf {
    fixtures::root().join("codecs")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Opens a loader sample by its container type (file extension).
fn open_sample(path: &Path) -> StateDict {
    match path.extension().and_then(|e| e.to_str()) {
        Some("pth") => StateDict::from_pth(path).unwrap(),
        Some("ckpt") => StateDict::from_lightning_ckpt(path, turbo::CHECKPOINT_LAYOUT).unwrap(),
        Some("safetensors") => {
            StateDict::from_safetensors(path, oobleck::CHECKPOINT_PREFIX).unwrap()
        }
        other => panic!("no loader for {path:?} ({other:?})"),
    }
}

#[test]
fn loader_samples_equal_the_case_weights() {
    let dir = codecs_dir().join("loader_samples");
    let manifest = read_json(&dir.join("manifest.json"));
    let mut checked = 0;
    for (file, entry) in manifest["files"].as_object().unwrap() {
        let Some(compare) = entry.get("compare_with").and_then(Value::as_str) else {
            continue;
        };
        let sd = open_sample(&dir.join(file));
        let reference =
            candle_core::safetensors::load(codecs_dir().join(compare), &Device::Cpu).unwrap();
        let keys: Vec<&str> = entry["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let stored: Vec<String> = sd.shapes().into_keys().collect();
        assert_eq!(stored, keys, "{file}: key set after the key map");
        for key in keys {
            let got = sd.load(key, &Device::Cpu).unwrap();
            let want = &reference[key];
            assert_eq!(got.dims(), want.dims(), "{file}: {key}");
            let same = (got.to_dtype(DType::F64).unwrap() - want.to_dtype(DType::F64).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(same, 0.0, "{file}: {key} differs from {compare}");
        }
        for ignored in entry
            .get("ignored_keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = ignored.as_str().unwrap();
            assert!(
                !sd.shapes().keys().any(|s| k.ends_with(s.as_str())),
                "{file}: {k} not ignored"
            );
        }
        println!(
            "checked loader sample {file} ({} tensors)",
            sd.shapes().len()
        );
        checked += 1;
    }
    assert_eq!(
        checked, 3,
        "expected the .pth, .ckpt and .safetensors samples"
    );
}

#[test]
fn loader_sample_configs_parse() {
    let dir = codecs_dir().join("loader_samples");
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if !entry.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(entry.path()).unwrap().flatten() {
            let p = f.path();
            if p.file_name().is_some_and(|n| n == "model_config.json") {
                let cfg = OobleckConfig::from_model_config(&p).unwrap();
                assert_eq!(cfg.downsampling_ratio, 2048);
                assert_eq!(cfg.sample_rate, 44100);
            } else if p.extension().is_some_and(|e| e == "json") {
                TurboConfig::from_file(&p).unwrap();
            }
        }
    }
}

#[test]
fn partial_checkpoints_fail_verification_naming_keys() {
    // The samples are partial: strict verification must name what is missing.
    let dir = codecs_dir().join("loader_samples");
    let manifest = read_json(&dir.join("manifest.json"));
    let (pth, _) = manifest["files"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(f, _)| f.ends_with(".pth"))
        .unwrap();
    let sd = StateDict::from_pth(dir.join(pth)).unwrap();
    let cfg: WanConfig = serde_json::from_value(
        read_json(&codecs_dir().join("wan22_vae_tiny_encode_image/case.json"))["config"]["WanVAE_"]
            .clone(),
    )
    .unwrap();
    let err = WanVae::from_state_dict(&sd, &cfg, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing: encoder.downsamples.0.downsamples.0.residual.0.gamma"),
        "{err}"
    );
}

/// `manifest_full.json`'s key list of one codec.
/// The keys and shapes the manifest lists, as a weight source (nothing is allocated).
fn manifest_keys(codec: &Value) -> RandomWeights {
    let specs: Vec<TensorSpec> = codec["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let shape: Vec<usize> = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            TensorSpec::new(k.clone(), shape)
        })
        .collect();
    RandomWeights::seeded(&specs, "", 0)
}

fn params(specs: &[TensorSpec]) -> u64 {
    specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>() as u64)
        .sum()
}

#[test]
fn full_size_key_lists_match_the_manifest() {
    let m = read_json(&codecs_dir().join("manifest_full.json"));

    let wan = &m["wan22_vae"];
    let cfg: WanConfig = serde_json::from_value(wan["config"].clone()).unwrap();
    assert_eq!(cfg, WanConfig::wan22_ti2v_5b());
    let specs = WanVae::tensor_specs(&cfg).unwrap();
    let report = mismatch_report(&manifest_keys(wan), "", &specs);
    assert!(report.is_empty(), "Wan2.2 VAE:\n{report}");
    assert_eq!(
        params(&specs),
        wan["parameter_counts"]["total"].as_u64().unwrap()
    );

    let tv = &m["turbo_vaed"];
    let cfg: TurboConfig = serde_json::from_value(tv["config"].clone()).unwrap();
    assert_eq!(cfg, TurboConfig::turbo_v3_wan22());
    let specs = TurboVaed::tensor_specs(&cfg).unwrap();
    let report = mismatch_report(&manifest_keys(tv), "", &specs);
    assert!(report.is_empty(), "Turbo-VAED:\n{report}");
    assert_eq!(
        params(&specs),
        tv["parameter_counts"]["total"].as_u64().unwrap()
    );

    let ob = &m["oobleck"];
    let excerpt = &ob["model_config_json_excerpt"];
    let cfg = OobleckConfig::from_pretransform(
        &excerpt["model"]["pretransform"]["config"],
        excerpt["sample_rate"].as_u64().unwrap(),
    )
    .unwrap();
    let specs = Oobleck::tensor_specs(&cfg).unwrap();
    let report = mismatch_report(&manifest_keys(ob), "", &specs);
    assert!(report.is_empty(), "Oobleck:\n{report}");
    assert_eq!(
        params(&specs),
        ob["parameter_counts"]["stored_total"].as_u64().unwrap()
    );
    println!("full-size key lists: Wan, Turbo-VAED and Oobleck match key for key");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cadence-codec-loaders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn wan_sample() -> PathBuf {
    let dir = codecs_dir().join("loader_samples");
    let manifest = read_json(&dir.join("manifest.json"));
    let pth = manifest["files"]
        .as_object()
        .unwrap()
        .keys()
        .find(|f| f.ends_with(".pth"))
        .unwrap()
        .clone();
    dir.join(pth)
}

#[test]
fn truncated_and_corrupted_archives_are_errors_not_panics() {
    let bytes = std::fs::read(wan_sample()).unwrap();
    let path = scratch("cut.pth");
    // Every truncation loses the zip directory at the end: always an error.
    for cut in (0..bytes.len())
        .step_by(4099)
        .chain([bytes.len() - 1, bytes.len() - 22])
    {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(
            TorchArchive::open(&path, None).is_err(),
            "truncated at {cut} opened"
        );
    }
    // Corrupt bytes anywhere: an error or (in tensor data) other numbers, never a panic.
    for pos in (0..bytes.len()).step_by(331) {
        let mut b = bytes.clone();
        b[pos] ^= 0xa5;
        std::fs::write(&path, &b).unwrap();
        if let Ok(a) = TorchArchive::open(&path, None) {
            for key in a.tensors().keys() {
                let _ = a.load(key, &Device::Cpu);
            }
        }
    }
    std::fs::remove_file(&path).unwrap();
}

/// The `data.pkl` of the Wan loader sample.
fn real_pickle() -> Vec<u8> {
    let file = std::fs::File::open(wan_sample()).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let name = zip
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .find(|n| n.ends_with("data.pkl"))
        .unwrap();
    let mut f = zip.by_name(&name).unwrap();
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut buf).unwrap();
    buf
}

#[test]
fn mutated_pickles_are_errors_not_panics() {
    let pkl = real_pickle();
    assert!(pickle::parse(&pkl).is_ok());
    for n in 0..pkl.len() {
        assert!(
            pickle::parse(&pkl[..n]).is_err(),
            "prefix of {n} bytes parsed"
        );
    }
    // Every byte set to a few hostile values (opcodes, huge lengths, sign bits).
    for pos in 0..pkl.len() {
        for v in [0x00, 0x52, 0x63, 0x71, 0x80, 0xff] {
            let mut p = pkl.clone();
            p[pos] = v;
            let _ = pickle::parse(&p);
        }
    }
}

/// Writes a torch-style zip whose `data.pkl` is `pickle` and that has one 4-byte storage.
fn write_archive(path: &Path, pickle: &[u8]) {
    use std::io::Write;
    let file = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("evil/data.pkl", opts).unwrap();
    z.write_all(pickle).unwrap();
    z.start_file("evil/data/0", opts).unwrap();
    z.write_all(&[0; 4]).unwrap();
    z.finish().unwrap();
}

#[test]
fn malicious_pickles_never_execute() {
    let marker = scratch("pwned");
    let _ = std::fs::remove_file(&marker);
    let cmd = format!("touch {}", marker.display());
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    // os.system via GLOBAL + REDUCE (protocol 0 and 2 framing)
    payloads.push(format!("cos\nsystem\n(V{cmd}\ntR.").into_bytes());
    let mut p = b"\x80\x02cposix\nsystem\nX".to_vec();
    p.extend((cmd.len() as u32).to_le_bytes());
    p.extend(cmd.as_bytes());
    p.extend(b"\x85R.");
    payloads.push(p);
    // builtins.exec smuggled inside a state dict value
    let mut p = b"\x80\x02}q\x00X\x01\x00\x00\x00wcbuiltins\nexec\nX".to_vec();
    p.extend((cmd.len() as u32).to_le_bytes());
    p.extend(cmd.as_bytes());
    p.extend(b"\x85Rs.");
    payloads.push(p);
    // a tensor whose rebuild is an arbitrary callable reached through BUILD / NEWOBJ
    payloads.push(b"\x80\x02csubprocess\nPopen\n)\x81.".to_vec());
    let path = scratch("evil.pth");
    for (i, p) in payloads.iter().enumerate() {
        write_archive(&path, p);
        let err = TorchArchive::open(&path, None).unwrap_err().to_string();
        assert!(
            err.contains("refusing global") || err.contains("refused"),
            "payload {i}: {err}"
        );
    }
    assert!(!marker.exists(), "a payload ran");
    std::fs::remove_file(&path).unwrap();
}

/// Why the crate has its own unpickler: candle's trusts its input. A `_rebuild_tensor_v2` call
/// with too few arguments makes `candle_core::pickle` panic (`Vec::remove` out of bounds) where
/// ours returns an error.
#[test]
fn candle_pickle_panics_where_ours_errors() {
    let pkl = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n)Ru.";
    let path = scratch("short_args.pth");
    write_archive(&path, pkl);
    let p = path.clone();
    let candle = std::panic::catch_unwind(move || candle_core::pickle::read_all(&p));
    assert!(
        candle.is_err(),
        "candle's reader no longer panics here: revisit the comment in pickle.rs"
    );
    let ours = TorchArchive::open(&path, None).unwrap_err().to_string();
    assert!(ours.contains("needs at least 4 arguments"), "{ours}");
    std::fs::remove_file(&path).unwrap();
}
