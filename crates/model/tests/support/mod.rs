//! Shared by the load-memory tests: a counting global allocator and the small f32 checkpoint
//! they load. Each test binary that includes this module measures its own heap, so each holds
//! a single test (the allocator counts every thread of the binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use cadence_core::TensorSpec;
use cadence_model::weights::expected_tensors;
use cadence_model::DitConfig;
use candle_core::{Device, Tensor};

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

/// Heap bytes `f` allocated at its peak and still holds when it returns, with its result.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let baseline = CURRENT.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let value = f();
    let peak = PEAK.load(Ordering::SeqCst) - baseline;
    let held = CURRENT.load(Ordering::SeqCst) - baseline;
    (value, peak, held)
}

/// A 4-layer model with both layer kinds and multi-modal experts, small enough for a test.
pub fn small_config() -> DitConfig {
    DitConfig {
        num_layers: 4,
        hidden_size: 512,
        head_dim: 64,
        num_query_groups: 2,
        text_in_channels: 384,
        mm_layers: vec![0, 3],
        gelu7_layers: vec![0],
        ..DitConfig::base()
    }
}

/// Writes every tensor of `config` as f32 (as the distilled and SR checkpoints store them) to
/// `file`; returns their names and shapes.
pub fn write_f32_checkpoint(config: &DitConfig, file: &Path) -> Vec<TensorSpec> {
    let specs = expected_tensors(config);
    let mut map = HashMap::new();
    for s in &specs {
        let n: usize = s.shape.iter().product();
        let t = (Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap() * 1e-6).unwrap();
        map.insert(s.name.clone(), t.reshape(s.shape.as_slice()).unwrap());
    }
    candle_core::safetensors::save(&map, file).unwrap();
    specs
}
