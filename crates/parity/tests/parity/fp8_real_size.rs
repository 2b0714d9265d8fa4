//! FP8 at the real width: the GEMM shapes of the 15B model and whole layers of it with random
//! weights, against bf16 (the production reference) and f32, a few hundred tokens on the CPU.
//!
//! Ignored by default (about 4 minutes on two cores, most of it generating the random weights
//! and the f32/bf16 CPU matmuls); run with
//! `cargo test --release -p cadence-parity --test parity fp8_real_size -- --ignored --nocapture`.

use super::fp8_bounds::{randn, rel};
use cadence_core::var_builder::var_builder;
use cadence_core::{trace, RandomWeights, TensorSpec};
use cadence_kernels::fp8::{Fp8Matrix, Scaling};
use cadence_kernels::{linear, LinearWeight};
use cadence_model::dit::layer_prefix;
use cadence_model::layer::{LayerContext, TransformerLayer};
use cadence_model::packing::{coords, PackingConfig, TokenLayout};
use cadence_model::rope::{default_bands, rope_table};
use cadence_model::weights::expected_tensors;
use cadence_model::{DitConfig, LoadOptions};
use cadence_parity::fp8_bounds::{
    gemm_error_bound, gemm_rel_l2_bound, propagate, ResidualBranch, BRANCH_REL_L2,
};
use candle_core::{DType, Device, Tensor};

const TOKENS_LAYOUT: TokenLayout = TokenLayout {
    latent_channels: 48,
    frames: 2,
    rows: 8,
    cols: 14,
    patch: 2,
    audio: 5,
    text: 27,
};

#[test]
#[ignore = "real-size weights; minutes on two cores"]
fn real_size_gemms_within_the_e4m3_bounds() {
    // (K in, N out) of every GEMM of the model; 256 tokens of bf16 activations.
    let shapes = [
        ("linear_qkv", 5120, 7208),
        ("linear_proj", 5120, 5120),
        ("up_gate_proj (swiglu7)", 5120, 27304),
        ("down_proj (swiglu7)", 13652, 5120),
        ("up_gate_proj (gelu7)", 5120, 20480),
        ("down_proj (gelu7)", 20480, 5120),
    ];
    println!("| GEMM | M x K -> N | rel L2 vs f32 | statistical bound | elementwise bound holds |");
    println!("|---|---|---|---|---|");
    for (i, (name, k, n)) in shapes.into_iter().enumerate() {
        let m = 256;
        let x = randn(m, k, 1.0, 100 + i as u64)
            .to_dtype(DType::BF16)
            .unwrap();
        let w = randn(n, k, 1.0 / (k as f64).sqrt(), 200 + i as u64)
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let weight = Fp8Matrix::quantize_weight(&w).unwrap();
        let y = linear(
            &x,
            &LinearWeight::Fp8 {
                weight: weight.clone(),
                activations: Scaling::PerRow,
            },
        )
        .unwrap();
        let xf = x.to_dtype(DType::F32).unwrap();
        let exact = xf.matmul(&w.t().unwrap()).unwrap();
        let xs = Fp8Matrix::quantize(&x, Scaling::PerRow).unwrap();
        let bound = gemm_error_bound(&xf, &w, xs.scale(), weight.scale(), DType::BF16).unwrap();
        let err = (y.to_dtype(DType::F32).unwrap() - &exact)
            .unwrap()
            .abs()
            .unwrap();
        let worst = (err - bound)
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let r = rel(&y, &exact);
        let stat = gemm_rel_l2_bound(&xf, &w).unwrap();
        println!(
            "| {name} | {m} x {k} -> {n} | {r:.4} | {stat:.4} | {} |",
            worst <= 0.0
        );
        assert!(
            worst <= 0.0,
            "{name}: an element exceeds its e4m3 bound by {worst:e}"
        );
        assert!(r <= stat, "{name}: rel L2 {r} > {stat}");
    }
}

