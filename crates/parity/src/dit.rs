//! The DiT (forward pass, rope, activations) against the golden fixtures.
//!
//! Shared by the CPU tests and the GPU self-test: each check takes a fixture case and a device,
//! recomputes every `mid.*`/`out.*` tensor the case holds, and compares it at the tolerance
//! the case states. A tensor the case holds but this module cannot produce is a failure, so no
//! part of a case is silently skipped.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::fixtures::{expect_exact, tensor, Case, Tolerance};
use cadence_core::trace::{self, Recorded};
use cadence_core::var_builder::var_builder;
use cadence_core::{Checkpoint, Error, Result, WeightSource};
use cadence_kernels::activation::{gelu7, swiglu7};
use cadence_kernels::AttentionMask;

use cadence_model::config::DitConfig;
use cadence_model::layer::ExpertNorm;
use cadence_model::packing::{self, ModalitySpans, Packed, PackingConfig, TokenLayout};
use cadence_model::rope::{default_bands, rope_table};
use cadence_model::DitModel;

/// The fixture kinds this module checks.
pub const KINDS: &[&str] = &["dit_forward", "rope", "activations"];

/// Runs the check for `case` on `device`.
pub fn check_case(case: &Case, device: &Device) -> Result<()> {
    match case.kind.as_str() {
        "dit_forward" => check_dit_forward(case, device),
        "rope" => check_rope(case, device),
        "activations" => check_activations(case, device),
        other => Err(Error::Config(format!(
            "{}: kind {other} is not a DiT fixture",
            case.name
        ))),
    }
}

/// Whether a tolerance key applies to the whole forward, to teacher-forced layers, or both.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    FreeRunning,
    TeacherForced,
}

/// The tolerance for tensor `name` in `mode` from a `recommended`-style map: an exact key,
/// then a `*` pattern, then the catch-all keys. Keys ending in `_teacher_forced` or
/// `_free_running` apply to that mode only.
fn resolve(map: &serde_json::Map<String, Value>, name: &str, mode: Mode) -> Result<Tolerance> {
    let mut exact = None;
    let mut pattern = None;
    let mut fallback = None;
    for (key, value) in map {
        let (base, key_mode) = if let Some(b) = key.strip_suffix("_teacher_forced") {
            (b, Some(Mode::TeacherForced))
        } else if let Some(b) = key.strip_suffix("_free_running") {
            (b, Some(Mode::FreeRunning))
        } else {
            (key.as_str(), None)
        };
        if key_mode.is_some_and(|m| m != mode) {
            continue;
        }
        if base == name {
            exact = Some(value);
        } else if base.contains('*') && glob(base, name) {
            pattern = Some(value);
        } else if matches!(base, "other_float_tensors" | "all_other_float_tensors") {
            fallback = Some(value);
        } else if !base.starts_with("mid.") && !base.starts_with("out.") {
            return Err(Error::Config(format!(
                "tolerance key {key} is not understood"
            )));
        }
    }
    let value = exact
        .or(pattern)
        .or(fallback)
        .ok_or_else(|| Error::Config(format!("no tolerance applies to {name}")))?;
    Tolerance::from_json(value)
}

/// `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

fn object<'a>(case: &'a Case, pointer: &str) -> Result<&'a serde_json::Map<String, Value>> {
    case.get(pointer).and_then(Value::as_object).ok_or_else(|| {
        Error::Config(format!(
            "{}: case.json has no object at {pointer}",
            case.name
        ))
    })
}

fn scalar(case: &Case, io: &BTreeMap<String, Tensor>, name: &str) -> Result<usize> {
    let t = io.get(name).ok_or_else(|| {
        Error::InvalidInput(format!("{}: io.safetensors has no {name}", case.name))
    })?;
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0] as usize)
}

fn load_io(case: &Case) -> Result<BTreeMap<String, Tensor>> {
    Ok(case.io()?.into_iter().collect())
}

