//! Quantising at load never holds a dense copy of the model: heap use while loading with FP8
//! GEMM weights peaks at the FP8 model plus the one tensor being converted, measured with a
//! counting allocator. (A file of its own: the allocator counts every test in the binary.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use cadence_core::Checkpoint;
use cadence_kernels::fp8::{CHUNK_ELEMENTS, QUANTISE_TEMPORARY_BYTES};
use cadence_model::footprint::weight_bytes;
use cadence_model::weights::expected_tensors;
use cadence_model::{DitConfig, DitModel, LoadOptions};
use candle_core::{DType, Device, Tensor};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn fp8_loading_holds_one_fp8_copy_of_the_weights() {
    let config = DitConfig {
        num_layers: 4,
        hidden_size: 512,
        head_dim: 64,
        num_query_groups: 2,
        text_in_channels: 384,
        mm_layers: vec![0, 3],
        gelu7_layers: vec![0],
        ..DitConfig::base()
    };
    // Every tensor stored as f32 (as the distilled and SR checkpoints are).
    let specs = expected_tensors(&config);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    let mut largest = 0;
    {
        let mut map = HashMap::new();
        for s in &specs {
            let n: usize = s.shape.iter().product();
            largest = largest.max(n);
            let t = (Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap() * 1e-6).unwrap();
            map.insert(s.name.clone(), t.reshape(s.shape.as_slice()).unwrap());
        }
        candle_core::safetensors::save(&map, &file).unwrap();
    }
    let options = LoadOptions::fp8(DType::BF16);
    let fp8_bytes = weight_bytes(&config, &options) as usize;
    let dense_bytes = weight_bytes(&config, &LoadOptions::dense(DType::BF16)) as usize;

    let baseline = CURRENT.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let model = DitModel::load_with(
        &Checkpoint::open(&file).unwrap(),
        config,
        &options,
        &Device::Cpu,
    )
    .unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - baseline;
    let held = CURRENT.load(Ordering::SeqCst) - baseline;
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
