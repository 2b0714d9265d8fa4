//! Peak GPU memory, from the CUDA driver.
//!
//! A second thread asks the driver for the device's free memory every millisecond
//! (`cuMemGetInfo`, through candle's cudarc) and keeps the highest use seen. The figure is
//! what the device has handed out to every process, including the caching allocator's reserve
//! and the CUDA context itself, so it is the memory a run really needs on the card; the use
//! before the models are built is reported beside it. Peaks shorter than the sampling period
//! can be missed. On the CPU, or in a build without the `cuda` feature, every figure is `None`
//! and [`MemoryMonitor::info`] says why.

use candle_core::Device;
use serde::Serialize;

/// What the report says about memory measurement.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryInfo {
    /// Whether GPU memory figures are present.
    pub available: bool,
    /// Why they are absent (`None` when available).
    pub reason: Option<String>,
    /// The device's memory in bytes.
    pub total_bytes: Option<u64>,
    /// In use when the monitor started (other processes, the CUDA context), in bytes.
    pub baseline_bytes: Option<u64>,
    /// Sampling period in milliseconds.
    pub period_ms: Option<u64>,
}

/// Samples a device's memory use while it lives.
pub struct MemoryMonitor {
    inner: Result<imp::Sampler, String>,
}

impl MemoryMonitor {
    /// Starts sampling `device` (nothing to sample on a CPU, or without the `cuda` feature).
    pub fn start(device: &Device) -> Self {
        Self {
            inner: imp::Sampler::start(device),
        }
    }

    /// The highest use since the previous call (or the start), in bytes; the next period
    /// starts from the use now.
    pub fn take_peak(&self) -> Option<u64> {
        self.inner.as_ref().ok().map(imp::Sampler::take_peak)
    }

    /// The highest use since the start, in bytes.
    pub fn overall_peak(&self) -> Option<u64> {
        self.inner.as_ref().ok().map(imp::Sampler::overall_peak)
    }

    /// For the report.
    pub fn info(&self) -> MemoryInfo {
        match &self.inner {
            Ok(s) => MemoryInfo {
                available: true,
                reason: None,
                total_bytes: Some(s.total()),
                baseline_bytes: Some(s.baseline()),
                period_ms: Some(imp::PERIOD.as_millis() as u64),
            },
            Err(reason) => MemoryInfo {
                available: false,
                reason: Some(reason.clone()),
                total_bytes: None,
                baseline_bytes: None,
                period_ms: None,
            },
        }
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    use candle_core::cuda_backend::cudarc::driver::CudaContext;
    use candle_core::Device;

    /// How often the driver is asked.
    pub const PERIOD: Duration = Duration::from_millis(1);

    /// The sampling thread and what it found.
    pub struct Sampler {
        shared: Arc<Shared>,
        total: u64,
        baseline: u64,
        thread: Option<JoinHandle<()>>,
    }

    struct Shared {
        context: Arc<CudaContext>,
        total: u64,
        /// Highest use since the last [`Sampler::take_peak`].
        period_peak: AtomicU64,
        /// Highest use since the start.
        overall_peak: AtomicU64,
        stop: AtomicBool,
    }

    impl Shared {
        fn used(&self) -> Option<u64> {
            let (free, _) = self.context.mem_get_info().ok()?;
            Some(self.total.saturating_sub(free as u64))
        }

        fn record(&self, used: u64) {
            self.period_peak.fetch_max(used, Ordering::Relaxed);
            self.overall_peak.fetch_max(used, Ordering::Relaxed);
        }
    }

    impl Sampler {
        pub fn start(device: &Device) -> Result<Self, String> {
            let cuda = match device {
                Device::Cuda(cuda) => cuda,
                Device::Cpu => {
                    return Err("the run is on the CPU: GPU memory does not apply".into())
                }
                other => return Err(format!("no memory figures for {other:?}")),
            };
            let context = cuda.cuda_stream().context().clone();
            let (free, total) = context
                .mem_get_info()
                .map_err(|e| format!("the CUDA driver did not report memory: {e}"))?;
            let (total, baseline) = (total as u64, (total - free) as u64);
            let shared = Arc::new(Shared {
                context,
                total,
                period_peak: AtomicU64::new(baseline),
                overall_peak: AtomicU64::new(baseline),
                stop: AtomicBool::new(false),
            });
            let worker = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name("gpu-memory".into())
                .spawn(move || {
                    while !worker.stop.load(Ordering::Relaxed) {
                        if let Some(used) = worker.used() {
                            worker.record(used);
                        }
                        std::thread::sleep(PERIOD);
                    }
                })
                .map_err(|e| format!("cannot start the memory sampling thread: {e}"))?;
            Ok(Self {
                shared,
                total,
                baseline,
                thread: Some(thread),
            })
        }

        pub fn take_peak(&self) -> u64 {
            let now = self.shared.used().unwrap_or(0);
            self.shared.record(now);
            self.shared.period_peak.swap(now, Ordering::Relaxed)
        }

        pub fn overall_peak(&self) -> u64 {
            if let Some(now) = self.shared.used() {
                self.shared.record(now);
            }
            self.shared.overall_peak.load(Ordering::Relaxed)
        }

        pub fn total(&self) -> u64 {
            self.total
        }

        pub fn baseline(&self) -> u64 {
            self.baseline
        }
    }

    impl Drop for Sampler {
        fn drop(&mut self) {
            self.shared.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                // A panicked sampler only loses samples.
                let _ = t.join();
            }
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod imp {
    use std::time::Duration;

    use candle_core::Device;

    /// Unused without CUDA; kept so the report's types are the same in every build.
    pub const PERIOD: Duration = Duration::from_millis(1);

    /// Never constructed: there is no GPU to sample.
    pub enum Sampler {}

    impl Sampler {
        pub fn start(device: &Device) -> Result<Self, String> {
            Err(match device {
                Device::Cpu => "the run is on the CPU: GPU memory does not apply".into(),
                other => format!(
                    "this build has no CUDA support (feature `cuda`), so the memory of \
                     {other:?} cannot be read"
                ),
            })
        }

        pub fn take_peak(&self) -> u64 {
            match *self {}
        }

        pub fn overall_peak(&self) -> u64 {
            match *self {}
        }

        pub fn total(&self) -> u64 {
            match *self {}
        }

        pub fn baseline(&self) -> u64 {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_reports_no_gpu_memory_and_says_why() {
        let m = MemoryMonitor::start(&Device::Cpu);
        assert_eq!(m.take_peak(), None);
        assert_eq!(m.overall_peak(), None);
        let info = m.info();
        assert!(!info.available);
        assert!(info.reason.unwrap().contains("CPU"));
    }
}
