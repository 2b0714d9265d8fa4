//! The whole DiT: input embedders, the transformer layers, and the video/audio output heads.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};

use cadence_core::var_builder::var_builder;
use cadence_core::{trace, Checkpoint, Error, RandomWeights, Result, TensorTree, WeightSource};
use cadence_kernels::transfer::LayerStack;

use crate::config::DitConfig;
use crate::layer::ExpertNorm;
use crate::layer::{LayerContext, TransformerLayer};
use crate::packing::{self, Modality, ModalitySpans, Packed, PackingConfig};
use crate::precision::{LoadOptions, WeightFormat};
use crate::rope::{default_bands, rope_table};
use crate::variant::DitVariant;
use crate::weights::{accepted_tensors, expected_tensors, ROPE_BANDS};

/// Name of the optional architecture file beside a checkpoint.
pub const CONFIG_FILE: &str = "config.json";

/// Prefix of the transformer layers' keys: layer `i` is under `block.layers.{i}`.
pub const LAYERS: &str = "block.layers";

/// The key prefix of layer `i`.
pub fn layer_prefix(i: usize) -> String {
    format!("{LAYERS}.{i}")
}

/// The model's output rows, before unpacking.
#[derive(Debug, Clone)]
pub struct DitOutput {
    /// `(Nv, video_in)` f32 velocity rows, patch-major columns.
    pub video_rows: Tensor,
    /// `(A, audio_in)` f32 velocity rows.
    pub audio_rows: Tensor,
}

/// A loaded daVinci-MagiHuman DiT.
#[derive(Debug)]
pub struct DitModel {
    config: DitConfig,
    compute: DType,
    weight_format: WeightFormat,
    device: Device,
    /// (weight `(hidden, in)`, bias) per modality, f32.
    embedders: Vec<(Tensor, Tensor)>,
    bands: Vec<f32>,
    /// Resident on `device`, or parked in host memory and streamed to it.
    layers: LayerStack<TransformerLayer>,
    video_head: OutputHead,
    audio_head: OutputHead,
}

/// Final norm and bias-free linear `(out, hidden)` of one modality, both f32.
#[derive(Debug, Clone)]
struct OutputHead {
    norm: ExpertNorm,
    linear: Tensor,
}
cadence_core::tensor_tree!(OutputHead { norm, linear });

impl OutputHead {
    /// `final_norm_{modality}.weight` and `final_linear_{modality}.weight` `(out, hidden)`.
    fn load(vb: &VarBuilder, modality: &str, out: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            norm: ExpertNorm::load(&vb.pp(format!("final_norm_{modality}")), hidden, 1)?,
            linear: vb.get((out, hidden), &format!("final_linear_{modality}.weight"))?,
        })
    }

    /// `linear(norm(rows))` for the rows of `range`.
    fn forward(
        &self,
        x: &Tensor,
        range: std::ops::Range<usize>,
        spans: &ModalitySpans,
    ) -> Result<Tensor> {
        let h = self
            .norm
            .forward(&x.narrow(0, range.start, range.len())?, spans)?;
        Ok(h.matmul(&self.linear.t()?)?)
    }
}

/// Loads the transformer layers under `vb` in order, handing each to `each` as it is built (the
/// key recorder drops them one by one, so it never holds more than one layer's norm scales).
pub(crate) fn load_layers(
    vb: &VarBuilder,
    c: &DitConfig,
    options: &LoadOptions,
    mut each: impl FnMut(TransformerLayer),
) -> Result<()> {
    for i in 0..c.num_layers {
        each(TransformerLayer::load(
            &vb.pp(layer_prefix(i)),
            c,
            i,
            options,
        )?);
    }
    Ok(())
}

/// Everything outside the transformer layers: the input embedders, the rope bands and the
/// output heads, all f32.
pub(crate) struct Outer {
    embedders: Vec<(Tensor, Tensor)>,
    bands: Vec<f32>,
    video_head: OutputHead,
    audio_head: OutputHead,
}

impl Outer {
    /// Loads `adapter.{video,audio,text}_embedder.{weight,bias}`, the optional
    /// `adapter.rope.bands` (recomputed when absent) and the two output heads under `vb`.
    pub(crate) fn load(vb: &VarBuilder, c: &DitConfig) -> Result<Self> {
        let hid = c.hidden_size;
        let embedder = |modality: &str, inputs: usize| -> Result<(Tensor, Tensor)> {
            let vb = vb.pp(format!("adapter.{modality}_embedder"));
            Ok((vb.get((hid, inputs), "weight")?, vb.get(hid, "bias")?))
        };
        let bands = if vb.contains_tensor(ROPE_BANDS) {
            vb.get_with_hints_dtype(c.rope_bands(), ROPE_BANDS, Init::Const(0.0), DType::F32)?
                .to_device(&Device::Cpu)?
                .to_vec1::<f32>()?
        } else {
            default_bands(c.rope_bands())
        };
        Ok(Self {
            embedders: vec![
                embedder("video", c.video_in_channels)?,
                embedder("audio", c.audio_in_channels)?,
                embedder("text", c.text_in_channels)?,
            ],
            bands,
            video_head: OutputHead::load(vb, "video", c.video_in_channels, hid)?,
            audio_head: OutputHead::load(vb, "audio", c.audio_in_channels, hid)?,
        })
    }
}

