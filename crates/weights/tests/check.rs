//! check() on plain weights directories: present, missing and every kind of corrupt file, and
//! the real container formats of the fixtures' loader samples.

mod support;

use std::path::Path;

use cadence_weights::{check, CheckOptions, FileStatus, Manifest, Source, WeightsRoot};
use support::{index, safetensors, torch_zip};

const MANIFEST: &str = r#"
schema = 1
[components.dit]
description = "a sharded DiT"
repo = "o/dit"
subfolder = "distill"
dir = "distill"
index = "model.safetensors.index.json"
unsharded = "model.safetensors"

[components.vae]
description = "a VAE with a config"
repo = "o/vae"
dir = "vae"
files = [
    { name = "config.json" },
    { name = "vae.pth", size = 41 },
    { name = "extra.json", optional = true },
]
"#;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// A complete weights directory for MANIFEST.
fn complete(dir: &Path) {
    write(
        dir,
        "distill/model.safetensors.index.json",
        &index(&[
            ("a", "s1.safetensors"),
            ("b", "s1.safetensors"),
            ("c", "s2.safetensors"),
        ]),
    );
    write(dir, "distill/s1.safetensors", &safetensors(&["a", "b"], 4));
    write(dir, "distill/s2.safetensors", &safetensors(&["c"], 4));
    write(dir, "vae/config.json", b"{}");
    write(dir, "vae/vae.pth", &torch_zip(&[1u8; 15]));
}

fn status(report: &cadence_weights::CheckReport, component: &str, name: &str) -> FileStatus {
    let c = report
        .components
        .iter()
        .find(|c| c.id == component)
        .unwrap();
    c.files
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} not checked: {c:?}"))
        .status
        .clone()
}

fn run(dir: &Path, options: CheckOptions) -> cadence_weights::CheckReport {
    let manifest = Manifest::parse(MANIFEST, "test").unwrap();
    let root = WeightsRoot::new(vec![Source::Dir(dir.to_path_buf())]);
    check(&manifest, &["dit", "vae"], &root, &options, None).unwrap()
}

#[test]
fn a_complete_directory_passes() {
    let dir = tempfile::tempdir().unwrap();
    complete(dir.path());
    let report = run(dir.path(), CheckOptions::default());
    assert!(report.is_ok(), "{:?}", report.problems());
    assert_eq!(
        status(&report, "vae", "extra.json"),
        FileStatus::AbsentOptional
    );
    assert_eq!(
        status(&report, "dit", "s2.safetensors"),
        FileStatus::Present
    );
    let located = report.components[0].located.as_ref().unwrap();
    assert_eq!(located.dir, dir.path().join("distill"));
}

#[test]
fn every_kind_of_damage_is_named() {
    let dir = tempfile::tempdir().unwrap();
    complete(dir.path());
    let d = dir.path();
    // Truncated shard: the header no longer accounts for the length.
    let s1 = std::fs::read(d.join("distill/s1.safetensors")).unwrap();
    write(d, "distill/s1.safetensors", &s1[..s1.len() - 3]);
    // A shard without a tensor the index places in it.
    write(d, "distill/s2.safetensors", &safetensors(&["z"], 4));
    // Broken JSON, and a checkpoint of the wrong size.
    write(d, "vae/config.json", b"{\"a\":");
    write(d, "vae/vae.pth", &torch_zip(&[1u8; 14]));
    let report = run(d, CheckOptions::default());
    assert!(!report.is_ok());
    let corrupt = |c, n| match status(&report, c, n) {
        FileStatus::Corrupt(why) => why,
        other => panic!("{n}: {other:?}"),
    };
    assert!(corrupt("dit", "s1.safetensors").contains("inconsistent with the file length"));
    assert_eq!(
        corrupt("dit", "s2.safetensors"),
        "the index puts 1 tensor(s) in it that it does not hold (first: c)"
    );
    assert!(corrupt("vae", "config.json").starts_with("not valid JSON"));
    assert_eq!(corrupt("vae", "vae.pth"), "40 bytes, expected 41");
    let problems = report.problems();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems[0].starts_with("dit: ") && problems[0].ends_with("; delete it and fetch again")
    );

    // A shard the index lists but the folder lacks; a missing required file.
    std::fs::remove_file(d.join("distill/s1.safetensors")).unwrap();
    std::fs::remove_file(d.join("vae/config.json")).unwrap();
    let report = run(d, CheckOptions::default());
    assert_eq!(
        status(&report, "dit", "s1.safetensors"),
        FileStatus::Missing
    );
    assert_eq!(status(&report, "vae", "config.json"), FileStatus::Missing);
    assert!(report.problems().contains(&format!(
        "vae: {} is missing: fetch the component again",
        d.join("vae/config.json").display()
    )));
}

/// An index with a bad entry is reported once with its reason and the advice said once (it
/// used to read "...; delete it and fetch again; delete it and fetch again").
#[test]
fn a_bad_index_entry_gives_the_advice_once() {
    let dir = tempfile::tempdir().unwrap();
    complete(dir.path());
    write(
        dir.path(),
        "distill/model.safetensors.index.json",
        br#"{"weight_map": {"a": "s1.safetensors", "b": "../../escape.safetensors"}}"#,
    );
    let report = run(dir.path(), CheckOptions::default());
    let problems = report.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let line = &problems[0];
    assert!(
        line.contains("shard name `../../escape.safetensors` is not a plain relative path"),
        "{line}"
    );
    assert_eq!(line.matches("fetch again").count(), 1, "{line}");
}

