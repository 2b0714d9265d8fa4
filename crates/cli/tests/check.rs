//! `cadence check` on real folders: an empty one, the fixtures' loader samples (real container
//! formats, partial checkpoints), damaged copies of them, and DiT / text-encoder / audio-VAE
//! checkpoints built from the parity fixtures' tiny weights. Wherever `check` refuses a
//! component, the loader `generate` uses refuses it with the same reason.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cadence_codec::{oobleck, turbo, wan, Oobleck, TurboVaed, WanConfig, WanVae};
use cadence_core::{Error, Result};
use cadence_model::{DitModel, DitVariant};
use cadence_parity::fixtures::{cases_of, check_all, root, Case};
use cadence_weights::Manifest;
use candle_core::{DType, Device};
use serde_json::Value;
use support::{cadence, run};

#[test]
fn an_empty_weights_dir_lists_every_component_as_missing() {
    let home = tempfile::tempdir().unwrap();
    let weights = home.path().join("weights");
    std::fs::create_dir(&weights).unwrap();
    let r = run(
        cadence(home.path()),
        &["check", "--weights-dir", weights.to_str().unwrap()],
    );
    assert_eq!(r.code, Some(3), "{r:?}");
    for id in ["distill", "t5gemma", "turbo_vae", "stable_audio"] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not reported:\n{}", r.stdout));
        assert!(line.contains("not found"), "{line}");
        assert!(line.contains(&weights.display().to_string()), "{line}");
    }
    let error = r.error_line();
    assert!(error.contains("4 problem(s)"), "{error}");
    assert!(error.contains("cadence fetch"), "{error}");
}

#[test]
fn check_with_base_and_1080p_names_those_components() {
    let home = tempfile::tempdir().unwrap();
    let r = run(
        cadence(home.path()),
        &[
            "check",
            "--model",
            "base",
            "--resolution",
            "1080p",
            "--image",
        ],
    );
    assert_eq!(r.code, Some(3), "{r:?}");
    for id in ["base", "1080p_sr", "wan_vae"] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(id)),
            "{id} missing:\n{}",
            r.stdout
        );
    }
    assert!(!r.stdout.lines().any(|l| l.starts_with("distill")));
}

#[test]
fn an_unknown_component_is_a_bad_input() {
    let home = tempfile::tempdir().unwrap();
    let r = run(cadence(home.path()), &["check", "--component", "nope"]);
    assert_eq!(r.code, Some(4), "{r:?}");
    assert!(r.error_line().contains("unknown component `nope`"), "{r:?}");
}

/// Folders of the fixture tree laid out like a weights directory: a `manifest.json` whose
/// `files` are `<component dir>/<file>` of components the built-in manifest defines.
fn sample_dirs(manifest: &Manifest) -> Vec<(PathBuf, Vec<String>)> {
    let dirs: Vec<(&str, &str)> = manifest
        .components()
        .iter()
        .map(|c| (c.dir.as_str(), c.id.as_str()))
        .collect();
    let mut found = Vec::new();
    let mut stack = vec![root()];
    while let Some(d) = stack.pop() {
        let listing = std::fs::read_dir(&d).unwrap();
        for e in listing {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.file_name().is_none_or(|n| n != "manifest.json") {
                continue;
            }
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            let Some(files) = v.get("files").and_then(Value::as_object) else {
                continue;
            };
            let ids: BTreeSet<String> = files
                .keys()
                .filter_map(|f| f.split_once('/'))
                .filter_map(|(dir, _)| dirs.iter().find(|(d, _)| *d == dir))
                .map(|(_, id)| id.to_string())
                .collect();
            if !ids.is_empty() {
                found.push((d.clone(), ids.into_iter().collect()));
            }
        }
    }
    found
}

fn check_args<'a>(weights: &'a str, ids: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["check", "--weights-dir", weights];
    for id in ids {
        args.extend(["--component", id.as_str()]);
    }
    args
}

