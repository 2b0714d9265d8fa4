//! FP8 checkpoints: written from a bf16 model, stored as F8_E4M3 + f32 scales under the
//! documented names, and loaded back into the same model that quantising at load gives.

use cadence_core::{Checkpoint, RandomWeights, WeightSource};
use cadence_kernels::fp8::scale_key;
use cadence_kernels::LinearWeight;
use cadence_model::fp8_checkpoint::{is_fp8, write_fp8_checkpoint, FORMAT};
use cadence_model::packing::{PackingConfig, TokenLayout};
use cadence_model::weights::{expected_tensors, gemm_weights};
use cadence_model::{pack, DitConfig, DitModel, LoadOptions};
use candle_core::{DType, Device, Tensor};

fn tiny() -> DitConfig {
    DitConfig {
        num_layers: 3,
        hidden_size: 64,
        head_dim: 16,
        num_query_groups: 2,
        text_in_channels: 40,
        mm_layers: vec![0, 2],
        gelu7_layers: vec![0],
        ..DitConfig::base()
    }
}

/// The model's video and audio velocity rows for a small fixed input.
fn run(model: &DitModel) -> Vec<f32> {
    let dev = Device::Cpu;
    let layout = TokenLayout {
        latent_channels: 48,
        frames: 2,
        rows: 2,
        cols: 3,
        patch: 2,
        audio: 5,
        text: 4,
    };
    let video = Tensor::arange(0f32, (48 * 2 * 4 * 6) as f32, &dev)
        .unwrap()
        .reshape((1, 48, 2, 4, 6))
        .unwrap()
        .affine(1e-3, -0.5)
        .unwrap()
        .sin()
        .unwrap();
    let audio = Tensor::arange(0f32, 5.0 * 64.0, &dev)
        .unwrap()
        .reshape((1, 5, 64))
        .unwrap()
        .affine(1e-3, -0.1)
        .unwrap();
    let text = Tensor::arange(0f32, 4.0 * 40.0, &dev)
        .unwrap()
        .reshape((1, 4, 40))
        .unwrap()
        .affine(-2e-3, 0.2)
        .unwrap();
    let packed = pack(
        &video,
        &audio,
        layout.audio,
        &text,
        layout.text,
        model.config().packed_width(),
        &PackingConfig::base(),
    )
    .unwrap();
    let out = model.forward(&packed).unwrap();
    let mut v = out
        .video_rows
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    v.extend(
        out.audio_rows
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
    );
    v
}

#[test]
fn fp8_checkpoint_round_trips() {
    let config = tiny();
    let source = RandomWeights::seeded(&expected_tensors(&config), "", 11);
    let dir = tempfile::tempdir().unwrap();
    let written = write_fp8_checkpoint(&source, &config, dir.path()).unwrap();
    assert_eq!(
        written.len(),
        config.num_layers + 2,
        "a shard per layer, one for the rest, the index"
    );

    let ckpt = Checkpoint::open(dir.path()).unwrap();
    assert!(is_fp8(&ckpt, &config));
    assert!(!is_fp8(&source, &config));
    for spec in gemm_weights(&config) {
        let stored = &ckpt.stored()[&spec.name];
        assert_eq!(stored.dtype, DType::F8E4M3, "{}", spec.name);
        assert_eq!(
            stored.shape, spec.shape,
            "{} keeps its unpadded shape",
            spec.name
        );
        let scale = &ckpt.stored()[&scale_key(&spec.name)];
        assert_eq!(
            (scale.dtype, scale.shape.clone()),
            (DType::F32, vec![spec.shape[0]])
        );
    }
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(index["metadata"]["format"], FORMAT);

    // Loaded from the file == quantised at load from the bf16 source, bit for bit.
    let dev = Device::Cpu;
    let fp8 = LoadOptions::fp8(DType::BF16);
    let from_file = DitModel::load_with(&ckpt, config.clone(), &fp8, &dev).unwrap();
    let at_load = DitModel::load_with(&source, config.clone(), &fp8, &dev).unwrap();
    let (a, b) = (run(&from_file), run(&at_load));
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(a, b);

    // A dense load of the FP8 file dequantises: its GEMM weights are the FP8 values.
    let dense = DitModel::load(&ckpt, config.clone(), DType::F32, &dev).unwrap();
    let (LinearWeight::Dense(w), LinearWeight::Fp8 { weight, .. }) =
        (layer_qkv(&dense), layer_qkv(&from_file))
    else {
        panic!("expected a dense and an FP8 weight");
    };
    let want = weight.dequantize().unwrap();
    assert_eq!(
        w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    assert!(ckpt.keys().len() > expected_tensors(&config).len());
}

fn layer_qkv(model: &DitModel) -> &LinearWeight {
    model.resident_layers().unwrap()[1].gemms()[0]
}
