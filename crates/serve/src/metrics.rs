//! `/metrics` in the Prometheus text format: queue depth and jobs by state (read from the
//! store at each scrape, so every server of a fleet reports the shared queue), and this
//! server's own stage times, clips and GPU memory.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::generator::GpuMemory;
use crate::store::Status;

type Labels = Vec<(&'static str, String)>;

/// The window of [`Metrics`]' clips-per-second gauge.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Every metric this server exports.
pub struct Metrics {
    registry: Registry,
    queue_depth: Gauge,
    jobs: Family<Labels, Gauge>,
    stage_seconds: Family<Labels, Histogram>,
    clips: Counter,
    failed: Family<Labels, Counter>,
    clips_per_second: Gauge<f64, AtomicU64>,
    gpu_used: Family<Labels, Gauge>,
    gpu_total: Family<Labels, Gauge>,
    /// When the clips of the last [`RATE_WINDOW`] finished.
    recent: Mutex<VecDeque<Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cadence");
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Jobs waiting in the queue",
            queue_depth.clone(),
        );
        let jobs = Family::<Labels, Gauge>::default();
        registry.register("jobs", "Videos in the store, by status", jobs.clone());
        let stage_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.5, 14))
        });
        registry.register(
            "stage_seconds",
            "Seconds per generation stage on this server's workers",
            stage_seconds.clone(),
        );
        let clips = Counter::default();
        registry.register(
            "clips_completed",
            "Clips this server completed",
            clips.clone(),
        );
        let failed = Family::<Labels, Counter>::default();
        registry.register(
            "jobs_failed",
            "Jobs this server failed, by error code",
            failed.clone(),
        );
        let clips_per_second = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "clips_per_second",
            "Clips this server completed per second over the last minute",
            clips_per_second.clone(),
        );
        let gpu_used = Family::<Labels, Gauge>::default();
        registry.register(
            "gpu_memory_used_bytes",
            "GPU memory in use, by device",
            gpu_used.clone(),
        );
        let gpu_total = Family::<Labels, Gauge>::default();
        registry.register(
            "gpu_memory_total_bytes",
            "GPU memory, by device",
            gpu_total.clone(),
        );
        Self {
            registry,
            queue_depth,
            jobs,
            stage_seconds,
            clips,
            failed,
            clips_per_second,
            gpu_used,
            gpu_total,
            recent: Mutex::new(VecDeque::new()),
        }
    }
}

impl Metrics {
    /// A finished clip and the seconds of its stages.
    pub fn clip_completed(&self, stages: &[(&'static str, f64)]) {
        for (stage, seconds) in stages {
            self.stage_seconds
                .get_or_create(&vec![("stage", stage.to_string())])
                .observe(*seconds);
        }
        self.clips.inc();
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Instant::now());
    }

    /// A job this server failed.
    pub fn job_failed(&self, code: &str) {
        self.failed
            .get_or_create(&vec![("code", code.to_string())])
            .inc();
    }

    /// The memory of a worker's GPU.
    pub fn gpu_memory(&self, device: &str, memory: GpuMemory) {
        let labels = vec![("device", device.to_string())];
        self.gpu_used.get_or_create(&labels).set(memory.used as i64);
        self.gpu_total
            .get_or_create(&labels)
            .set(memory.total as i64);
    }

    /// The text exposition, with the store's figures of this moment.
    pub fn render(&self, counts: &[(Status, i64)]) -> String {
        for (status, n) in counts {
            self.jobs
                .get_or_create(&vec![("status", status.as_str().to_string())])
                .set(*n);
            if *status == Status::Queued {
                self.queue_depth.set(*n);
            }
        }
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            while recent.front().is_some_and(|t| t.elapsed() > RATE_WINDOW) {
                recent.pop_front();
            }
            self.clips_per_second
                .set(recent.len() as f64 / RATE_WINDOW.as_secs_f64());
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_queue_stages_and_clips() {
        let m = Metrics::default();
        m.clip_completed(&[("denoise_base", 0.5), ("decode_video", 0.2)]);
        m.job_failed("invalid_input");
        let text = m.render(&[(Status::Queued, 3), (Status::Completed, 1)]);
        for line in [
            "cadence_queue_depth 3",
            "cadence_jobs{status=\"completed\"} 1",
            "cadence_clips_completed_total 1",
            "cadence_stage_seconds_count{stage=\"denoise_base\"} 1",
            "cadence_jobs_failed_total{code=\"invalid_input\"} 1",
            "cadence_clips_per_second 0.016",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