impl DitModel {
    /// Opens the checkpoint in `dir` and loads it. The architecture is `dir/config.json` when
    /// present, else the variant's preset.
    pub fn load_dir(
        dir: &Path,
        variant: DitVariant,
        compute: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::load_dir_with(dir, variant, &LoadOptions::dense(compute), device)
    }

    /// [`Self::load_dir`] with explicit options (FP8 weights: [`LoadOptions::fp8`]).
    pub fn load_dir_with(
        dir: &Path,
        variant: DitVariant,
        options: &LoadOptions,
        device: &Device,
    ) -> Result<Self> {
        let (ckpt, config) = Self::open_dir(dir, variant)?;
        Self::load_with(&ckpt, config, options, device)
    }

    /// Every check [`Self::load_dir`] makes (config, index and shards, headers, keys, shapes,
    /// dtypes) without reading a weight: what `cadence check` runs.
    pub fn check_dir(dir: &Path, variant: DitVariant) -> Result<()> {
        let (ckpt, config) = Self::open_dir(dir, variant)?;
        Self::verify(&ckpt, &config)
    }

    /// The checkpoint in `dir` and its architecture: `dir/config.json` when present, else the
    /// variant's preset.
    fn open_dir(dir: &Path, variant: DitVariant) -> Result<(Checkpoint, DitConfig)> {
        let config_path = dir.join(CONFIG_FILE);
        let config = if config_path.is_file() {
            DitConfig::from_json_file(&config_path)?
        } else {
            variant.config()
        };
        Ok((Checkpoint::open(dir)?, config))
    }

    /// Fails unless `config` is valid and `ckpt` holds exactly its tensors (FP8 scales
    /// optional), each in a type the loader reads.
    pub fn verify(ckpt: &dyn WeightSource, config: &DitConfig) -> Result<()> {
        config.validate()?;
        ckpt.verify("", &accepted_tensors(config))
    }

    /// Loads the model from a checkpoint (or any weight source) after verifying every key and
    /// shape, with dense GEMM weights.
    ///
    /// GEMM weights are held in `compute` (bf16 in production; f32 for exact checks), every
    /// other tensor in f32, whatever the file stores. Each tensor is converted as it is read,
    /// so the weights are never held twice.
    pub fn load(
        ckpt: &dyn WeightSource,
        config: DitConfig,
        compute: DType,
        device: &Device,
    ) -> Result<Self> {
        Self::load_with(ckpt, config, &LoadOptions::dense(compute), device)
    }

    /// [`Self::load`] with explicit options: with [`WeightFormat::Fp8`] each GEMM weight is
    /// quantised per output channel as it is read (or taken as stored from an FP8 checkpoint,
    /// see [`crate::fp8_checkpoint`]), so the dense copy of one tensor at a time is the only
    /// transient.
    pub fn load_with(
        ckpt: &dyn WeightSource,
        config: DitConfig,
        options: &LoadOptions,
        device: &Device,
    ) -> Result<Self> {
        let compute = options.compute;
        if !matches!(compute, DType::F32 | DType::BF16 | DType::F16) {
            return Err(Error::Config(format!(
                "compute dtype {compute:?} is not a float type"
            )));
        }
        Self::verify(ckpt, &config)?;
        // f32 unless a call names its dtype: only the GEMM weights are held in `compute`.
        let vb = var_builder(ckpt, DType::F32, device);
        let Outer {
            embedders,
            bands,
            video_head,
            audio_head,
        } = Outer::load(&vb, &config)?;
        let mut layers = Vec::with_capacity(config.num_layers);
        load_layers(&vb, &config, options, |layer| layers.push(layer))?;
        Ok(Self {
            config,
            compute,
            weight_format: options.weights,
            device: device.clone(),
            embedders,
            bands,
            layers: LayerStack::resident(layers),
            video_head,
            audio_head,
        })
    }

    /// The model with random weights at `config`'s size, drawn on `device` (benchmarks and
    /// memory checks at the real size when the real weights are absent; the output is noise).
    pub fn random(config: DitConfig, compute: DType, device: &Device) -> Result<Self> {
        Self::random_with(config, &LoadOptions::dense(compute), device)
    }

