//! Every fixture kind under the fixture root has a checker: each case's `kind` is in the `KINDS`
//! of exactly one crate's parity module, so the GPU self-test, which dispatches on kind, runs
//! every case.

use cadence_core::fixtures::{all_cases, root};

/// The parity modules, by crate.
const CHECKERS: &[(&str, &[&str])] = &[
    ("cadence-model", cadence_model::parity::KINDS),
    ("cadence-text", cadence_text::parity::KINDS),
    ("cadence-codec", cadence_codec::parity::KINDS),
    ("cadence-media", cadence_media::parity::KINDS),
    ("cadence-pipeline", cadence_pipeline::parity::KINDS),
];

#[test]
fn every_fixture_case_has_a_checker() {
    let cases = all_cases().unwrap_or_else(|e| panic!("fixture discovery failed: {e}"));
    let orphans: Vec<String> = cases
        .iter()
        .filter(|c| {
            !CHECKERS
                .iter()
                .any(|(_, kinds)| kinds.contains(&c.kind.as_str()))
        })
        .map(|c| format!("{} (kind {}, {})", c.name, c.kind, c.dir.display()))
        .collect();
    assert!(
        orphans.is_empty(),
        "{} of {} cases under {} have a kind no crate's parity::KINDS lists:\n{}",
        orphans.len(),
        cases.len(),
        root().display(),
        orphans.join("\n")
    );
    println!("{} cases, every kind has a checker", cases.len());
}

#[test]
fn no_kind_has_two_checkers() {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (krate, kinds) in CHECKERS {
        for kind in *kinds {
            if let Some((other, _)) = seen.iter().find(|(_, k)| k == kind) {
                panic!("kind {kind} is listed by both {other} and {krate}");
            }
            seen.push((krate, kind));
        }
    }
}