/// Compares every non-input tensor of `io` with `produced`.
fn compare_all(
    case: &Case,
    io: &BTreeMap<String, Tensor>,
    produced: &BTreeMap<String, Tensor>,
    exact: &[String],
    tolerance: impl Fn(&str) -> Result<Tolerance>,
) -> Result<()> {
    let mut failures = Vec::new();
    for (name, want) in io.iter().filter(|(n, _)| !n.starts_with("in.")) {
        let result = match produced.get(name) {
            None => Err(Error::InvalidInput(format!(
                "{name}: held by the case but not produced"
            ))),
            Some(got) if exact.contains(name) => expect_exact(name, got, want),
            Some(got) => tolerance(name).and_then(|t| t.check(name, got, want)),
        };
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{}:\n  {}",
            case.name,
            failures.join("\n  ")
        )))
    }
}

/// `(n, 2)` int32 tensors of the mask's query and key ranges.
fn range_tensors(mask: &AttentionMask) -> Result<(Tensor, Tensor)> {
    let (mut q, mut k) = (Vec::new(), Vec::new());
    for (qr, kr) in mask.pairs() {
        q.extend([qr.start as i32, qr.end as i32]);
        k.extend([kr.start as i32, kr.end as i32]);
    }
    let n = mask.pairs().len();
    Ok((
        Tensor::from_vec(q, (n, 2), &Device::Cpu)?,
        Tensor::from_vec(k, (n, 2), &Device::Cpu)?,
    ))
}

/// The data-movement tensors of a packed sequence, under the fixtures' names.
fn packing_tensors(packed: &Packed) -> Result<BTreeMap<String, Tensor>> {
    let len = packed.layout.len();
    let mut out = BTreeMap::new();
    out.insert("mid.token_sequence".to_string(), packed.tokens.clone());
    out.insert(
        "mid.coords_mapping".to_string(),
        Tensor::from_vec(
            packed.coords.clone(),
            (len, packing::COORD_COLUMNS),
            &Device::Cpu,
        )?,
    );
    let ids: Vec<i64> = packed
        .layout
        .spans()
        .ids()
        .into_iter()
        .map(i64::from)
        .collect();
    out.insert(
        "mid.modality_mapping".to_string(),
        Tensor::new(ids, &Device::Cpu)?,
    );
    if let Some(mask) = &packed.local_mask {
        let (q, k) = range_tensors(mask)?;
        out.insert("mid.q_ranges".to_string(), q);
        out.insert("mid.k_ranges".to_string(), k);
        let dense: Vec<u8> = mask.dense(len).into_iter().map(u8::from).collect();
        out.insert(
            "mid.local_attn_mask".to_string(),
            Tensor::from_vec(dense, (len, len), &Device::Cpu)?,
        );
    }
    Ok(out)
}

/// What a `dit_forward` case sets up: its tensors, config, packed input, compute dtype and
/// tolerances (shared with the FP8 accuracy check).
pub(crate) struct ForwardCase {
    pub(crate) io: BTreeMap<String, Tensor>,
    pub(crate) config: DitConfig,
    pub(crate) packed: Packed,
    pub(crate) compute: DType,
    pub(crate) recommended: serde_json::Map<String, Value>,
    pub(crate) exact: Vec<String>,
    pub(crate) detail: Vec<usize>,
}

impl ForwardCase {
    pub(crate) fn open(case: &Case, device: &Device) -> Result<Self> {
        let io = load_io(case)?;
        let input =
            |n: &str| -> Result<Tensor> { Ok(tensor(case, &case_map(&io), n)?.to_device(device)?) };
        let config = DitConfig::from_reference_json(
            case.get("/model_config")
                .ok_or_else(|| Error::Config(format!("{}: no model_config", case.name)))?,
        )?;
        let packing_config = PackingConfig::from_reference_json(
            case.get("/data_proxy_config")
                .ok_or_else(|| Error::Config(format!("{}: no data_proxy_config", case.name)))?,
        )?;
        let compute = match case.compute() {
            Some("f32") => DType::F32,
            Some("bf16") => DType::BF16,
            other => {
                return Err(Error::Config(format!(
                    "{}: unknown compute {other:?}",
                    case.name
                )))
            }
        };
        let recommended = object(case, "/tolerances/recommended")?.clone();
        let exact: Vec<String> = case
            .get("/tolerances/exact")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let detail: Vec<usize> = case
            .get("/detail_layers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .map(|i| i as usize)
                    .collect()
            })
            .unwrap_or_default();
        let packed = packing::pack(
            &input("in.video")?,
            &input("in.audio")?,
            scalar(case, &io, "in.audio_feat_len")?,
            &input("in.text")?,
            scalar(case, &io, "in.txt_feat_len")?,
            config.packed_width(),
            &packing_config,
        )?;
        Ok(Self {
            io,
            config,
            packed,
            compute,
            recommended,
            exact,
            detail,
        })
    }

    /// The case's tolerance for `name` when computed free running (`teacher_forced` false) or
    /// from the reference's previous layer.
    pub(crate) fn tolerance(&self, name: &str, teacher_forced: bool) -> Result<Tolerance> {
        let mode = if teacher_forced {
            Mode::TeacherForced
        } else {
            Mode::FreeRunning
        };
        resolve(&self.recommended, name, mode)
    }
}

