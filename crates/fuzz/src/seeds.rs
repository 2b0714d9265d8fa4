//! Valid inputs the mutations start from, one set per target.
//!
//! Built here with the formats' own encoders where a Rust one exists (safetensors, image,
//! hound, zip); the configs, `weights.toml` and the FLAC, MP3 and M4A files are committed under
//! `seeds/` (the audio made once with ffmpeg, see `seeds/README.md`). PyTorch checkpoints have
//! no Rust writer, so their pickles are spelled out opcode by opcode below, exactly as
//! `torch.save` writes a state dict (protocol 2).

use std::collections::HashMap;
use std::io::Write;

use image::ImageEncoder;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// A safetensors file of two tensors (f32 `[2, 3]`, bf16 `[4]`) with metadata.
pub fn safetensors() -> Vec<Vec<u8>> {
    let f32_bytes: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let bf16_bytes: Vec<u8> = (0..4u16).flat_map(|i| (0x3f80 + i).to_le_bytes()).collect();
    let tensors = [
        (
            "a.weight",
            TensorView::new(Dtype::F32, vec![2, 3], &f32_bytes).expect("valid view"),
        ),
        (
            "b.norm",
            TensorView::new(Dtype::BF16, vec![4], &bf16_bytes).expect("valid view"),
        ),
    ];
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let one = safetensors::serialize(tensors.clone(), Some(meta)).expect("serialises");
    let bare = safetensors::serialize(tensors[..1].to_vec(), None).expect("serialises");
    vec![one, bare]
}

/// The shard index of a two-shard checkpoint whose shards are [`index_shards`].
pub fn index() -> Vec<Vec<u8>> {
    vec![
        br#"{"metadata": {"total_size": 32}, "weight_map": {"a.weight": "s1.safetensors", "b.norm": "s2.safetensors"}}"#.to_vec(),
    ]
}

/// The two shards the [`index`] seed names: `(file name, bytes)`.
pub fn index_shards() -> Vec<(&'static str, Vec<u8>)> {
    let f32_bytes: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let bf16_bytes: Vec<u8> = (0..4u16).flat_map(|i| i.to_le_bytes()).collect();
    let shard = |name: &str, view: TensorView| {
        safetensors::serialize([(name, view)], None).expect("serialises")
    };
    vec![
        (
            "s1.safetensors",
            shard(
                "a.weight",
                TensorView::new(Dtype::F32, vec![2, 3], &f32_bytes).expect("valid view"),
            ),
        ),
        (
            "s2.safetensors",
            shard(
                "b.norm",
                TensorView::new(Dtype::BF16, vec![4], &bf16_bytes).expect("valid view"),
            ),
        ),
    ]
}

/// Pickle opcodes of protocol 2, as `torch.save` writes them.
struct Pickler(Vec<u8>);

impl Pickler {
    fn new() -> Self {
        Self(vec![0x80, 0x02]) // PROTO 2
    }
    fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.op(b"X") // BINUNICODE
            .op(&(s.len() as u32).to_le_bytes())
            .op(s.as_bytes())
    }
    fn int(&mut self, v: u8) -> &mut Self {
        self.op(&[b'K', v]) // BININT1
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b"c")
            .op(module.as_bytes())
            .op(b"\n")
            .op(name.as_bytes())
            .op(b"\n")
    }
    /// `torch._utils._rebuild_tensor_v2(storage, 0, (rows, cols), (cols, 1), False,
    /// OrderedDict())` of float storage `key` holding `rows * cols` elements.
    fn tensor(&mut self, key: &str, rows: u8, cols: u8) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b"(") // MARK
            .op(b"(")
            .str("storage")
            .global("torch", "FloatStorage")
            .str(key)
            .str("cpu")
            .int(rows * cols)
            .op(b"tQ") // TUPLE, BINPERSID
            .int(0)
            .int(rows)
            .int(cols)
            .op(b"\x86") // TUPLE2
            .int(cols)
            .int(1)
            .op(b"\x86\x89") // TUPLE2, NEWFALSE
            .global("collections", "OrderedDict")
            .op(b")R") // EMPTY_TUPLE, REDUCE
            .op(b"tR") // TUPLE, REDUCE
    }
    fn finish(&mut self) -> Vec<u8> {
        self.op(b".");
        std::mem::take(&mut self.0)
    }
}

/// `{"w": tensor [2, 2], "b": tensor [1, 2]}` as `torch.save` pickles a state dict.
fn state_dict_pickle(prefix: &str) -> Vec<u8> {
    let mut p = Pickler::new();
    p.op(b"}q\x00(") // EMPTY_DICT, BINPUT 0, MARK
        .str(&format!("{prefix}w"))
        .tensor("0", 2, 2)
        .str(&format!("{prefix}b"))
        .tensor("1", 1, 2)
        .op(b"u"); // SETITEMS
    p.finish()
}

