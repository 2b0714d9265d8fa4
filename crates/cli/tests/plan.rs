//! `cadence plan`: the arrangement for a card, as a table or JSON, without loading anything.

mod support;

use serde_json::Value;
use support::{cadence, run};

fn plan(args: &[&str]) -> (Option<i32>, Value, String) {
    let home = tempfile::tempdir().unwrap();
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let r = run(cadence(home.path()), &all);
    let json = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r.code, json, r.stderr)
}

#[test]
fn every_resolution_fits_24_gb_and_540p_fits_16_gb() {
    for (resolution, gb) in [("256p", "16GB"), ("540p", "16GB"), ("1080p", "24GB")] {
        let (code, json, stderr) = plan(&["--resolution", resolution, "--max-memory", gb]);
        assert_eq!(code, Some(0), "{resolution} on {gb}: {stderr}");
        assert_eq!(json["fits"], true);
        let stages = json["stages"].as_array().unwrap();
        let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
        let expected: &[&str] = if resolution == "256p" {
            &["encode", "base", "decode"]
        } else {
            &["encode", "base", "sr", "decode"]
        };
        assert_eq!(names, expected);
        let peak = stages
            .iter()
            .map(|s| s["peak_gb"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(peak, json["peak_gb"].as_f64().unwrap());
        assert!(peak <= json["budget_gb"].as_f64().unwrap());
    }
}

#[test]
fn a_big_card_keeps_everything_resident() {
    let (code, json, _) = plan(&["--resolution", "256p", "--max-memory", "80GB"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (&json["precision"], &json["dits"], &json["text_encoder"]),
        (&"bf16".into(), &"resident".into(), &"resident".into())
    );
    assert_eq!(json["transfer_per_clip_gb"], 0.0);
}

#[test]
fn no_fit_is_a_clear_refusal() {
    let (code, json, stderr) = plan(&["--resolution", "1080p", "--max-memory", "16GB"]);
    assert_eq!(code, Some(5), "{stderr}");
    assert_eq!(json["fits"], false, "the closest plan is still described");
    assert!(
        stderr.contains("needs at least") && stderr.contains("16.0 GB"),
        "{stderr}"
    );
    let home = tempfile::tempdir().unwrap();
    let r = run(cadence(home.path()), &["plan", "--resolution", "540p"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--max-memory"), "{r:?}");
    let table = run(
        cadence(home.path()),
        &["plan", "--resolution", "540p", "--max-memory", "24GB"],
    );
    assert_eq!(table.code, Some(0));
    assert!(table.stdout.contains("| stage | GB |"), "{}", table.stdout);
}