    /// [`Self::random`] with explicit options (FP8 benchmarks at the real size).
    pub fn random_with(config: DitConfig, options: &LoadOptions, device: &Device) -> Result<Self> {
        let source = RandomWeights::on_device(&expected_tensors(&config), "");
        Self::load_with(&source, config, options, device)
    }

    /// The architecture.
    pub fn config(&self) -> &DitConfig {
        &self.config
    }

    /// The GEMM compute dtype.
    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    /// How the block's GEMM weights are held.
    pub fn weight_format(&self) -> WeightFormat {
        self.weight_format
    }

    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The resident transformer layers (for running one layer on its own); an error when the
    /// layers are streamed.
    pub fn resident_layers(&self) -> Result<&[TransformerLayer]> {
        self.layers.resident_layers().ok_or_else(|| {
            Error::Internal("the layers are streamed, not resident on the device".into())
        })
    }

    /// The same model with every weight on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        self.rebuilt(device, self.layers.to_device(device)?)
    }

    /// The same model computing on `device` with its layers parked in host memory and streamed
    /// to `device` a few layers ahead of use; the embedders and heads stay on `device`.
    pub fn into_streamed(self, device: &Device) -> Result<Self> {
        let mut model = self.rebuilt(device, LayerStack::resident(Vec::new()))?;
        model.layers = self.layers.into_streamed(device)?;
        Ok(model)
    }

    /// The most bytes of streamed layers on the device at once since the last call (0 when the
    /// layers are resident).
    pub fn take_streamed_peak(&self) -> u64 {
        self.layers.take_peak_streamed()
    }

    /// Bytes of weights held on the model's device while it is idle (with streamed layers, only
    /// the embedders and heads; [`Self::take_streamed_peak`] measures the layers in flight).
    pub fn device_bytes(&self) -> u64 {
        self.non_layer_bytes() + self.layers.resident_bytes()
    }

    /// Bytes of weights parked in host memory (the streamed layers).
    pub fn host_bytes(&self) -> u64 {
        self.layers.host_bytes()
    }

    fn non_layer_bytes(&self) -> u64 {
        self.embedders.tensor_bytes()
            + self.video_head.tensor_bytes()
            + self.audio_head.tensor_bytes()
    }

    /// This model with its embedders and heads on `device` and `layers`.
    fn rebuilt(&self, device: &Device, layers: LayerStack<TransformerLayer>) -> Result<Self> {
        Ok(Self {
            config: self.config.clone(),
            compute: self.compute,
            weight_format: self.weight_format,
            device: device.clone(),
            embedders: self.embedders.to_device(device)?,
            bands: self.bands.clone(),
            layers,
            video_head: self.video_head.to_device(device)?,
            audio_head: self.audio_head.to_device(device)?,
        })
    }

    /// The rope frequency bands in use.
    pub fn bands(&self) -> &[f32] {
        &self.bands
    }

    /// Embeds packed tokens: each modality's rows through its own linear (f32), using only its
    /// leading feature columns. Returns the `(L, hidden)` f32 residual stream.
    pub fn embed(&self, packed: &Packed) -> Result<Tensor> {
        let spans = packed.layout.spans();
        let tokens = packed
            .tokens
            .to_device(&self.device)?
            .to_dtype(DType::F32)?;
        let mut parts = Vec::with_capacity(3);
        for (m, (w, b)) in Modality::ALL.iter().zip(&self.embedders) {
            let range = spans.range(*m);
            if range.is_empty() {
                continue;
            }
            let rows = tokens
                .narrow(0, range.start, range.len())?
                .narrow(1, 0, w.dim(1)?)?;
            parts.push(rows.matmul(&w.t()?)?.broadcast_add(b)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// The `(L, 6B)` rope table of a packed sequence.
    pub fn rope(&self, packed: &Packed) -> Result<Tensor> {
        rope_table(&packed.coords, &self.bands, &self.device)
    }

    /// Runs the full forward pass on a packed sequence. Inside a [`cadence_core::trace`]
    /// capture it records `adapter_out`, `rope`, each layer's `attn_out_{i}`, `mlp_out_{i}` and
    /// `layer_{i}`, the per-head details of the wanted layers (`l{i}.q_normed`, `l{i}.k_normed`,
    /// `l{i}.q_rope`, `l{i}.k_rope`, `l{i}.attn_q`, `l{i}.attn_k`, `l{i}.attn_v`,
    /// `l{i}.attn_core`), and `model_out`: the fixtures' names without their `mid.` prefix. Layer
    /// `i` continues from the capture's forced `layer_{i}_in` when it has one.
    pub fn forward(&self, packed: &Packed) -> Result<DitOutput> {
        let spans = packed.layout.spans();
        let mut x = self.embed(packed)?;
        let rope = self.rope(packed)?;
        trace::record(|| "adapter_out".into(), &x);
        trace::record(|| "rope".into(), &rope);
        let ctx = LayerContext {
            spans: &spans,
            rope: &rope,
            local_mask: packed.local_mask.as_ref(),
        };
        x = self.layers.run(x, |x, _, layer| layer.forward(&x, &ctx))?;
        let out = self.head(&x, packed)?;
        if trace::active() {
            trace::record(|| "model_out".into(), &self.padded_output(&out, packed)?);
        }
        Ok(out)
    }

    /// Velocities for latents: packs, runs the forward pass and unpacks. Returns the
    /// `(1, C, T, H, W)` video and `(1, A, audio_in)` audio velocities.
    #[allow(clippy::too_many_arguments)]
    pub fn velocity(
        &self,
        video: &Tensor,
        audio: &Tensor,
        audio_len: usize,
        text: &Tensor,
        text_len: usize,
        packing: &PackingConfig,
    ) -> Result<(Tensor, Tensor)> {
        let packed = packing::pack(
            video,
            audio,
            audio_len,
            text,
            text_len,
            self.config.packed_width(),
            packing,
        )?;
        let out = self.forward(&packed)?;
        packing::unpack(&out.video_rows, &out.audio_rows, &packed.layout)
    }

    /// The output heads: final norm and linear per modality, f32; text rows produce nothing.
    fn head(&self, x: &Tensor, packed: &Packed) -> Result<DitOutput> {
        let spans = packed.layout.spans();
        Ok(DitOutput {
            video_rows: self
                .video_head
                .forward(x, spans.range(Modality::Video), &spans)?,
            audio_rows: self
                .audio_head
                .forward(x, spans.range(Modality::Audio), &spans)?,
        })
    }

    /// The reference's `(L, max(video_in, audio_in))` output buffer: zeros in text rows and in
    /// audio columns past `audio_in`. Only built for traces.
    fn padded_output(&self, out: &DitOutput, packed: &Packed) -> Result<Tensor> {
        let width = self
            .config
            .video_in_channels
            .max(self.config.audio_in_channels);
        let pad = |t: &Tensor| -> Result<Tensor> { Ok(t.pad_with_zeros(1, 0, width - t.dim(1)?)?) };
        let text = Tensor::zeros((packed.layout.text, width), DType::F32, &self.device)?;
        Ok(Tensor::cat(
            &[pad(&out.video_rows)?, pad(&out.audio_rows)?, text],
            0,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::expected_tensors;

    /// A 3-layer model with the real structure at a tiny width, and one small input.
    fn tiny() -> (DitModel, [Tensor; 3]) {
        let config = DitConfig {
            num_layers: 3,
            hidden_size: 64,
            head_dim: 16,
            num_query_groups: 2,
            text_in_channels: 32,
            mm_layers: vec![0, 2],
            gelu7_layers: vec![0],
            ..DitConfig::base()
        };
        let weights = RandomWeights::seeded(&expected_tensors(&config), "", 11);
        let dev = Device::Cpu;
        let model = DitModel::load(&weights, config.clone(), DType::F32, &dev).unwrap();
        let inputs = [
            Tensor::randn(0f32, 1.0, (1, 48, 2, 4, 4), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (1, 5, config.audio_in_channels), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (1, 6, 32), &dev).unwrap(),
        ];
        (model, inputs)
    }

    fn velocity(model: &DitModel, [video, audio, text]: &[Tensor; 3]) -> Vec<f32> {
        let (v, a) = model
            .velocity(video, audio, 5, text, 6, &DitVariant::Base.packing())
            .unwrap();
        let mut out = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        out.extend(a.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        out
    }

    #[test]
    fn streamed_and_moved_models_compute_the_same_velocities() {
        let (model, inputs) = tiny();
        let resident = velocity(&model, &inputs);
        let streamed = tiny().0.into_streamed(&Device::Cpu).unwrap();
        assert_eq!(velocity(&streamed, &inputs), resident);
        assert_eq!(
            streamed.device_bytes() + streamed.host_bytes(),
            model.device_bytes()
        );
        assert!(streamed.resident_layers().is_err());
        let back = streamed.to_device(&Device::Cpu).unwrap();
        assert_eq!(velocity(&back, &inputs), resident);
        assert_eq!(back.device_bytes(), model.device_bytes());
        // The bytes held are those the footprint predicts for the config.
        let split = crate::footprint::weight_split(model.config(), &LoadOptions::dense(DType::F32));
        assert_eq!(model.device_bytes(), split.non_layer + split.layers);
        assert_eq!(streamed.device_bytes(), split.non_layer);
        assert_eq!(split.rope_bands, 4 * model.bands().len() as u64);
    }
}
