//! `cadence selftest` end to end on the CPU: every fixture case passes; a copy of a case with
//! one expected value changed fails, naming the case and the tensor; kinds nobody checks fail.

mod support;

use std::path::{Path, PathBuf};

use cadence_parity::fixtures::{all_cases, Case};
use safetensors::{Dtype, SafeTensors};
use support::{cadence, run, Run};

/// `cadence selftest --device cpu ARGS` with the fixtures at `fixtures` (the default root when
/// `None`).
fn selftest(fixtures: Option<&Path>, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = cadence(home.path());
    if let Some(root) = fixtures {
        cmd.env("CADENCE_FIXTURES", root);
    }
    let mut all = vec!["selftest", "--device", "cpu"];
    all.extend_from_slice(args);
    run(cmd, &all)
}

/// The `ok`/`FAIL` lines of a run.
fn case_lines(r: &Run) -> Vec<&str> {
    r.stdout
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("FAIL "))
        .collect()
}

#[test]
fn every_fixture_case_passes_on_the_cpu() {
    let cases = all_cases().unwrap();
    let r = selftest(None, &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    for case in &cases {
        let prefix = format!("ok {} ({}) ", case.name, case.kind);
        assert!(
            r.stdout.lines().any(|l| l.starts_with(&prefix)),
            "no `{prefix}` line:\n{}",
            r.stdout
        );
    }
    assert_eq!(case_lines(&r).len(), cases.len(), "{}", r.stdout);
    let summary = format!("{} passed, 0 failed, 0 skipped", cases.len());
    assert!(r.stdout.lines().any(|l| l == summary), "{}", r.stdout);
}

/// Total bytes of the files directly in `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// The name of the first (sorted) f32 `out.*` tensor of a case's io.safetensors, if any.
fn f32_output(case: &Case) -> Option<String> {
    let bytes = std::fs::read(case.file("io.safetensors")).ok()?;
    let file = SafeTensors::deserialize(&bytes).ok()?;
    let mut names: Vec<String> = file
        .tensors()
        .into_iter()
        .filter(|(n, t)| n.starts_with("out.") && t.dtype() == Dtype::F32)
        .map(|(n, _)| n)
        .collect();
    names.sort();
    names.into_iter().next()
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// Rewrites `io.safetensors` in `dir` with the first value of `tensor` (f32) set to 1e6.
fn corrupt(dir: &Path, tensor: &str) {
    let path = dir.join("io.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let target = tensors.iter_mut().find(|t| t.0 == tensor).unwrap();
    let old = f32::from_le_bytes(target.3[..4].try_into().unwrap());
    assert_ne!(old, 1e6);
    target.3[..4].copy_from_slice(&1e6f32.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, data)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), data).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, metadata.metadata().clone()).unwrap();
    std::fs::write(&path, out).unwrap();
}

#[test]
fn a_changed_expected_value_fails_naming_the_case() {
    // The smallest case with an f32 output, found by content (never by name).
    let (case, tensor) = all_cases()
        .unwrap()
        .into_iter()
        .filter_map(|c| f32_output(&c).map(|t| (c, t)))
        .min_by_key(|(c, _)| folder_bytes(&c.dir))
        .expect("a case with an f32 out.* tensor");
    let root = tempfile::tempdir().unwrap();
    let copy: PathBuf = root.path().join(&case.name);
    copy_folder(&case.dir, &copy);

    // The untouched copy passes: the case is self-contained, so the failure below is the
    // changed value's.
    let r = selftest(Some(root.path()), &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("1 passed, 0 failed, 0 skipped"), "{r:?}");

    corrupt(&copy, &tensor);
    let r = selftest(Some(root.path()), &[]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let fail = format!("FAIL {} ({}): ", case.name, case.kind);
    let line = case_lines(&r)
        .into_iter()
        .find(|l| l.starts_with(&fail))
        .unwrap_or_else(|| panic!("no `{fail}` line:\n{}", r.stdout));
    assert!(line.contains(&tensor), "{line}");
    assert!(r.stdout.contains("0 passed, 1 failed, 0 skipped"), "{r:?}");
    assert!(r.error_line().contains(&case.name), "{}", r.error_line());
}

#[test]
fn a_kind_without_a_checker_fails_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let case = root.path().join("odd_case");
    std::fs::create_dir(&case).unwrap();
    std::fs::write(case.join("case.json"), r#"{"kind": "mystery_kind"}"#).unwrap();
    let r = selftest(Some(root.path()), &[]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let lines = case_lines(&r);
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    assert!(
        lines[0].starts_with("FAIL odd_case (mystery_kind): no checker for kind mystery_kind"),
        "{}",
        lines[0]
    );
}

#[test]
fn an_unknown_kind_on_the_command_line_is_refused() {
    let r = selftest(None, &["--kind", "no_such_kind"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.error_line().contains("no_such_kind"),
        "{}",
        r.error_line()
    );
    assert!(
        r.error_line().contains("dit_forward"),
        "lists the known kinds"
    );
}

#[test]
fn kind_filters_run_only_those_cases() {
    let cases = all_cases().unwrap();
    let kind = "zero_snr_sigmas";
    let wanted = cases.iter().filter(|c| c.kind == kind).count();
    let r = selftest(None, &["--kind", kind]);
    if wanted == 0 {
        // Another fixture set without this kind: asking for it must fail, not pass empty.
        assert_eq!(r.code, Some(1), "{r:?}");
        return;
    }
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(case_lines(&r)
        .iter()
        .all(|l| l.contains(&format!("({kind})"))));
    let summary = format!(
        "{wanted} passed, 0 failed, {} skipped",
        cases.len() - wanted
    );
    assert!(r.stdout.lines().any(|l| l == summary), "{}", r.stdout);
}
