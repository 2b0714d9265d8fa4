//! `sampling_loop` cases: CFG rules, SR glue (resize, re-noise, audio conditioning) and the
//! end-to-end scenarios of the reference's `evaluate`, replayed through the real [`Sampler`] with
//! the fixture's stub velocity model and the recorded noise draws, on the device. Schedules and
//! guidance tables are CPU scalars by nature.

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::fixtures::Case;
use cadence_core::{Error, Result};

use super::common::{
    compare, f32_tensor, i64_tensor, json, json_f64, json_usize, scalar_usize, tol_matching, Io,
    Tol,
};
use super::stub_velocity::StubVelocityModel;
use cadence_pipeline::cfg::{guide, guide_per_frame, BaseGuidance, EarlyFrameCap, SrGuidance};
use cadence_pipeline::sampler::{
    audio_latent_from_vae_layout, AudioDrivenPolicy, AudioOutput, BaseStage, SamplerConfig,
    SamplingObserver, SrStage, StepRecord,
};
use cadence_pipeline::scheduler::{FlowSchedule, SolverKind, ZeroSnrTable};
use cadence_pipeline::sr::{noisy_audio_condition, renoise_video, resize_trilinear};
use cadence_pipeline::{
    GenerationRequest, ImageLatents, LatentShapes, Limits, ReplayNoise, SampledLatents, Sampler,
    SamplingInputs, Stage, TextContext,
};

/// `config_defaults_used`, with a scenario's `overrides` on top.
struct Params<'a> {
    defaults: &'a Value,
    overrides: Option<&'a Value>,
}

impl Params<'_> {
    fn value(&self, key: &str) -> Result<&Value> {
        self.overrides
            .and_then(|o| o.get(key))
            .or_else(|| self.defaults.get(key))
            .ok_or_else(|| Error::Config(format!("config value {key} missing")))
    }
    fn f64(&self, key: &str) -> Result<f64> {
        json_f64(self.value(key)?, key)
    }
    fn usize(&self, key: &str) -> Result<usize> {
        json_usize(self.value(key)?, key)
    }
    fn bool(&self, key: &str) -> Result<bool> {
        self.value(key)?
            .as_bool()
            .ok_or_else(|| Error::Config(format!("{key} is not a bool")))
    }

    fn base_guidance(&self) -> Result<BaseGuidance> {
        Ok(BaseGuidance {
            video_scale: self.f64("video_txt_guidance_scale")?,
            audio_scale: self.f64("audio_txt_guidance_scale")?,
            ..BaseGuidance::default()
        })
    }

    fn sr_guidance(&self) -> Result<SrGuidance> {
        let early_frames = if self.bool("use_cfg_trick")? {
            Some(EarlyFrameCap {
                frames: self.usize("cfg_trick_start_frame")?,
                max_scale: self.f64("cfg_trick_value")?,
            })
        } else {
            None
        };
        Ok(SrGuidance {
            video_scale: self.f64("sr_video_txt_guidance_scale")?,
            early_frames,
        })
    }

    /// The reference's `cfg_number` / `sr_cfg_number` (1 or 2) as a sampler configuration.
    fn sampler_config(&self, with_sr: bool, policy: AudioDrivenPolicy) -> Result<SamplerConfig> {
        let shift = self.f64("shift")?;
        // The reference ties its solver to cfg_number: the distilled update without CFG,
        // UniPC with it.
        let (solver, guidance) = match self.usize("cfg_number")? {
            1 => (SolverKind::DISTILLED, None),
            2 => (SolverKind::UNIPC, Some(self.base_guidance()?)),
            n => return Err(Error::Config(format!("cfg_number {n}"))),
        };
        let sr = if with_sr {
            let guidance = match self.usize("sr_cfg_number")? {
                1 => None,
                2 => Some(self.sr_guidance()?),
                n => return Err(Error::Config(format!("sr_cfg_number {n}"))),
            };
            let noise_value = self.usize("noise_value")?;
            Some(SrStage {
                num_steps: self.usize("sr_num_inference_steps")?,
                shift,
                solver: SolverKind::UNIPC,
                guidance,
                renoise_step: (noise_value != 0).then_some(noise_value),
                audio_noise_scale: self.f64("sr_audio_noise_scale")?,
            })
        } else {
            None
        };
        Ok(SamplerConfig {
            base: BaseStage {
                num_steps: self.usize("num_inference_steps")?,
                shift,
                solver,
                guidance,
            },
            sr,
            audio_driven: policy,
        })
    }
}

