//! Behaviour of the sampler outside the fixtures: determinism, error paths, audio policy.

use std::cell::Cell;

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::cfg::SrGuidance;
use crate::noise::SeededNoise;
use crate::scheduler::SolverKind;
use crate::shapes::LatentSize;
use crate::velocity::{Velocity, VelocityInput};

/// `v = 0.5 x + mean(text)` for both streams; counts calls.
struct Linear {
    calls: Cell<usize>,
}

impl Linear {
    fn new() -> Self {
        Self {
            calls: Cell::new(0),
        }
    }
}

impl VelocityModel for Linear {
    fn velocity(&self, input: &VelocityInput<'_>) -> Result<Velocity> {
        self.calls.set(self.calls.get() + 1);
        let c = f64::from(input.text.features.mean_all()?.to_scalar::<f32>()?);
        Ok(Velocity {
            video: input.video.affine(0.5, c)?,
            audio: input.audio.affine(0.5, c)?,
        })
    }
}

/// Returns a video velocity of the wrong shape.
struct Broken;

impl VelocityModel for Broken {
    fn velocity(&self, input: &VelocityInput<'_>) -> Result<Velocity> {
        Ok(Velocity {
            video: input.video.narrow(2, 0, 1)?,
            audio: input.audio.clone(),
        })
    }
}

fn text(value: f32) -> TextContext {
    let features = Tensor::full(value, (1, 4, 8), &Device::Cpu).unwrap();
    TextContext::new(features, 3).unwrap()
}

fn inputs(sr: bool) -> SamplingInputs {
    let base = LatentSize {
        height: 2,
        width: 2,
    };
    let sr_size = sr.then_some(LatentSize {
        height: 4,
        width: 4,
    });
    SamplingInputs {
        shapes: LatentShapes::new(9, base, sr_size).unwrap(),
        text: text(0.1),
        null_text: Some(text(-0.1)),
        image: None,
        user_audio: None,
        device: Device::Cpu,
    }
}

