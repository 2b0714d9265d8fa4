//! The whole DiT: input embedders, the transformer layers, and the video/audio output heads.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use cadence_core::{Checkpoint, Error, RandomWeights, Result, WeightSource};

use crate::config::DitConfig;
use crate::experts::ExpertNorm;
use crate::layer::{LayerContext, TransformerLayer};
use crate::packing::{self, Modality, ModalitySpans, Packed, PackingConfig};
use crate::precision::{LoadOptions, WeightFormat};
use crate::rope::{default_bands, rope_table};
use crate::trace::{record, Trace};
use crate::variant::DitVariant;
use crate::weights::{accepted_tensors, expected_tensors, EMBEDDERS, HEADS, ROPE_BANDS};

/// Name of the optional architecture file beside a checkpoint.
pub const CONFIG_FILE: &str = "config.json";

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
    layers: Vec<TransformerLayer>,
    video_head: OutputHead,
    audio_head: OutputHead,
}

/// Final norm and bias-free linear `(out, hidden)` of one modality, both f32.
#[derive(Debug)]
struct OutputHead {
    norm: ExpertNorm,
    linear: Tensor,
}

impl OutputHead {
    fn load(
        ckpt: &dyn WeightSource,
        (norm, linear): (&str, &str),
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            norm: ExpertNorm::load(ckpt, norm, 1, device)?,
            linear: ckpt.load(linear, DType::F32, device)?,
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
        let f32_tensor = |key: &str| ckpt.load(key, DType::F32, device);
        let embedders = EMBEDDERS
            .iter()
            .map(|(w, b)| Ok((f32_tensor(w)?, f32_tensor(b)?)))
            .collect::<Result<Vec<_>>>()?;
        let bands = if ckpt.contains(ROPE_BANDS) {
            f32_tensor(ROPE_BANDS)?
                .to_device(&Device::Cpu)?
                .to_vec1::<f32>()?
        } else {
            default_bands(config.rope_bands())
        };
        let layers = (0..config.num_layers)
            .map(|i| TransformerLayer::load(ckpt, &config, i, options, device))
            .collect::<Result<Vec<_>>>()?;
        let [video_head, audio_head] = HEADS;
        Ok(Self {
            config,
            compute,
            weight_format: options.weights,
            device: device.clone(),
            embedders,
            bands,
            layers,
            video_head: OutputHead::load(ckpt, video_head, device)?,
            audio_head: OutputHead::load(ckpt, audio_head, device)?,
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

    /// The transformer layers (for running one layer on its own).
    pub fn layers(&self) -> &[TransformerLayer] {
        &self.layers
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

    /// Runs the full forward pass on a packed sequence.
    pub fn forward(&self, packed: &Packed, mut trace: Option<&mut Trace>) -> Result<DitOutput> {
        let spans = packed.layout.spans();
        let mut x = self.embed(packed)?;
        let rope = self.rope(packed)?;
        record(&mut trace, || "adapter_out".into(), &x);
        record(&mut trace, || "rope".into(), &rope);
        let ctx = LayerContext {
            spans: &spans,
            rope: &rope,
            local_mask: packed.local_mask.as_ref(),
        };
        for layer in &self.layers {
            x = layer.forward(&x, &ctx, trace.as_deref_mut())?;
        }
        let out = self.head(&x, packed)?;
        if let Some(trace) = trace {
            trace.record("model_out", &self.padded_output(&out, packed)?);
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
        let out = self.forward(&packed, None)?;
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