fn check_dit_forward(case: &Case, device: &Device) -> Result<()> {
    let ForwardCase {
        io,
        config,
        packed,
        compute,
        recommended,
        exact,
        detail,
    } = ForwardCase::open(case, device)?;
    let recommended = &recommended;
    let mut produced = packing_tensors(&packed)?;

    let model = DitModel::load(
        &Checkpoint::open(case.file("weights.safetensors"))?,
        config,
        compute,
        device,
    )?;
    let (out, recorded) = trace::capture(detail, || model.forward(&packed));
    let out = out?;
    let (video, audio) = packing::unpack(&out.video_rows, &out.audio_rows, &packed.layout)?;
    produced.insert("out.video".into(), video);
    produced.insert("out.audio".into(), audio);
    for (name, t) in recorded {
        produced.insert(format!("mid.{name}"), t);
    }
    compare_all(case, &io, &produced, &exact, |n| {
        resolve(recommended, n, Mode::FreeRunning)
    })?;

    // Teacher forcing: every layer fed the reference's state after the layer before it, in
    // one forward pass; a layer is compared where the case holds both its input and output.
    let forced: Recorded = (0..model.config().num_layers)
        .filter_map(|i| Some((format!("layer_{i}_in"), io.get(&previous(i))?.clone())))
        .collect();
    let (out, recorded) = trace::capture_forcing([], forced, || model.forward(&packed));
    out?;
    for i in 0..model.config().num_layers {
        let want_name = format!("mid.layer_{i}");
        let (true, Some(want)) = (io.contains_key(&previous(i)), io.get(&want_name)) else {
            continue;
        };
        let got = recorded
            .get(&format!("layer_{i}"))
            .ok_or_else(|| Error::InvalidInput(format!("the forward recorded no layer_{i}")))?;
        resolve(recommended, &want_name, Mode::TeacherForced)?
            .check(&format!("{want_name} (teacher forced)"), got, want)
            .map_err(|e| Error::InvalidInput(format!("{}: {e}", case.name)))?;
    }
    Ok(())
}

/// The reference tensor layer `i` starts from.
pub(crate) fn previous(i: usize) -> String {
    if i == 0 {
        "mid.adapter_out".to_string()
    } else {
        format!("mid.layer_{}", i - 1)
    }
}