fn defaults(case: &Case) -> Result<Params<'_>> {
    Ok(Params {
        defaults: json(case, "/config_defaults_used")?,
        overrides: None,
    })
}

/// What one stage showed the observer.
#[derive(Default)]
struct StageTrace {
    stage: Option<Stage>,
    stage_in: Vec<Tensor>,
    timesteps: Vec<i64>,
    forwards: Vec<i64>,
    model_video: Vec<Tensor>,
    guided_video: Vec<Tensor>,
    guided_audio: Vec<Tensor>,
    video: Vec<Tensor>,
    audio: Vec<Tensor>,
}

#[derive(Default)]
struct Recorder {
    stages: Vec<StageTrace>,
}

impl SamplingObserver for Recorder {
    fn stage_started(&mut self, stage: Stage, video: &Tensor, audio: &Tensor) -> Result<()> {
        self.stages.push(StageTrace {
            stage: Some(stage),
            stage_in: vec![video.clone(), audio.clone()],
            ..StageTrace::default()
        });
        Ok(())
    }

    fn step_finished(&mut self, r: &StepRecord<'_>) -> Result<()> {
        let t = self
            .stages
            .last_mut()
            .ok_or_else(|| Error::InvalidInput("step before any stage".into()))?;
        t.timesteps.push(r.info.timestep);
        t.forwards.push(r.model_calls as i64);
        t.model_video.push(r.model_video.clone());
        t.guided_video.push(r.guided_video.clone());
        if let Some(a) = r.guided_audio {
            t.guided_audio.push(a.clone());
        }
        t.video.push(r.video.clone());
        t.audio.push(r.audio.clone());
        Ok(())
    }
}

fn stack(name: &str, items: &[Tensor]) -> Result<Tensor> {
    if items.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{name}: the sampler recorded nothing"
        )));
    }
    Ok(Tensor::stack(items, 0)?)
}

/// One scenario run through the real sampler.
struct Run {
    shapes: LatentShapes,
    latents: SampledLatents,
    trace: Recorder,
    user_audio: Option<Tensor>,
}

