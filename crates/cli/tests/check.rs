//! `cadence check` on real folders: an empty one, the fixtures' loader samples (real container
//! formats), damaged copies of them, and DiT / text-encoder checkpoints built from the parity
//! fixtures' tiny weights (the tensor-level layout check).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cadence_core::fixtures::{cases_of, check_all, root, Case};
use cadence_core::{Error, Result};
use cadence_weights::Manifest;
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

#[test]
fn the_loader_samples_are_complete_and_damage_is_reported() {
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
        assert_eq!(r.code, Some(0), "{r:?}");
        for id in &ids {
            let line = r
                .stdout
                .lines()
                .find(|l| l.starts_with(id.as_str()))
                .unwrap();
            assert!(line.contains(" ok "), "{line}");
        }
        println!("checked {} ({})", dir.display(), ids.join(", "));

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
