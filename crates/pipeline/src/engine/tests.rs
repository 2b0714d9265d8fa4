//! The engine's report on the demo model: per-step times and the work counted per stage.

use super::{Engine, EngineBuilder, StageKind};
use crate::models::{BaseModel, Mode, Resolution};
use crate::GenerationRequest;

fn demo(dit: BaseModel, resolution: Resolution) -> Engine {
    EngineBuilder::demo()
        .mode(Mode {
            dit,
            resolution,
            ..Mode::distilled_t2v()
        })
        .build(&mut ())
        .unwrap()
}

fn small_request(prompt: &str) -> GenerationRequest {
    let mut request = GenerationRequest::new(prompt);
    (request.width, request.height, request.seconds, request.seed) = (64, 64, 1, 5);
    request
}

#[test]
fn each_step_is_timed_and_each_forward_counted() {
    let engine = demo(BaseModel::Distilled, Resolution::P256);
    let steps = engine.sampler_config().base.num_steps;
    let (_, report) = engine.generate_clip(&small_request("abc")).unwrap();

    assert_eq!(report.denoise.len(), 1);
    let base = &report.denoise[0];
    assert_eq!(base.stage, StageKind::DenoiseBase);
    assert_eq!(base.step_times.len(), steps);
    // The distilled model runs one unguided pass per step, all of the same shape.
    assert_eq!(base.work.forwards, steps);
    assert!(base.work.flops > 0 && base.work.flops % steps as u64 == 0);
    assert!(base.work.tokens > 0);
    // The stage's time covers its steps.
    let stage = report
        .timings
        .iter()
        .find(|(s, _)| *s == StageKind::DenoiseBase)
        .unwrap()
        .1;
    assert!(base.step_times.iter().sum::<std::time::Duration>() <= stage);

    // The byte tokenizer: one token per byte plus the special tokens, one prompt (no
    // guidance), and a positive operation count.
    assert_eq!(report.text.tokens.len(), 1);
    assert!(report.text.tokens[0] >= 3);
    assert!(report.text.flops > 0);
    // Operations grow with the prompt.
    let (_, longer) = engine
        .generate_clip(&small_request("a much longer prompt than before"))
        .unwrap();
    assert!(longer.text.tokens[0] > report.text.tokens[0]);
    assert!(longer.text.flops > report.text.flops);
    assert!(longer.denoise[0].work.tokens > base.work.tokens);
}

#[test]
fn guided_and_super_resolution_stages_are_reported_separately() {
    let mut engine = demo(BaseModel::Base, Resolution::P540);
    engine.set_base_steps(2).unwrap();
    let mut request = small_request("abc");
    (request.sr_width, request.sr_height) = (Some(128), Some(96));
    let (_, report) = engine.generate_clip(&request).unwrap();

    let stages: Vec<StageKind> = report.denoise.iter().map(|d| d.stage).collect();
    assert_eq!(
        stages,
        [StageKind::DenoiseBase, StageKind::DenoiseSuperResolution]
    );
    let (base, sr) = (&report.denoise[0], &report.denoise[1]);
    assert_eq!(base.step_times.len(), 2);
    // Guidance: the conditional and the unconditional pass in every base step.
    assert_eq!(base.work.forwards, 4);
    let sr_steps = engine.sampler_config().sr.as_ref().unwrap().num_steps;
    assert_eq!(sr.step_times.len(), sr_steps);
    assert!(sr.work.forwards >= sr_steps);
    assert!(sr.work.flops > 0);
    // The unconditional passes carry the negative prompt: the longest base sequence holds
    // more text rows than the prompt has tokens.
    assert!(base.work.tokens > report.text.tokens[0]);
    // The prompt and the negative prompt both went through the encoder.
    assert_eq!(report.text.tokens.len(), 2);
}

#[test]
fn the_soundtrack_leaves_headroom_and_the_demo_noise_is_quiet() {
    let engine = demo(BaseModel::Distilled, Resolution::P256);
    let (clip, report) = engine.generate_clip(&small_request("loud")).unwrap();
    assert_eq!(clip.audio.len(), report.info.audio_samples());
    let peak = clip.audio.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!(peak <= super::PEAK, "peak {peak}");
    for c in 0..2 {
        let channel: Vec<f32> = clip.audio.iter().skip(c).step_by(2).copied().collect();
        let n = channel.len() as f32;
        let mean = channel.iter().sum::<f32>() / n;
        let rms = (channel.iter().map(|s| s * s).sum::<f32>() / n).sqrt();
        assert!(mean.abs() < 1e-3, "channel {c}: DC {mean}");
        assert!((0.05..0.15).contains(&rms), "channel {c}: RMS {rms}");
    }
    let mut loud = vec![2.0, -4.0, 1.0, 0.5];
    super::leave_headroom(&mut loud);
    assert_eq!(loud.iter().fold(0f32, |m, s| m.max(s.abs())), super::PEAK);
    assert!((loud[0] / loud[2] - 2.0).abs() < 1e-6, "a gain, not a clip");
}
