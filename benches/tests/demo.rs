//! The harness on the embedded demo model at a tiny size: every stage of every run is
//! reported, cold runs include building the models, the step and operation counts add up.

use cadence_bench::{run, BenchConfig, GemmShape, Scenario};
use cadence_pipeline::engine::EngineBuilder;
use cadence_pipeline::{BaseModel, GenerationRequest, Mode};

fn scenario(dit: BaseModel, model: &str) -> Scenario {
    let mut request = GenerationRequest::new("a small test");
    (request.width, request.height, request.seconds) = (64, 64, 1);
    Scenario {
        resolution: "64px".into(),
        model: model.into(),
        builder: EngineBuilder::demo().mode(Mode {
            dit,
            ..Mode::distilled_t2v()
        }),
        weights: "demo",
        request,
        device: candle_core::Device::Cpu,
        device_name: "cpu".into(),
    }
}

#[test]
fn every_stage_of_every_run_is_reported() {
    let config = BenchConfig {
        scenarios: vec![scenario(BaseModel::Distilled, "distilled")],
        runs: 2,
        cold_runs: 2,
        gemm: GemmShape {
            m: 64,
            k: 64,
            n: 64,
        },
    };
    let mut lines = Vec::new();
    let report = run(&config, &mut |l: &str| lines.push(l.to_string())).unwrap();
    assert!(report.demo && report.random_weights);
    assert!(report.gemm_peak.tflops > 0.0);
    assert!(!report.memory.available);
    assert_eq!(
        lines.iter().filter(|l| l.contains("cold run")).count(),
        2,
        "{lines:?}"
    );

    let s = &report.scenarios[0];
    assert_eq!((s.width, s.height, s.frames), (64, 64, 25));
    let keys =
        |p: &cadence_bench::Phase| -> Vec<&str> { p.stages.iter().map(|x| x.stage).collect() };
    let warm = [
        "encode_text",
        "denoise_base",
        "decode_video",
        "decode_audio",
        "mux",
    ];
    assert_eq!(keys(&s.warm), warm);
    assert_eq!(keys(&s.cold)[0], "load_models");
    assert_eq!(keys(&s.cold)[1..], warm);
    assert_eq!((s.cold.runs, s.warm.runs), (2, 2));
    for phase in [&s.cold, &s.warm] {
        for stage in &phase.stages {
            assert_eq!(stage.seconds.samples.len(), phase.runs, "{}", stage.stage);
        }
        // A clip's total covers its stages.
        let stages: f64 = phase.stages.iter().map(|x| x.seconds.median).sum();
        assert!(phase.total_seconds.median > 0.0 && stages > 0.0);
    }
    let denoise = s
        .warm
        .stages
        .iter()
        .find(|x| x.stage == "denoise_base")
        .unwrap();
    assert_eq!(denoise.steps, Some(8));
    assert_eq!(denoise.forwards, Some(8));
    assert_eq!(denoise.step_seconds.as_ref().unwrap().samples.len(), 2 * 8);
    assert!(denoise.tflop.unwrap() > 0.0 && denoise.fraction_of_gemm_peak.unwrap() > 0.0);
    let decode = s
        .warm
        .stages
        .iter()
        .find(|x| x.stage == "decode_video")
        .unwrap();
    assert!(decode.tflop.is_none() && decode.flops_note.is_some());

    let md = report.to_markdown();
    assert!(md.contains("## 64px distilled"), "{md}");
    assert!(md.contains("| denoise (base) |"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["scenarios"][0]["weights"], "demo");
    assert!(s.placement.contains("resident"), "{}", s.placement);
    assert!(s.planned_peak_bytes > 0);
}

#[test]
fn nothing_to_run_is_an_error() {
    let config = BenchConfig {
        scenarios: vec![],
        runs: 1,
        cold_runs: 1,
        gemm: GemmShape::demo(),
    };
    assert!(run(&config, &mut |_: &str| {}).is_err());
    let config = BenchConfig {
        scenarios: vec![scenario(BaseModel::Base, "base")],
        runs: 0,
        ..config
    };
    assert!(run(&config, &mut |_: &str| {}).is_err());
}