fn run_scenario(
    case: &Case,
    io: &Io<'_>,
    name: &str,
    scen: &Value,
    policy: AudioDrivenPolicy,
) -> Result<Run> {
    let params = Params {
        defaults: json(case, "/config_defaults_used")?,
        overrides: scen.get("overrides"),
    };
    let flag = |k: &str| scen.get(k).and_then(Value::as_bool).unwrap_or(false);
    let size = |k: &str| -> Option<(u32, u32)> {
        let a = scen.get(k)?.as_array()?;
        Some((a.first()?.as_u64()? as u32, a.get(1)?.as_u64()? as u32))
    };
    let (width, height) =
        size("br_wh").ok_or_else(|| Error::Config(format!("{name}: br_wh missing")))?;
    let sr_size = size("sr_wh");
    let with_sr = flag("sr");
    if with_sr != sr_size.is_some() {
        return Err(Error::Config(format!("{name}: sr flag and sr_wh disagree")));
    }
    let tensor = |suffix: &str| io.input(&format!("in.{name}.{suffix}"));

    // The request as a user would send it; the helper derives every shape.
    let mut request = GenerationRequest::new("stub prompt");
    request.seconds = json_usize(scen.get("seconds").unwrap_or(&Value::Null), "seconds")? as u32;
    request.width = width;
    request.height = height;
    request.sr_width = sr_size.map(|s| s.0);
    request.sr_height = sr_size.map(|s| s.1);
    request.image = flag("image").then(|| std::path::PathBuf::from("image.png").into());
    request.audio = flag("user_audio").then(|| std::path::PathBuf::from("voice.wav").into());
    let validated = request.validate(&Limits::default())?;
    let user_audio = if flag("user_audio") {
        Some(audio_latent_from_vae_layout(&tensor(
            "user_audio_latent_b64f",
        )?)?)
    } else {
        None
    };
    let shapes = validated.shapes(user_audio.as_ref().map(|a| a.dims()[1]))?;

    let text = TextContext::new(tensor("context")?, scalar_usize(&tensor("context_len")?)?)?;
    let null_text = TextContext::new(
        tensor("context_null")?,
        scalar_usize(&tensor("context_null_len")?)?,
    )?;
    let image = if flag("image") {
        Some(ImageLatents {
            base: tensor("image_latent_base")?,
            sr: if with_sr {
                Some(tensor("image_latent_sr")?)
            } else {
                None
            },
        })
    } else {
        None
    };

    let draws = scen
        .get("rng_draws_in_order")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Config(format!("{name}: rng_draws_in_order missing")))?
        .iter()
        .map(|d| {
            let n = d.get("name").and_then(Value::as_str).unwrap_or("");
            io.input(n)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut noise = ReplayNoise::new(draws);

    let stage_order = stage_names(scen)?;
    let coefficients = |stage: &str| {
        json(case, &format!("/stub_velocity_model/coefficients/{stage}"))
            .and_then(StubVelocityModel::from_json)
    };
    let base_model = coefficients(&stage_order[0])?;
    let sr_model = match stage_order.get(1) {
        Some(s) => Some(coefficients(s)?),
        None => None,
    };
    let config = params.sampler_config(with_sr, policy)?;
    let mut sampler = Sampler::new(&base_model, config);
    if let Some(m) = &sr_model {
        sampler = sampler.with_sr_model(m);
    }
    let inputs = SamplingInputs {
        shapes,
        text,
        null_text: Some(null_text),
        image,
        user_audio: user_audio.clone(),
        device: io.device().clone(),
    };
    let mut trace = Recorder::default();
    let latents = sampler.sample(&inputs, &mut noise, &mut trace)?;
    if noise.remaining() != 0 {
        return Err(Error::InvalidInput(format!(
            "{name}: {} recorded draws were not consumed",
            noise.remaining()
        )));
    }
    let recorded_calls: i64 = trace.stages.iter().flat_map(|s| s.forwards.iter()).sum();
    let made = base_model.calls.get() + sr_model.as_ref().map_or(0, |m| m.calls.get());
    if recorded_calls != made as i64 {
        return Err(Error::InvalidInput(format!(
            "{name}: observer saw {recorded_calls} model calls, the models made {made}"
        )));
    }
    Ok(Run {
        shapes,
        latents,
        trace,
        user_audio,
    })
}

fn stage_names(scen: &Value) -> Result<Vec<String>> {
    let names: Vec<String> = scen
        .get("stage_order")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(Error::Config("stage_order missing".into()));
    }
    Ok(names)
}

