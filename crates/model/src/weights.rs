//! Checkpoint key names and shapes of the DiT, derived from its config.
//!
//! The names are the reference's `state_dict` keys, so the published checkpoints load as they
//! are. [`expected_tensors`] lists every tensor with its shape without allocating anything; the
//! loader verifies a checkpoint against it before reading a byte of weights.

use cadence_core::TensorSpec;
use cadence_kernels::fp8::scale_key;
use candle_core::DType;

use crate::config::DitConfig;

/// Key of the rope frequency buffer (non-learned; recomputed when absent).
pub const ROPE_BANDS: &str = "adapter.rope.bands";

/// Stored types of a GEMM weight: a float, or e4m3 with its scale vector (an FP8 checkpoint).
pub const GEMM_DTYPES: &[DType] = &[
    DType::F16,
    DType::BF16,
    DType::F32,
    DType::F64,
    DType::F8E4M3,
];

/// The four GEMMs of every transformer layer (the weights FP8 applies to).
pub const LAYER_GEMMS: [&str; 4] = [
    "attention.linear_qkv",
    "attention.linear_proj",
    "mlp.up_gate_proj",
    "mlp.down_proj",
];

/// Key of a weight of layer `i`, e.g. `layer_key(3, "attention.linear_qkv")`.
pub fn layer_key(i: usize, name: &str) -> String {
    format!("block.layers.{i}.{name}.weight")
}

/// The embedder keys of the three modalities: (weight, bias) for video, audio, text.
pub const EMBEDDERS: [(&str, &str); 3] = [
    (
        "adapter.video_embedder.weight",
        "adapter.video_embedder.bias",
    ),
    (
        "adapter.audio_embedder.weight",
        "adapter.audio_embedder.bias",
    ),
    ("adapter.text_embedder.weight", "adapter.text_embedder.bias"),
];

/// Output-head keys: (norm, linear) for video and audio.
pub const HEADS: [(&str, &str); 2] = [
    ("final_norm_video.weight", "final_linear_video.weight"),
    ("final_norm_audio.weight", "final_linear_audio.weight"),
];

/// Every tensor the model reads, with its shape, in checkpoint naming.
pub fn expected_tensors(c: &DitConfig) -> Vec<TensorSpec> {
    let hid = c.hidden_size;
    let inputs = [c.video_in_channels, c.audio_in_channels, c.text_in_channels];
    let mut specs = Vec::new();
    for ((w, b), n_in) in EMBEDDERS.iter().zip(inputs) {
        specs.push(TensorSpec::new(*w, [hid, n_in]));
        specs.push(TensorSpec::new(*b, [hid]));
    }
    specs.push(TensorSpec::optional(ROPE_BANDS, [c.rope_bands()]));
    let q_width = c.num_heads_q() * c.head_dim;
    for i in 0..c.num_layers {
        let l = c.layer(i);
        let e = l.experts;
        specs.push(TensorSpec::new(
            layer_key(i, "attention.pre_norm"),
            [hid * e],
        ));
        specs.push(TensorSpec::new(
            layer_key(i, "attention.linear_qkv"),
            [c.qkv_features() * e, hid],
        ));
        specs.push(TensorSpec::new(
            layer_key(i, "attention.linear_proj"),
            [hid * e, q_width],
        ));
        specs.push(TensorSpec::new(
            layer_key(i, "attention.q_norm"),
            [c.head_dim * e],
        ));
        specs.push(TensorSpec::new(
            layer_key(i, "attention.k_norm"),
            [c.head_dim * e],
        ));
        specs.push(TensorSpec::new(layer_key(i, "mlp.pre_norm"), [hid * e]));
        specs.push(TensorSpec::new(
            layer_key(i, "mlp.up_gate_proj"),
            [l.up_features() * e, hid],
        ));
        specs.push(TensorSpec::new(
            layer_key(i, "mlp.down_proj"),
            [hid * e, l.intermediate],
        ));
        if l.post_norm {
            specs.push(TensorSpec::new(layer_key(i, "attn_post_norm"), [hid * e]));
            specs.push(TensorSpec::new(layer_key(i, "mlp_post_norm"), [hid * e]));
        }
    }
    for ((norm, linear), n_out) in HEADS.iter().zip([c.video_in_channels, c.audio_in_channels]) {
        specs.push(TensorSpec::new(*norm, [hid]));
        specs.push(TensorSpec::new(*linear, [n_out, hid]));
    }
    specs
}

/// The GEMM weights of the transformer layers, `(experts·out, in)` each: the tensors an FP8
/// checkpoint stores in e4m3 with a per-row scale.
pub fn gemm_weights(c: &DitConfig) -> Vec<TensorSpec> {
    let keys: std::collections::HashSet<String> = (0..c.num_layers)
        .flat_map(|i| LAYER_GEMMS.map(|name| layer_key(i, name)))
        .collect();
    expected_tensors(c)
        .into_iter()
        .filter(|s| keys.contains(&s.name))
        .collect()
}

/// Every tensor a checkpoint of this model may hold: [`expected_tensors`] (GEMM weights in a
/// float type or e4m3) plus, for each GEMM weight stored in FP8, its `(out,)` scale vector
/// (`<key>_scale`).
pub fn accepted_tensors(c: &DitConfig) -> Vec<TensorSpec> {
    let gemms: std::collections::HashSet<String> =
        gemm_weights(c).into_iter().map(|s| s.name).collect();
    let mut specs: Vec<TensorSpec> = expected_tensors(c)
        .into_iter()
        .map(|s| {
            if gemms.contains(&s.name) {
                s.stored_as(GEMM_DTYPES)
            } else {
                s
            }
        })
        .collect();
    specs.extend(
        gemm_weights(c)
            .into_iter()
            .map(|s| TensorSpec::optional(scale_key(&s.name), [s.shape[0]])),
    );
    specs
}