/// What the loader of codec component `id` says about the folder `dir`: the error `generate`
/// would stop with.
fn codec_loader_error(id: &str, dir: &Path) -> String {
    let dev = Device::Cpu;
    let result = match id {
        "turbo_vae" => TurboVaed::load(
            dir.join(turbo::CHECKPOINT_FILE),
            dir.join(turbo::CONFIG_FILE),
            DType::F32,
            &dev,
        )
        .map(drop),
        "wan_vae" => WanVae::load(
            dir.join(wan::CHECKPOINT_FILE),
            &WanConfig::wan22_ti2v_5b(),
            DType::F32,
            &dev,
        )
        .map(drop),
        "stable_audio" => Oobleck::load(
            dir.join(oobleck::CHECKPOINT_FILE),
            dir.join(oobleck::CONFIG_FILE),
            &dev,
        )
        .map(drop),
        other => panic!("no codec loader for {other}"),
    };
    result
        .err()
        .unwrap_or_else(|| panic!("the {id} loader accepted {}", dir.display()))
        .to_string()
}

/// The first problem line of a loader error (a key report's first line, or the message).
fn first_reason(error: &str) -> String {
    let line = error.lines().nth(1).unwrap_or(error);
    line.trim().to_string()
}

/// The loader samples are partial checkpoints in the real containers: `check` used to call
/// them complete while the loaders refuse them. Now `check` reports each as incomplete with the
/// loader's own first reason, and a file cut in half is reported corrupt.
#[test]
fn the_loader_samples_are_refused_as_the_loaders_refuse_them() {
    let manifest = Manifest::embedded().unwrap();
    let samples = sample_dirs(&manifest);
    assert!(
        !samples.is_empty(),
        "no loader samples under {}",
        root().display()
    );
    for (dir, ids) in samples {
        let home = tempfile::tempdir().unwrap();
        let weights = dir.to_str().unwrap();
        let r = run(cadence(home.path()), &check_args(weights, &ids));
        assert_eq!(r.code, Some(3), "{r:?}");
        for id in &ids {
            let line = r
                .stdout
                .lines()
                .find(|l| l.starts_with(id.as_str()))
                .unwrap();
            assert!(line.contains("INCOMPLETE"), "{line}");
            let component = manifest.get(id).unwrap();
            let reason = first_reason(&codec_loader_error(id, &dir.join(&component.dir)));
            assert!(
                r.stdout.contains(&format!("tensors: {reason}")),
                "{id}: the loader says {reason:?}; check printed:\n{}",
                r.stdout
            );
            println!("{id}: check and loader both say: {reason}");
        }

        // The same files, each cut in half in turn: reported corrupt, exit 3.
        for id in &ids {
            let component = manifest.get(id).unwrap();
            for spec in component.files.iter().filter(|f| !f.optional) {
                let copy = tempfile::tempdir().unwrap();
                copy_tree(&dir.join(&component.dir), &copy.path().join(&component.dir));
                let victim = copy.path().join(&component.dir).join(&spec.name);
                let bytes = std::fs::read(&victim).unwrap();
                std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
                let one = [id.clone()];
                let r = run(
                    cadence(home.path()),
                    &check_args(copy.path().to_str().unwrap(), &one),
                );
                assert_eq!(r.code, Some(3), "{id}/{}: {r:?}", spec.name);
                let line = r
                    .stdout
                    .lines()
                    .find(|l| l.trim_start().starts_with(&spec.name))
                    .unwrap();
                assert!(line.contains("CORRUPT"), "{line}");
            }
        }
    }
}

/// A legacy (pre-zip) pickle as the Turbo-VAED checkpoint passes the file-level check (it
/// starts like a pickle) but no loader reads it: `check` now says so, in the loader's words.
#[test]
fn a_legacy_pickle_turbo_checkpoint_is_refused_with_the_loaders_reason() {
    let manifest = Manifest::embedded().unwrap();
    let component = manifest.get("turbo_vae").unwrap();
    let (sample, _) = sample_dirs(&manifest)
        .into_iter()
        .find(|(_, ids)| ids.iter().any(|i| i == "turbo_vae"))
        .expect("a Turbo-VAED loader sample");
    let home = tempfile::tempdir().unwrap();
    let weights = home.path().join("w");
    let dir = weights.join(&component.dir);
    copy_tree(&sample.join(&component.dir), &dir);
    // protocol 2: an empty dict, as `torch.save(..., _use_new_zipfile_serialization=False)`
    // starts its stream.
    std::fs::write(dir.join(turbo::CHECKPOINT_FILE), b"\x80\x02}q\x00.").unwrap();
    let r = run(
        cadence(home.path()),
        &check_args(weights.to_str().unwrap(), &["turbo_vae".to_string()]),
    );
    assert_eq!(r.code, Some(3), "{r:?}");
    let reason = codec_loader_error("turbo_vae", &dir);
    assert!(reason.contains("legacy (pre-1.6) torch.save files are not supported"));
    assert!(
        r.stdout.contains(&format!("tensors: {reason}")),
        "loader: {reason}\ncheck:\n{}",
        r.stdout
    );
    assert!(r.error_line().contains("legacy"), "{}", r.error_line());
}

