//! Loading never holds two copies of the weights: heap use while loading peaks at the loaded
//! model plus the one tensor being converted, measured with a counting allocator.
//!
//! This file holds a single test, so no other test allocates while it measures.

mod support;

use cadence_core::Checkpoint;
use cadence_model::DitModel;
use candle_core::{DType, Device};

#[test]
fn loading_holds_one_copy_of_the_weights() {
    let config = support::small_config();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    // Every tensor stored as f32: the GEMM weights must be converted to bf16 while loading.
    let specs = support::write_f32_checkpoint(&config, &file);
    let mut largest = 0;
    let mut loaded_bytes = 0;
    for s in &specs {
        let n: usize = s.shape.iter().product();
        largest = largest.max(4 * n);
        let gemm = s.shape.len() == 2 && s.name.starts_with("block.");
        loaded_bytes += if gemm { 2 * n } else { 4 * n };
    }

    let (model, peak, held) = support::measure(|| {
        DitModel::load(
            &Checkpoint::open(&file).unwrap(),
            config,
            DType::BF16,
            &Device::Cpu,
        )
        .unwrap()
    });
    // The stored f32 copy and its bf16 conversion of the largest tensor may coexist briefly.
    let bound = loaded_bytes + largest + largest / 2 + (1 << 20);
    println!("weights {loaded_bytes} B, held after load {held} B, peak during load {peak} B, bound {bound} B");
    assert!(held >= loaded_bytes, "the model holds its weights");
    assert!(peak <= bound, "peak {peak} B exceeds one copy of the weights ({loaded_bytes} B) plus one tensor in flight");
    drop(model);
}