/// Layer `index` of the real model with seeded random weights (only that layer's tensors).
fn layer(config: &DitConfig, index: usize, options: &LoadOptions) -> TransformerLayer {
    let prefix = format!("block.layers.{index}.");
    let specs: Vec<TensorSpec> = expected_tensors(config)
        .into_iter()
        .filter(|s| s.name.starts_with(&prefix))
        .collect();
    let weights = RandomWeights::seeded(&specs, "", 31 + index as u64);
    let vb = var_builder(&weights, DType::F32, &Device::Cpu).pp(layer_prefix(index));
    TransformerLayer::load(&vb, config, index, options).unwrap()
}

#[test]
#[ignore = "real-size weights; minutes on two cores"]
fn real_size_layers_fp8_against_bf16() {
    let config = DitConfig::base();
    let layout = TOKENS_LAYOUT;
    let len = layout.len();
    let spans = layout.spans();
    let rope = rope_table(
        &coords(&layout, &PackingConfig::base()),
        &default_bands(config.rope_bands()),
        &Device::Cpu,
    )
    .unwrap();
    let ctx = LayerContext {
        spans: &spans,
        rope: &rope,
        local_mask: None,
    };
    // A residual stream of unit scale, as the f32 embedders produce.
    let x = randn(len, config.hidden_size, 1.0, 7);
    println!("{len} tokens ({spans:?})");
    println!("| layer | tensor | bf16 vs f32 | FP8 vs bf16 | bound |");
    println!("|---|---|---|---|---|");
    // Layer 0: sandwich (3 experts) with gelu7; layer 4: single expert with swiglu7.
    for index in [0, 4] {
        let run = |options: LoadOptions| {
            let layer = layer(&config, index, &options);
            let (out, tensors) = trace::capture([], || layer.forward(&x, &ctx));
            out.unwrap();
            tensors
        };
        let f32 = run(LoadOptions::dense(DType::F32));
        let bf16 = run(LoadOptions::dense(DType::BF16));
        let fp8 = run(LoadOptions::fp8(DType::BF16));
        let norm = |t: &Tensor| {
            t.to_dtype(DType::F64)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                .sqrt()
        };
        let get = |m: &std::collections::BTreeMap<String, Tensor>, n: &str| m[n].clone();
        let (attn, mlp, out) = (
            format!("attn_out_{index}"),
            format!("mlp_out_{index}"),
            format!("layer_{index}"),
        );
        let attn_ref = get(&bf16, &attn);
        let mid = (&x + attn_ref.to_dtype(DType::F32).unwrap()).unwrap();
        let steps = [
            ResidualBranch {
                input: norm(&x),
                output: norm(&attn_ref),
            },
            ResidualBranch {
                input: norm(&mid),
                output: norm(&get(&bf16, &mlp)),
            },
        ];
        let update = |m: &std::collections::BTreeMap<String, Tensor>| (get(m, &out) - &x).unwrap();
        let bounds = [
            (attn.clone(), BRANCH_REL_L2),
            (
                mlp.clone(),
                BRANCH_REL_L2 + BRANCH_REL_L2 * steps[0].output / steps[1].input,
            ),
            (out.clone(), propagate(&steps)[1] / norm(&get(&bf16, &out))),
        ];
        for (name, bound) in bounds {
            let (vs_f32, vs_bf16) = (
                rel(&get(&bf16, &name), &get(&f32, &name)),
                rel(&get(&fp8, &name), &get(&bf16, &name)),
            );
            println!("| {index} | {name} | {vs_f32:.5} | {vs_bf16:.4} | {bound:.4} |");
            assert!(
                vs_bf16 <= bound,
                "layer {index} {name}: {vs_bf16} > {bound}"
            );
        }
        let upd = rel(&update(&fp8), &update(&bf16));
        println!(
            "| {index} | layer update (x_out - x_in) | {:.5} | {upd:.4} | |",
            rel(&update(&bf16), &update(&f32))
        );
    }
}