/// Relabels the stored type of `key` in a safetensors file (the bytes stay; only the header
/// changes), as a damaged or hand-edited file would have it.
fn relabel_dtype(file: &Path, key: &str, dtype: &str) {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header[key]["dtype"] = Value::from(dtype);
    let text = serde_json::to_string(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(file, out).unwrap();
}

/// Relabels `stored` in `file` from F32 to I32 and expects `cadence <args>` (exit 3) and the
/// loader (`loader_error`) to refuse it with the same line naming `model_key`, the stored and
/// the accepted types.
fn relabelled_is_refused(
    home: &Path,
    args: &[&str],
    file: &Path,
    stored: &str,
    model_key: &str,
    loader_error: impl FnOnce() -> String,
) -> Result<()> {
    relabel_dtype(file, stored, "I32");
    let want =
        format!("wrong dtype: {model_key} is stored as i32, the model reads f16, bf16, f32, f64");
    let r = run(cadence(home), args);
    expect(r.code == Some(3), || format!("relabelled: {r:?}"))?;
    expect(r.stdout.contains(&format!("tensors: {want}")), || {
        r.stdout.clone()
    })?;
    let loader = loader_error();
    expect(loader.contains(&want), || format!("loader: {loader}"))
}

/// The first tensor (by name) of a safetensors file stored as f32 whose name has `part`.
fn an_f32_tensor(file: &Path, part: &str) -> String {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: std::collections::BTreeMap<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .into_iter()
        .find(|(k, v)| k.contains(part) && v["dtype"] == "F32")
        .map(|(k, _)| k)
        .unwrap_or_else(|| panic!("no f32 tensor with {part} in {}", file.display()))
}

/// A complete audio VAE (Stable Audio Open's layout, the parity case's tiny weights) passes;
/// the same file with one tensor relabelled from F32 to I32 is refused by `check` and by the
/// loader, naming the key, the stored and the accepted types.
#[test]
fn the_audio_vae_is_verified_and_a_relabelled_tensor_is_refused() {
    check_all(&["oobleck"], |case| {
        let home = tempfile::tempdir().unwrap();
        let weights = home.path().join("w");
        let manifest = Manifest::embedded().unwrap();
        let dir = weights.join(&manifest.get("stable_audio").unwrap().dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let tensors: std::collections::HashMap<String, candle_core::Tensor> = case
            .tensors("weights.safetensors")?
            .into_iter()
            .map(|(k, t)| (format!("{}{k}", oobleck::CHECKPOINT_PREFIX), t))
            .collect();
        let model = dir.join(oobleck::CHECKPOINT_FILE);
        candle_core::safetensors::save(&tensors, &model)?;
        let config = serde_json::json!({
            "sample_rate": case.get("/config/sample_rate").cloned().unwrap_or(44100.into()),
            "model": {"pretransform": {"config": case.get("/config/pretransform_config")}},
        });
        std::fs::write(dir.join(oobleck::CONFIG_FILE), config.to_string())
            .map_err(|e| Error::io(&dir, e))?;
        let ids = ["stable_audio".to_string()];
        let args = check_args(weights.to_str().unwrap(), &ids);

        let r = run(cadence(home.path()), &args);
        expect(r.code == Some(0), || format!("complete audio VAE: {r:?}"))?;

        let stored = an_f32_tensor(&model, "decoder.");
        let key = stored.trim_start_matches(oobleck::CHECKPOINT_PREFIX);
        relabelled_is_refused(home.path(), &args, &model, &stored, key, || {
            codec_loader_error("stable_audio", &dir)
        })
    });
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

/// `config.json` for a component folder, from the case's config object at `pointer`.
fn write_config(case: &Case, pointer: &str, dir: &Path) -> Result<()> {
    let config = case
        .get(pointer)
        .ok_or_else(|| Error::Config(format!("{}: case.json has no {pointer}", case.name)))?;
    std::fs::write(dir.join("config.json"), config.to_string()).map_err(|e| Error::io(dir, e))
}

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::InvalidInput(what()))
    }
}

