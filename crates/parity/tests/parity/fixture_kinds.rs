//! Every fixture kind under the fixture root has exactly one checker in [`CHECKERS`], so
//! `cadence selftest`, which dispatches on kind, runs every case.

use cadence_parity::fixtures::{all_cases, root};
use cadence_parity::{checker_for, CHECKERS};

#[test]
fn every_fixture_case_has_a_checker() {
    let cases = all_cases().unwrap_or_else(|e| panic!("fixture discovery failed: {e}"));
    let orphans: Vec<String> = cases
        .iter()
        .filter(|c| checker_for(&c.kind).is_none())
        .map(|c| format!("{} (kind {}, {})", c.name, c.kind, c.dir.display()))
        .collect();
    assert!(
        orphans.is_empty(),
        "{} of {} cases under {} have a kind no checker lists:\n{}",
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
    for checker in &CHECKERS {
        for kind in checker.kinds {
            if let Some((other, _)) = seen.iter().find(|(_, k)| k == kind) {
                panic!(
                    "kind {kind} is listed by both {other} and {}",
                    checker.component
                );
            }
            seen.push((checker.component, kind));
        }
    }
}

#[test]
fn production_checks_cover_only_their_checkers_kinds() {
    for checker in &CHECKERS {
        if let Some((production, _)) = checker.production {
            assert!(
                production.iter().all(|k| checker.kinds.contains(k)),
                "{}: a production kind it does not own",
                checker.component
            );
        }
    }
}