fn scenarios(case: &Case) -> Result<Vec<(String, Value)>> {
    let table = json(case, "/scenarios")?
        .as_object()
        .ok_or_else(|| Error::Config("scenarios is not an object".into()))?;
    Ok(table.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Checks every `mid.<name>.*` / `out.<name>.*` tensor of a scenario against a run.
fn check_scenario(io: &Io<'_>, name: &str, scen: &Value, run: &Run, tol: Tol) -> Result<()> {
    // Shapes the request helper derived vs the ones the reference used.
    let want_shapes = scen.get("latent_shapes");
    let dims = |k: &str| -> Option<Vec<usize>> {
        want_shapes?.get(k)?.as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64().map(|n| n as usize))
                .collect()
        })
    };
    let shapes = &run.shapes;
    let derived = [
        ("base_video", Some(shapes.base_video().to_vec())),
        ("sr_video", shapes.sr_video().map(|s| s.to_vec())),
        ("audio", Some(shapes.audio().to_vec())),
    ];
    for (k, got) in derived {
        if dims(k) != got {
            return Err(Error::InvalidInput(format!(
                "{name}: latent_shapes.{k} {:?}, derived {got:?}",
                dims(k)
            )));
        }
    }

    let stage_order = stage_names(scen)?;
    if stage_order.len() != run.trace.stages.len() {
        return Err(Error::InvalidInput(format!(
            "{name}: {} stages ran, the reference ran {stage_order:?}",
            run.trace.stages.len()
        )));
    }
    for (stage_name, trace) in stage_order.iter().zip(&run.trace.stages) {
        let prefix = format!("mid.{name}.{stage_name}.");
        for tensor_name in io.names_with_prefix(&prefix) {
            let field = &tensor_name[prefix.len()..];
            let exact = Tol::Exact;
            match field {
                "stage_in_video" => io.check(&tensor_name, &trace.stage_in[0], tol)?,
                "stage_in_audio" => io.check(&tensor_name, &trace.stage_in[1], tol)?,
                "timesteps" => io.check(&tensor_name, &i64_tensor(&trace.timesteps)?, exact)?,
                "n_forwards_per_step" => {
                    io.check(&tensor_name, &i64_tensor(&trace.forwards)?, exact)?
                }
                "model_in_video" => {
                    io.check(&tensor_name, &stack(field, &trace.model_video)?, tol)?
                }
                "v_cfg_video" => {
                    io.check(&tensor_name, &stack(field, &trace.guided_video)?, tol)?
                }
                "v_cfg_audio" => {
                    io.check(&tensor_name, &stack(field, &trace.guided_audio)?, tol)?
                }
                "step_out_video" => io.check(&tensor_name, &stack(field, &trace.video)?, tol)?,
                "step_out_audio" => io.check(&tensor_name, &stack(field, &trace.audio)?, tol)?,
                other => {
                    return Err(Error::Config(format!(
                        "{name}: unknown stage tensor {other}"
                    )))
                }
            }
        }
        if trace.stage.is_none() {
            return Err(Error::InvalidInput(format!("{name}: stage without kind")));
        }
    }
    let prefix = format!("out.{name}.");
    for tensor_name in io.names_with_prefix(&prefix) {
        match &tensor_name[prefix.len()..] {
            "final_video" => io.check(&tensor_name, &run.latents.video, tol)?,
            "final_audio" => io.check(&tensor_name, &run.latents.audio, tol)?,
            other => return Err(Error::Config(format!("{name}: unknown output {other}"))),
        }
    }
    Ok(())
}