#[test]
fn dit_checkpoints_are_checked_tensor_by_tensor() {
    check_all(&["dit_forward"], |case| {
        let home = tempfile::tempdir().unwrap();
        let dit = home.path().join("w").join("distill");
        std::fs::create_dir_all(&dit).unwrap();
        std::fs::copy(
            case.file("weights.safetensors"),
            dit.join("model.safetensors"),
        )
        .map_err(|e| Error::io(&dit, e))?;
        write_config(case, "/model_config", &dit)?;
        let weights = home.path().join("w");
        let args = [
            "check",
            "--weights-dir",
            weights.to_str().unwrap(),
            "--component",
            "distill",
        ];

        let r = run(cadence(home.path()), &args);
        expect(r.code == Some(0), || format!("with its config: {r:?}"))?;

        // Without its config.json the folder is held against the 15B preset.
        std::fs::remove_file(dit.join("config.json")).map_err(|e| Error::io(&dit, e))?;
        let r = run(cadence(home.path()), &args);
        expect(r.code == Some(3), || format!("against the preset: {r:?}"))?;
        expect(r.stdout.contains("tensors: wrong shape:"), || {
            r.stdout.clone()
        })?;
        expect(r.error_line().contains("distill: wrong shape"), || {
            r.stderr.clone()
        })?;

        // With its config back and one float tensor relabelled I32: refused by check and by
        // the loader with the same line (both used to accept it).
        write_config(case, "/model_config", &dit)?;
        let file = dit.join("model.safetensors");
        let key = an_f32_tensor(&file, "norm");
        relabelled_is_refused(home.path(), &args, &file, &key, &key, || {
            DitModel::load_dir(&dit, DitVariant::Distilled, DType::F32, &Device::Cpu)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        })
    });
}

#[test]
fn the_text_encoder_is_checked_under_its_encoder_prefix() {
    check_all(&["t5gemma_encoder"], |case| {
        let home = tempfile::tempdir().unwrap();
        let weights = home.path().join("w");
        let manifest = Manifest::embedded().unwrap();
        let component = manifest.get("t5gemma").unwrap();
        let dir = weights.join(&component.dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_config(case, "/config_encoder", &dir)?;
        // Tokenizer files only need to be JSON for the file-level check.
        for f in component.files.iter().filter(|f| f.name != "config.json") {
            std::fs::write(dir.join(&f.name), "{}").map_err(|e| Error::io(&dir, e))?;
        }
        // One shard and its index, as the Hub lays the real model out.
        let shard = "model-00001-of-00001.safetensors";
        std::fs::copy(case.file("weights.safetensors"), dir.join(shard))
            .map_err(|e| Error::io(&dir, e))?;
        let keys: Vec<String> = case.tensors("weights.safetensors")?.into_keys().collect();
        let map: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| (k.clone(), Value::from(shard)))
            .collect();
        let index = serde_json::json!({ "metadata": {}, "weight_map": map });
        let index_name = component.index.as_deref().unwrap();
        std::fs::write(dir.join(index_name), index.to_string()).map_err(|e| Error::io(&dir, e))?;
        let args = [
            "check",
            "--weights-dir",
            weights.to_str().unwrap(),
            "--component",
            "t5gemma",
        ];

        let r = run(cadence(home.path()), &args);
        expect(r.code == Some(0), || {
            format!("tiny encoder with its config: {r:?}")
        })?;

        // The real 9B encoder config (as the Hub's encoder-decoder config.json nests it):
        // the tiny tensors no longer fit.
        let real = cases_of(&["t5gemma_real_config"])?;
        let real = real
            .first()
            .and_then(|c| c.get("/encoder_config"))
            .ok_or_else(|| {
                Error::Config("no t5gemma_real_config case with encoder_config".into())
            })?;
        let nested = serde_json::json!({ "encoder": real });
        std::fs::write(dir.join("config.json"), nested.to_string())
            .map_err(|e| Error::io(&dir, e))?;
        let r = run(cadence(home.path()), &args);
        expect(r.code == Some(3), || format!("with the real config: {r:?}"))?;
        expect(
            r.stdout.contains("tensors: wrong shape: model.encoder."),
            || r.stdout.clone(),
        )
    });
}