#[test]
fn hashes_are_checked_when_known_and_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    complete(dir.path());
    let pinned = MANIFEST.replace(
        "{ name = \"config.json\" }",
        &format!(
            "{{ name = \"config.json\", sha256 = \"{}\" }}",
            "0".repeat(64)
        ),
    );
    let manifest = Manifest::parse(&pinned, "test").unwrap();
    let root = WeightsRoot::new(vec![Source::Dir(dir.path().to_path_buf())]);
    let quick = check(&manifest, &["vae"], &root, &CheckOptions::default(), None).unwrap();
    assert!(quick.is_ok(), "hashes are only read when asked for");
    let full = check(
        &manifest,
        &["vae"],
        &root,
        &CheckOptions { hashes: true },
        None,
    )
    .unwrap();
    assert!(matches!(
        status(&full, "vae", "config.json"),
        FileStatus::Corrupt(why) if why.starts_with("sha256 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a, expected 0000")
    ));
}

#[test]
fn a_single_file_may_replace_the_index_and_absent_components_list_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "distill/model.safetensors",
        &safetensors(&["a"], 2),
    );
    let report = run(dir.path(), CheckOptions::default());
    assert_eq!(
        status(&report, "dit", "model.safetensors"),
        FileStatus::Present
    );
    assert_eq!(
        status(&report, "dit", "model.safetensors.index.json"),
        FileStatus::AbsentOptional
    );
    // No vae/ folder at all: not found, with the places searched.
    let vae = &report.components[1];
    assert!(vae.located.is_none());
    assert_eq!(status(&report, "vae", "vae.pth"), FileStatus::Missing);
    let problems = report.problems();
    assert_eq!(
        problems,
        [format!(
            "vae: not found (looked in weights directory {}): fetch it, or pass the folder that holds it with --weights-dir",
            dir.path().display()
        )]
    );
}

#[test]
fn the_first_source_holding_a_component_wins() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    complete(second.path());
    write(first.path(), "vae/config.json", b"{}");
    let manifest = Manifest::parse(MANIFEST, "test").unwrap();
    let root = WeightsRoot::new(vec![
        Source::Dir(first.path().to_path_buf()),
        Source::Dir(second.path().to_path_buf()),
    ]);
    let vae = manifest.get("vae").unwrap();
    assert_eq!(
        root.locate(vae).unwrap().source,
        Source::Dir(first.path().to_path_buf())
    );
    let dit = manifest.get("dit").unwrap();
    assert_eq!(root.locate(dit).unwrap().dir, second.path().join("distill"));
    let err = WeightsRoot::new(vec![Source::Dir(first.path().to_path_buf())])
        .component_dir(dit)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "component `dit` was not found locally (looked in weights directory {}): fetch it, or pass the folder that holds `distill/` with --weights-dir",
            first.path().display()
        )
    );
}

/// The fixtures' loader samples are real `torch.save` zips and safetensors in the layout of a
/// weights directory; every component of the embedded manifest found there must pass, and a
/// truncated copy of each file must be caught.
#[test]
fn real_container_formats_pass_and_their_truncations_do_not() {
    let samples = cadence_parity::fixtures::root().join("codecs/loader_samples");
    let manifest = Manifest::embedded().unwrap();
    let root = WeightsRoot::new(vec![Source::Dir(samples.clone())]);
    let present: Vec<&str> = manifest
        .components()
        .iter()
        .filter(|c| root.locate(c).is_some())
        .map(|c| c.id.as_str())
        .collect();
    assert!(
        !present.is_empty(),
        "no component folder in {}",
        samples.display()
    );
    let report = check(&manifest, &present, &root, &CheckOptions::default(), None).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems());

    let copy = tempfile::tempdir().unwrap();
    let copy_root = WeightsRoot::new(vec![Source::Dir(copy.path().to_path_buf())]);
    for c in &report.components {
        for f in &c.files {
            let Some(src) = f.path.as_ref().filter(|p| p.is_file()) else {
                continue;
            };
            let dir = &manifest.get(&c.id).unwrap().dir;
            let bytes = std::fs::read(src).unwrap();
            // Fresh copy of the component with this one file cut short.
            let _ = std::fs::remove_dir_all(copy.path().join(dir));
            for g in &c.files {
                if let Some(p) = g.path.as_ref().filter(|p| p.is_file()) {
                    write(&copy.path().join(dir), &g.name, &std::fs::read(p).unwrap());
                }
            }
            write(
                &copy.path().join(dir),
                &f.name,
                &bytes[..bytes.len() * 3 / 4],
            );
            let r = check(
                &manifest,
                &[c.id.as_str()],
                &copy_root,
                &CheckOptions::default(),
                None,
            )
            .unwrap();
            assert!(
                matches!(status(&r, &c.id, &f.name), FileStatus::Corrupt(_)),
                "truncated {} not caught",
                src.display()
            );
            println!("checked {} and its truncation", src.display());
        }
    }
}
