//! Loading never holds two copies of the weights: heap use while loading peaks at the loaded
//! model plus the one tensor being converted, measured with a counting allocator.
//!
//! This file holds a single test, so no other test allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use cadence_core::Checkpoint;
use cadence_model::weights::expected_tensors;
use cadence_model::{DitConfig, DitModel};
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
fn loading_holds_one_copy_of_the_weights() {
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
    // Every tensor stored as f32, as the distilled and SR checkpoints are: the GEMM weights
    // must be converted to bf16 while loading.
    let specs = expected_tensors(&config);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.safetensors");
    let mut largest = 0;
    let mut loaded_bytes = 0;
    {
        let mut map = HashMap::new();
        for s in &specs {
            let n: usize = s.shape.iter().product();
            largest = largest.max(4 * n);
            let gemm = s.shape.len() == 2 && s.name.starts_with("block.");
            loaded_bytes += if gemm { 2 * n } else { 4 * n };
            let t = (Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap() * 1e-6).unwrap();
            map.insert(s.name.clone(), t.reshape(s.shape.as_slice()).unwrap());
        }
        candle_core::safetensors::save(&map, &file).unwrap();
    }

    let baseline = CURRENT.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let model = DitModel::load(
        &Checkpoint::open(&file).unwrap(),
        config,
        DType::BF16,
        &Device::Cpu,
    )
    .unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - baseline;
    let held = CURRENT.load(Ordering::SeqCst) - baseline;
    // The stored f32 copy and its bf16 conversion of the largest tensor may coexist briefly.
    let bound = loaded_bytes + largest + largest / 2 + (1 << 20);
    println!("weights {loaded_bytes} B, held after load {held} B, peak during load {peak} B, bound {bound} B");
    assert!(held >= loaded_bytes, "the model holds its weights");
    assert!(peak <= bound, "peak {peak} B exceeds one copy of the weights ({loaded_bytes} B) plus one tensor in flight");
    drop(model);
}