fn case_map(io: &BTreeMap<String, Tensor>) -> std::collections::HashMap<String, Tensor> {
    io.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn check_rope(case: &Case, device: &Device) -> Result<()> {
    let io = load_io(case)?;
    let dim = case.f64_at("/config/dim")? as usize;
    let bands = default_bands(dim / 8);
    let tolerances = object(case, "/tolerances")?;
    let mut produced = BTreeMap::new();
    produced.insert(
        "mid.bands".to_string(),
        Tensor::new(bands.as_slice(), &Device::Cpu)?,
    );

    // Coordinates from our packer for every layout and style the case describes.
    let layouts = object(case, "/config/layouts")?;
    let styles = object(case, "/config/styles")?;
    let proxies = object(case, "/config/data_proxy_config")?;
    for (layout_name, styles) in styles {
        let l = layouts
            .get(layout_name)
            .ok_or_else(|| Error::Config(format!("{}: no layout {layout_name}", case.name)))?;
        let field = |k: &str| l.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
        for style in styles
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let proxy = proxies.get(style).ok_or_else(|| {
                Error::Config(format!("{}: no data_proxy_config.{style}", case.name))
            })?;
            let packing = PackingConfig::from_reference_json(proxy)?;
            let p = packing.patch_size;
            let layout = TokenLayout {
                latent_channels: 48,
                frames: field("T"),
                rows: field("H") / p,
                cols: field("W") / p,
                patch: p,
                audio: field("audio_len"),
                text: field("text_len"),
            };
            let c = packing::coords(&layout, &packing);
            let ids: Vec<i64> = layout.spans().ids().into_iter().map(i64::from).collect();
            let suffix = format!("{layout_name}_{style}");
            produced.insert(
                format!("in.coords_{suffix}"),
                Tensor::from_vec(c, (layout.len(), packing::COORD_COLUMNS), &Device::Cpu)?,
            );
            produced.insert(
                format!("mid.modality_{suffix}"),
                Tensor::new(ids, &Device::Cpu)?,
            );
        }
    }
    // Every packer-built coordinate table must equal the reference's exactly.
    for (name, got) in produced.iter().filter(|(n, _)| n.starts_with("in.coords_")) {
        let want = io
            .get(name)
            .ok_or_else(|| Error::InvalidInput(format!("{}: io has no {name}", case.name)))?;
        expect_exact(name, got, want)?;
    }
    // The rope of every coordinate table the case holds.
    for (name, coords_in) in io.iter().filter(|(n, _)| n.starts_with("in.coords")) {
        let suffix = &name["in.coords".len()..];
        let values = coords_in
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        produced.insert(
            format!("out.rope{suffix}"),
            rope_table(&values, &bands, device)?,
        );
    }
    let exact: Vec<String> = produced
        .keys()
        .filter(|n| n.starts_with("mid.modality_"))
        .cloned()
        .collect();
    compare_all(case, &io, &produced, &exact, |n| {
        resolve(tolerances, n, Mode::FreeRunning)
    })
}

fn check_activations(case: &Case, device: &Device) -> Result<()> {
    let io = load_io(case)?;
    let map = case_map(&io);
    let input = |n: &str| -> Result<Tensor> { Ok(tensor(case, &map, n)?.to_device(device)?) };
    let tolerances = object(case, "/tolerances")?;
    let ckpt = Checkpoint::open(case.file("weights.safetensors"))?;
    let experts = case.f64_at("/config/num_modality")? as usize;
    let sizes: Vec<usize> = input("in.norm_group_sizes")?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?
        .into_iter()
        .map(|v| v as usize)
        .collect();
    let spans = ModalitySpans::new(sizes.try_into().map_err(|_| {
        Error::Config(format!("{}: in.norm_group_sizes needs 3 values", case.name))
    })?);
    // Each norm's width per expert, from its stored length.
    let vb = var_builder(&ckpt, DType::F32, device);
    let norm = |name: &str, experts: usize| -> Result<ExpertNorm> {
        let key = format!("{name}.weight");
        let len = ckpt
            .shape(&key)
            .and_then(|s| s.first().copied())
            .ok_or_else(|| Error::InvalidInput(format!("{}: no 1-D {key}", case.name)))?;
        ExpertNorm::load(&vb.pp(name), len / experts.max(1), experts)
    };
    let single = norm("norm_single", 1)?;
    let multi = norm("norm_multi", experts)?;
    let mut produced = BTreeMap::new();
    for name in io.keys().filter(|n| n.starts_with("out.")) {
        let t = match name.as_str() {
            "out.swiglu7" => swiglu7(&input("in.act_x")?)?,
            "out.gelu7" => gelu7(&input("in.act_x")?)?,
            "out.norm_single" => single.forward(&input("in.norm_x")?, &spans)?,
            "out.norm_multi" => multi.forward(&input("in.norm_x")?, &spans)?,
            "out.norm_multi_3d" => multi.forward(&input("in.norm_x3")?, &spans)?,
            _ => continue, // reported as "not produced" below
        };
        produced.insert(name.clone(), t);
    }
    compare_all(case, &io, &produced, &[], |n| {
        resolve(tolerances, n, Mode::FreeRunning)
    })
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_stars() {
        assert!(glob("mid.layer_*", "mid.layer_12"));
        assert!(glob("out.rope_*", "out.rope_small_v1"));
        assert!(glob("out.norm_*", "out.norm_multi_3d"));
        assert!(!glob("out.norm_*", "out.gelu7"));
        assert!(glob("a*b*c", "a12b34c"));
        assert!(!glob("a*b*c", "a12c34b"));
    }
}