/// The CFG tables and formulas (`in.cfg.*` / `out.cfg.*`).
fn check_cfg(case: &Case, io: &Io<'_>) -> Result<()> {
    let tol = tol_matching(case, "cfg")?;
    let params = defaults(case)?;
    let (cv, uv) = (
        io.input("in.cfg.cond_video")?,
        io.input("in.cfg.uncond_video")?,
    );
    let (ca, ua) = (
        io.input("in.cfg.cond_audio")?,
        io.input("in.cfg.uncond_audio")?,
    );
    let base = params.base_guidance()?;
    let sr = params.sr_guidance()?;
    let scales = sr.per_frame_scales(cv.dim(2)?);
    let listed_scales = json(case, "/cfg/sr_guidance_per_latent_frame")?;
    compare(
        "cfg.sr_guidance_per_latent_frame (case.json)",
        &f32_tensor(&scales)?,
        &f32_tensor(&json_f32s(listed_scales))?,
        Tol::Exact,
    )?;
    // The base-schedule tables carry their step count in the name (`..._32`); find them by kind.
    let timesteps_name = io
        .names_with_prefix("out.cfg.")
        .into_iter()
        .find(|n| without_count(&n["out.cfg.".len()..]) == "base_timesteps")
        .ok_or_else(|| Error::Config("no out.cfg.base_timesteps_<N>".into()))?;
    let steps = io.get(&timesteps_name)?.dim(0)?;
    let schedule = FlowSchedule::new(steps, params.f64("shift")?)?;
    let per_step: Vec<f32> = schedule
        .timesteps()
        .iter()
        .map(|&t| base.video_scale_at(t) as f32)
        .collect();
    let at = |key: &str| -> Result<i64> {
        let i = json_usize(json(case, &format!("/cfg/{key}"))?, key)?;
        schedule
            .timesteps()
            .get(i)
            .copied()
            .ok_or_else(|| Error::Config(format!("cfg.{key} = {i} is out of range")))
    };
    let (t_high, t_low) = (at("base_t_gt_500_index")?, at("base_t_le_500_index")?);
    let cfg_table = json(case, "/cfg")?
        .as_object()
        .ok_or_else(|| Error::Config("cfg is not an object".into()))?;
    for (key, listed) in cfg_table {
        let got = match without_count(key) {
            "base_timesteps" => f32_tensor(
                &schedule
                    .timesteps()
                    .iter()
                    .map(|&t| t as f32)
                    .collect::<Vec<_>>(),
            )?,
            "base_video_guidance_per_step" => f32_tensor(&per_step)?,
            _ => continue,
        };
        compare(
            &format!("cfg.{key} (case.json)"),
            &got,
            &f32_tensor(&json_f32s(listed))?,
            Tol::Exact,
        )?;
    }
    for name in io.names_with_prefix("out.cfg.") {
        let got = match without_count(&name["out.cfg.".len()..]) {
            "sr_v_cfg_video" => guide_per_frame(&uv, &cv, &scales)?,
            "sr_guidance_per_latent_frame" => f32_tensor(&scales)?,
            "sr_v_cfg_audio" => guide(&ua, &ca, base.audio_scale)?,
            "base_timesteps" => i64_tensor(schedule.timesteps())?,
            "base_video_guidance_per_step" => f32_tensor(&per_step)?,
            "base_v_cfg_video_t_gt_500" => guide(&uv, &cv, base.video_scale_at(t_high))?,
            "base_v_cfg_video_t_le_500" => guide(&uv, &cv, base.video_scale_at(t_low))?,
            "base_v_cfg_audio" => guide(&ua, &ca, base.audio_scale)?,
            other => return Err(Error::Config(format!("unknown cfg output {other}"))),
        };
        let t = if name.contains("timesteps") {
            Tol::Exact
        } else {
            tol
        };
        io.check(&name, &got, t)?;
    }
    Ok(())
}

/// The per-step base tables carry the step count in their name (`base_timesteps_32`); this
/// drops it for them and leaves every other name as it is.
fn without_count(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((kind @ ("base_timesteps" | "base_video_guidance_per_step"), n))
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            kind
        }
        _ => name,
    }
}

fn json_f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|x| x as f32)
                .collect()
        })
        .unwrap_or_default()
}