fn vec_of(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn run(config: SamplerConfig, inputs: &SamplingInputs, seed: u64) -> Result<SampledLatents> {
    let (base, sr) = (Linear::new(), Linear::new());
    Sampler::new(&base, config).with_sr_model(&sr).sample(
        inputs,
        &mut SeededNoise::new(seed),
        &mut NoObserver,
    )
}

#[test]
fn seeded_runs_are_reproducible() {
    let config = SamplerConfig::distilled().with_sr(SrStage::default());
    let i = inputs(true);
    let a = run(config.clone(), &i, 3).unwrap();
    let b = run(config.clone(), &i, 3).unwrap();
    let c = run(config, &i, 4).unwrap();
    assert_eq!(a.video.dims(), &[1, 48, 3, 4, 4]);
    assert_eq!(a.audio.dims(), &[1, 9, 64]);
    assert_eq!(vec_of(&a.video), vec_of(&b.video));
    assert_eq!(vec_of(&a.audio), vec_of(&b.audio));
    assert_ne!(vec_of(&a.video), vec_of(&c.video));
    assert_eq!(a.audio_output, AudioOutput::DecodeLatent);
}

#[test]
fn guided_base_makes_two_calls_per_step() {
    let model = Linear::new();
    let mut config = SamplerConfig::base();
    config.base.num_steps = 4;
    Sampler::new(&model, config)
        .sample(&inputs(false), &mut SeededNoise::new(0), &mut NoObserver)
        .unwrap();
    assert_eq!(model.calls.get(), 8);
}

#[test]
fn audio_driven_default_keeps_the_user_audio() {
    let mut i = inputs(false);
    let user = Tensor::rand(-1f32, 1., (1, 9, 64), &Device::Cpu).unwrap();
    i.user_audio = Some(user.clone());
    for config in [SamplerConfig::base(), SamplerConfig::distilled()] {
        let out = run(config.clone(), &i, 1).unwrap();
        assert_eq!(vec_of(&out.audio), vec_of(&user));
        assert_eq!(out.audio_output, AudioOutput::UserOriginal);
    }
    let mut reference = SamplerConfig::distilled();
    reference.audio_driven = AudioDrivenPolicy::MatchReference;
    let out = run(reference, &i, 1).unwrap();
    assert_ne!(vec_of(&out.audio), vec_of(&user));
    assert_eq!(out.audio_output, AudioOutput::DecodeLatent);
}

#[test]
fn refuses_incomplete_inputs() {
    let model = Linear::new();
    let mut noise = SeededNoise::new(0);
    // SR asked for but no SR stage.
    let err = Sampler::new(&model, SamplerConfig::base())
        .sample(&inputs(true), &mut noise, &mut NoObserver)
        .unwrap_err();
    assert!(err.to_string().contains("super-resolution"), "{err}");
    // CFG without the negative prompt.
    let mut i = inputs(false);
    i.null_text = None;
    let err = Sampler::new(&model, SamplerConfig::base())
        .sample(&i, &mut noise, &mut NoObserver)
        .unwrap_err();
    assert!(err.to_string().contains("negative prompt"), "{err}");
    // ...but the distilled model needs none.
    assert!(Sampler::new(&model, SamplerConfig::distilled())
        .sample(&i, &mut noise, &mut NoObserver)
        .is_ok());
    // User audio of the wrong length.
    let mut i = inputs(false);
    i.user_audio = Some(Tensor::zeros((1, 8, 64), DType::F32, &Device::Cpu).unwrap());
    assert!(run(SamplerConfig::base(), &i, 0).is_err());
    // TI2V + SR without the SR-size image.
    let mut i = inputs(true);
    i.image = Some(ImageLatents {
        base: Tensor::zeros((1, 48, 1, 2, 2), DType::F32, &Device::Cpu).unwrap(),
        sr: None,
    });
    let config = SamplerConfig::base().with_sr(SrStage {
        guidance: Some(SrGuidance::default()),
        ..SrStage::default()
    });
    let err = run(config, &i, 0).unwrap_err();
    assert!(err.to_string().contains("SR size"), "{err}");
    // A grid the reference's UniPC cannot run.
    let mut config = SamplerConfig::base();
    config.base.num_steps = 600;
    assert!(run(config, &inputs(false), 0).is_err());
}

#[test]
fn wrong_model_output_is_reported() {
    let err = Sampler::new(&Broken, SamplerConfig::distilled())
        .sample(&inputs(false), &mut SeededNoise::new(0), &mut NoObserver)
        .unwrap_err();
    assert!(err.to_string().contains("returned velocities"), "{err}");
}

#[test]
fn observer_errors_abort() {
    struct Stop;
    impl SamplingObserver for Stop {
        fn step_finished(&mut self, record: &StepRecord<'_>) -> Result<()> {
            if record.info.index == 1 {
                return Err(Error::InvalidInput("cancelled".into()));
            }
            Ok(())
        }
    }
    let model = Linear::new();
    let err = Sampler::new(&model, SamplerConfig::distilled())
        .sample(&inputs(false), &mut SeededNoise::new(0), &mut Stop)
        .unwrap_err();
    assert!(err.to_string().contains("cancelled"));
    assert_eq!(model.calls.get(), 2);
}

#[test]
fn first_frame_is_pinned() {
    let mut i = inputs(false);
    let image = Tensor::full(7f32, (1, 48, 1, 2, 2), &Device::Cpu).unwrap();
    i.image = Some(ImageLatents {
        base: image,
        sr: None,
    });
    let out = run(SamplerConfig::distilled(), &i, 0).unwrap();
    let first = out.video.narrow(2, 0, 1).unwrap();
    assert!(vec_of(&first).iter().all(|&v| v == 7.0));
}

/// Counts the draws and their shapes.
struct CountingNoise {
    inner: SeededNoise,
    shapes: Vec<Vec<usize>>,
}

impl NoiseSource for CountingNoise {
    fn standard_normal(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        self.shapes.push(shape.to_vec());
        self.inner.standard_normal(shape, device)
    }
}

#[test]
fn the_sr_stage_runs_whichever_solver_it_is_given() {
    let draws = |solver| {
        let (base, sr) = (Linear::new(), Linear::new());
        let config = SamplerConfig::distilled().with_sr(SrStage {
            solver,
            ..SrStage::default()
        });
        let mut noise = CountingNoise {
            inner: SeededNoise::new(1),
            shapes: Vec::new(),
        };
        let out = Sampler::new(&base, config)
            .with_sr_model(&sr)
            .sample(&inputs(true), &mut noise, &mut NoObserver)
            .unwrap();
        assert_eq!(sr.calls.get(), SrStage::default().num_steps);
        (noise.shapes, vec_of(&out.video))
    };
    let (unipc, unipc_video) = draws(SolverKind::UNIPC);
    let (distilled, distilled_video) = draws(SolverKind::DISTILLED);
    // The distilled update draws once per SR step, video-shaped (SR audio is fixed conditioning);
    // UniPC draws nothing. Everything before the SR steps is the same.
    let steps = SrStage::default().num_steps;
    assert_eq!(distilled.len(), unipc.len() + steps);
    assert_eq!(distilled[..unipc.len()], unipc[..]);
    assert!(distilled[unipc.len()..]
        .iter()
        .all(|s| s == &[1, 48, 3, 4, 4]));
    assert_ne!(unipc_video, distilled_video);
}

/// Euler's method, `x + (σ_next − σ) v`: a solver defined outside the scheduler module, as a
/// user's own would be.
struct Euler {
    sigmas: Vec<f32>,
}

impl crate::scheduler::Solver for Euler {
    fn step(
        &mut self,
        index: usize,
        velocity: &Tensor,
        sample: &Tensor,
        _noise: &mut dyn crate::noise::NoiseSource,
    ) -> Result<Tensor> {
        let h = f64::from(self.sigmas[index + 1] - self.sigmas[index]);
        Ok((sample + velocity.affine(h, 0.0)?)?)
    }
}

const EULER: SolverKind = SolverKind {
    name: "euler",
    draws_per_step: false,
    steps_user_audio: false,
    build: |schedule| {
        Ok(Box::new(Euler {
            sigmas: schedule.sigmas().to_vec(),
        }))
    },
};

#[test]
fn a_solver_defined_elsewhere_plugs_into_a_stage() {
    let run = |solver| {
        let model = Linear::new();
        let mut config = SamplerConfig::base();
        config.base.solver = solver;
        config.base.num_steps = 4;
        let out = Sampler::new(&model, config)
            .sample(&inputs(false), &mut SeededNoise::new(3), &mut NoObserver)
            .unwrap();
        vec_of(&out.video)
    };
    let (euler, unipc) = (run(EULER), run(SolverKind::UNIPC));
    assert!(euler.iter().all(|v| v.is_finite()));
    assert_ne!(euler, unipc);
    assert_eq!(euler, run(EULER), "deterministic per seed");
}

#[test]
fn unipc_refuses_a_grid_that_repeats_its_first_timestep() {
    let steps = (2..2000)
        .find(|&n| {
            crate::scheduler::FlowSchedule::new(n, 5.0)
                .unwrap()
                .begin_index()
                != 0
        })
        .expect("a long enough grid repeats its first timestep");
    let err = SolverKind::UNIPC
        .schedule(steps, 5.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("use fewer steps"), "{err}");
    assert!(SolverKind::DISTILLED.schedule(steps, 5.0).is_ok());
}