/// A Lightning checkpoint: `{"ema_state_dict": {"module.w": ..., "module.b": ...}, "step": 1}`.
fn lightning_pickle() -> Vec<u8> {
    let inner = state_dict_pickle("module.");
    // The inner dict's opcodes without its PROTO header and STOP.
    let body = &inner[2..inner.len() - 1];
    let mut p = Pickler::new();
    p.op(b"}(")
        .str("ema_state_dict")
        .op(body)
        .str("step")
        .int(1)
        .op(b"u");
    p.finish()
}

/// The restricted unpickler's inputs: a state dict and a Lightning checkpoint.
pub fn pickles() -> Vec<Vec<u8>> {
    vec![state_dict_pickle(""), lightning_pickle()]
}

/// `torch.save` zip archives of the [`pickles`].
pub fn torch_zips() -> Vec<Vec<u8>> {
    pickles().into_iter().map(torch_zip).collect()
}

/// The `torch.save` zip of `pickle`: `archive/data.pkl`, the two uncompressed storages the
/// seeds' tensors use, `byteorder` and `version`.
pub fn torch_zip(pickle: Vec<u8>) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("data.pkl", &pickle[..]),
        ("byteorder", b"little"),
        ("data/0", &[0u8; 16]),
        ("data/1", &[0u8; 8]),
        ("version", b"3\n"),
    ] {
        z.start_file(format!("archive/{name}"), stored)
            .expect("zip entry");
        z.write_all(bytes).expect("zip write");
    }
    z.finish().expect("zip finish").into_inner()
}

/// A DiT `config.json` (the reference's `ModelConfig` fields of a parity case).
pub fn dit_config() -> Vec<Vec<u8>> {
    vec![include_bytes!("../seeds/dit_config.json").to_vec()]
}

/// T5Gemma's Hugging Face `config.json` (encoder-decoder, the real 9B encoder settings).
pub fn text_config() -> Vec<Vec<u8>> {
    vec![include_bytes!("../seeds/t5gemma_config.json").to_vec()]
}

/// Turbo-VAED's JSON config (the released file's fields at the fixtures' widths).
pub fn turbo_config() -> Vec<Vec<u8>> {
    vec![include_bytes!("../seeds/turbo_config.json").to_vec()]
}

/// Stable Audio Open's `model_config.json` (its audio VAE part).
pub fn oobleck_config() -> Vec<Vec<u8>> {
    vec![include_bytes!("../seeds/oobleck_model_config.json").to_vec()]
}

/// The Wan2.2 VAE's arguments (`WanVAE_` of the reference).
pub fn wan_config() -> Vec<Vec<u8>> {
    vec![include_bytes!("../seeds/wan_config.json").to_vec()]
}

/// The project's own `weights.toml`.
pub fn weights_toml() -> Vec<Vec<u8>> {
    vec![include_bytes!("../../../weights.toml").to_vec()]
}

/// A 24 x 16 RGB gradient.
fn gradient() -> Vec<u8> {
    (0..16u32)
        .flat_map(|y| (0..24u32).flat_map(move |x| [(x * 10) as u8, (y * 15) as u8, 128]))
        .collect()
}

/// PNG (RGB and RGBA), JPEG and lossless WebP encodings of [`gradient`].
pub fn images() -> Vec<Vec<u8>> {
    let rgb = gradient();
    let rgba: Vec<u8> = rgb
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], 200])
        .collect();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, 24, 16, image::ExtendedColorType::Rgb8)
        .expect("png");
    let mut png_rgba = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png_rgba)
        .write_image(&rgba, 24, 16, image::ExtendedColorType::Rgba8)
        .expect("png");
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .write_image(&rgb, 24, 16, image::ExtendedColorType::Rgb8)
        .expect("jpeg");
    let mut webp = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
        .write_image(&rgb, 24, 16, image::ExtendedColorType::Rgb8)
        .expect("webp");
    vec![png, png_rgba, jpeg, webp]
}

/// 0.1 s of a 440 Hz tone as WAV (16-bit stereo, 44.1 kHz; float mono, 22.05 kHz).
pub fn wavs() -> Vec<Vec<u8>> {
    let tone = |rate: u32, i: u32| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin();
    let mut pcm = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut pcm, spec).expect("wav");
    for i in 0..4410 {
        let v = (tone(44_100, i) * 12_000.0) as i16;
        w.write_sample(v).expect("wav");
        w.write_sample(v / 2).expect("wav");
    }
    w.finalize().expect("wav");
    let mut float = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::new(&mut float, spec).expect("wav");
    for i in 0..2205 {
        w.write_sample(tone(22_050, i) * 0.5).expect("wav");
    }
    w.finalize().expect("wav");
    vec![pcm.into_inner(), float.into_inner()]
}

/// 0.2 s tones as FLAC, MP3 and AAC in M4A (committed; made by `seeds/README.md`).
pub fn compressed_audio() -> Vec<Vec<u8>> {
    vec![
        include_bytes!("../seeds/tone.flac").to_vec(),
        include_bytes!("../seeds/tone.mp3").to_vec(),
        include_bytes!("../seeds/tone.m4a").to_vec(),
    ]
}