/// Resize, re-noise and SR audio conditioning sub-cases.
fn check_glue(case: &Case, io: &Io<'_>) -> Result<()> {
    let resize_tol = tol_matching(case, "resize")?;
    let cfg_tol = tol_matching(case, "cfg")?;
    let params = defaults(case)?;
    if io.has("in.resize.base_latent") {
        let size: Vec<usize> = json(case, "/resize_call/size")?
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64().map(|n| n as usize))
                    .collect()
            })
            .unwrap_or_default();
        let [t, h, w] = size[..] else {
            return Err(Error::Config("resize_call.size must have 3 entries".into()));
        };
        let resized = resize_trilinear(&io.input("in.resize.base_latent")?, (t, h, w))?;
        io.check("out.resize.trilinear", &resized, resize_tol)?;
        let signal = ZeroSnrTable::new().signal_at(params.usize("noise_value")?)?;
        let renoised = renoise_video(&resized, &io.input("in.resize.noise")?, signal)?;
        io.check("out.resize.sr_stage_input", &renoised, resize_tol)?;
    }
    if io.has("in.resize_generic.x") {
        let want = io.get("out.resize_generic.y")?.dims().to_vec();
        let got = resize_trilinear(
            &io.input("in.resize_generic.x")?,
            (want[2], want[3], want[4]),
        )?;
        io.check("out.resize_generic.y", &got, resize_tol)?;
    }
    if io.has("in.audio_renoise.base_audio") {
        let got = noisy_audio_condition(
            &io.input("in.audio_renoise.base_audio")?,
            &io.input("in.audio_renoise.noise")?,
            params.f64("sr_audio_noise_scale")?,
        )?;
        io.check("out.audio_renoise.sr_audio_input", &got, cfg_tol)?;
    }
    Ok(())
}

/// Reproduces the reference latent for latent: CFG tables and formulas, SR glue, and every
/// scenario under [`AudioDrivenPolicy::MatchReference`].
pub(super) fn check_reference(case: &Case, device: &Device) -> Result<()> {
    let io = Io::open(case, device)?;
    let tol = tol_matching(case, "scenario")?;
    if io.has("in.cfg.cond_video") {
        check_cfg(case, &io)?;
    }
    check_glue(case, &io)?;
    let all = scenarios(case)?;
    if all.is_empty() {
        return Err(Error::Config("no scenarios".into()));
    }
    for (name, scen) in &all {
        let run = run_scenario(case, &io, name, scen, AudioDrivenPolicy::MatchReference)
            .map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?;
        check_scenario(&io, name, scen, &run, tol)
            .map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?;
    }
    io.all_outputs_checked()
}

/// See [`super::check_keep_user_audio`].
pub(super) fn check_keep_user_audio(case: &Case, device: &Device) -> Result<()> {
    let io = Io::open(case, device)?;
    let tol = tol_matching(case, "scenario")?;
    let mut audio_driven = 0;
    for (name, scen) in scenarios(case)? {
        if !scen
            .get("user_audio")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            continue;
        }
        audio_driven += 1;
        let run = run_scenario(case, &io, &name, &scen, AudioDrivenPolicy::KeepUserAudio)
            .map_err(|e| Error::InvalidInput(format!("{name}: {e}")))?;
        let user = run
            .user_audio
            .as_ref()
            .ok_or_else(|| Error::InvalidInput(format!("{name}: no user audio")))?;
        compare(
            &format!("{name}: final audio"),
            &run.latents.audio,
            user,
            Tol::Exact,
        )?;
        for (i, stage) in run.trace.stages.iter().enumerate() {
            if stage.stage == Some(Stage::Base) {
                for (k, a) in stage.audio.iter().enumerate() {
                    compare(
                        &format!("{name}: stage {i} step {k} audio"),
                        a,
                        user,
                        Tol::Exact,
                    )?;
                }
            }
        }
        if run.latents.audio_output != AudioOutput::UserOriginal {
            return Err(Error::InvalidInput(format!(
                "{name}: clip would re-decode the audio"
            )));
        }
        // Did the reference keep the audio fixed? Then nothing may differ from it.
        let stage_order = stage_names(&scen)?;
        let reference_steps = io.get(&format!("mid.{name}.{}.step_out_audio", stage_order[0]))?;
        let reference_kept_audio = (0..reference_steps.dim(0)?).try_fold(true, |kept, k| {
            Ok::<_, Error>(kept && compare("", &reference_steps.get(k)?, user, Tol::Exact).is_ok())
        })?;
        if reference_kept_audio {
            compare(
                &format!("{name}: final video"),
                &run.latents.video,
                io.get(&format!("out.{name}.final_video"))?,
                tol,
            )?;
        }
    }
    if audio_driven == 0 {
        println!("{}: no audio-driven scenario", case.name);
    }
    Ok(())
}
