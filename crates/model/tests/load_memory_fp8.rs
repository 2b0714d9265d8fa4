//! Quantising at load never holds a dense copy of the model: heap use while loading with FP8
//! GEMM weights peaks at the FP8 model plus the one tensor being converted, measured with a
//! counting allocator. (A file of its own: the allocator counts every test in the binary.)

mod support;

use cadence_core::Checkpoint;
use cadence_kernels::fp8::{CHUNK_ELEMENTS, QUANTISE_TEMPORARY_BYTES};
use cadence_model::footprint::weight_bytes;
use cadence_model::{DitModel, LoadOptions};
use candle_core::{DType, Device};

#[test]
fn fp8_loading_holds_one_fp8_copy_of_the_weights() {
    let config = support::small_config();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    // Every tensor stored as f32 (as the distilled and SR checkpoints are).
    let specs = support::write_f32_checkpoint(&config, &file);
    let largest = specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>())
        .max()
        .unwrap();
    let options = LoadOptions::fp8(DType::BF16);
    let fp8_bytes = weight_bytes(&config, &options) as usize;
    let dense_bytes = weight_bytes(&config, &LoadOptions::dense(DType::BF16)) as usize;

    let (model, peak, held) = support::measure(|| {
        DitModel::load_with(
            &Checkpoint::open(&file).unwrap(),
            config,
            &options,
            &Device::Cpu,
        )
        .unwrap()
    });
    // In flight for the largest tensor: its f32 read and bf16 conversion (6 bytes per element),
    // then the bf16 copy, its e4m3 buffer (3 bytes per element) and one slice's temporaries.
    let slice = QUANTISE_TEMPORARY_BYTES * largest.min(CHUNK_ELEMENTS) / CHUNK_ELEMENTS;
    let bound = fp8_bytes + (6 * largest).max(3 * largest + slice) + (1 << 20);
    println!(
        "FP8 weights {fp8_bytes} B (dense bf16 {dense_bytes} B), held after load {held} B, \
         peak during load {peak} B, bound {bound} B"
    );
    assert!(
        held >= fp8_bytes && held < fp8_bytes + (1 << 20),
        "the model holds its FP8 weights"
    );
    assert!(
        peak <= bound,
        "peak {peak} B exceeds the FP8 weights plus one tensor in flight"
    );
    drop(model);
}
