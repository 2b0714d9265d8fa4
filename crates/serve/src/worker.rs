//! Workers: one plain thread per device, each owning its engine, claiming jobs from the store,
//! generating them and recording the outcome. Generation is blocking CPU/GPU work, so it never
//! runs on the async runtime; the store is reached through the runtime's handle.
//!
//! While a job runs, a heartbeat task extends its lease, and every progress write checks that
//! the job is still this worker's: a `DELETE` (on any server of the fleet) removes the row, the
//! next write finds it gone and cancels the engine, which stops at the end of the step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cadence_core::CancelToken;
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};

use crate::generator::{ClipGenerator, GenError, GenErrorKind, JobInput, Update};
use crate::metrics::Metrics;
use crate::store::{now_ms, Claimant, Store, VideoRow};

/// How long an idle worker waits before looking at the queue again (jobs queued on this server
/// wake it at once; this is for jobs queued through other servers of a fleet).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What a worker needs besides its engine.
#[derive(Clone)]
pub struct WorkerContext {
    pub runtime: Handle,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Model names this worker's engine makes.
    pub models: Vec<String>,
    pub lease: Duration,
    pub retention: Duration,
    /// On shutdown, how long the running job may take to finish before it is requeued.
    pub grace: Duration,
    pub wake: Arc<Notify>,
    pub shutdown: watch::Receiver<bool>,
}

/// Claims and runs jobs until shutdown.
pub fn run(ctx: &WorkerContext, who: &Claimant, generator: &mut dyn ClipGenerator) {
    while !*ctx.shutdown.borrow() {
        let now = now_ms();
        let lease_until = now + ctx.lease.as_millis() as i64;
        match ctx
            .runtime
            .block_on(ctx.store.claim(who, &ctx.models, now, lease_until))
        {
            Ok(Some(row)) => run_job(ctx, who, generator, &row),
            Ok(None) => idle(ctx),
            Err(e) => {
                tracing::error!("worker {}: cannot claim a job: {e}", who.worker);
                idle(ctx);
            }
        }
        if let Some(memory) = generator.gpu_memory() {
            ctx.metrics.gpu_memory(&who.worker, memory);
        }
    }
}

/// Waits for a job to be queued here, the poll interval, or shutdown.
fn idle(ctx: &WorkerContext) {
    let mut shutdown = ctx.shutdown.clone();
    ctx.runtime.block_on(async {
        tokio::select! {
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => {}
        }
    });
}

/// Runs one claimed job to its end: completed, failed with a reason, requeued (shutdown), or
/// dropped (deleted while running, or taken over after a lost lease).
pub fn run_job(
    ctx: &WorkerContext,
    who: &Claimant,
    generator: &mut dyn ClipGenerator,
    row: &VideoRow,
) {
    let id = row.video.id.as_str();
    tracing::info!("{}: running {id} (attempt {})", who.worker, row.attempts);
    let cancel = CancelToken::new();
    let stopped_for_shutdown = Arc::new(AtomicBool::new(false));
    let heartbeat = ctx.runtime.spawn(heartbeat(
        ctx.clone(),
        who.clone(),
        id.to_string(),
        cancel.clone(),
        Arc::clone(&stopped_for_shutdown),
    ));
    let result = generate(ctx, who, generator, row, &cancel);
    heartbeat.abort();
    let expires = now_ms() + ctx.retention.as_millis() as i64;
    let outcome = match result {
        Ok(made) => {
            let held = ctx
                .runtime
                .block_on(ctx.store.complete(id, who, &made, now_ms(), expires));
            if matches!(held, Ok(true)) {
                ctx.metrics.clip_completed(&made.stages);
                tracing::info!("{}: completed {id}", who.worker);
            }
            held.map(|_| ())
        }
        Err(e) if e.kind == GenErrorKind::Cancelled => {
            if stopped_for_shutdown.load(Ordering::SeqCst) {
                tracing::info!("{}: requeued {id} (shutting down)", who.worker);
                ctx.runtime.block_on(ctx.store.requeue(id, who)).map(drop)
            } else {
                tracing::info!("{}: stopped {id}: it was deleted or taken over", who.worker);
                Ok(())
            }
        }
        Err(e) => {
            tracing::warn!("{}: {id} failed: {e}", who.worker);
            ctx.metrics.job_failed(e.code());
            ctx.runtime
                .block_on(ctx.store.fail(id, who, e.code(), &e.message, expires))
                .map(drop)
        }
    };
    if let Err(e) = outcome {
        // The lease runs out and the job is recovered.
        tracing::error!("{}: cannot record the outcome of {id}: {e}", who.worker);
    }
}

/// Loads the job's inputs and runs the generator, writing progress to the store.
fn generate(
    ctx: &WorkerContext,
    who: &Claimant,
    generator: &mut dyn ClipGenerator,
    row: &VideoRow,
    cancel: &CancelToken,
) -> Result<crate::generator::Generated, GenError> {
    let internal = |m: String| GenError {
        kind: GenErrorKind::Internal,
        message: m,
    };
    let job: JobInput = serde_json::from_str(&row.video.input)
        .map_err(|e| internal(format!("the stored job is unreadable ({e})")))?;
    let uploads = ctx
        .runtime
        .block_on(ctx.store.uploads(&row.video.id))
        .map_err(|e| internal(format!("cannot read the job's uploads: {e}")))?;
    let out = ctx.store.clip_path(&row.video.id);
    let mut progress = |update: Update| {
        let lease_until = now_ms() + ctx.lease.as_millis() as i64;
        match ctx
            .runtime
            .block_on(ctx.store.progress(&row.video.id, who, &update, lease_until))
        {
            Ok(true) => {}
            Ok(false) => cancel.cancel(),
            Err(e) => tracing::warn!("progress of {}: {e}", row.video.id),
        }
    };
    generator.generate(&job, &uploads, &out, &mut progress, cancel)
}

/// Extends the lease of a running job until aborted; cancels it when the row is no longer
/// this worker's, or when shutdown's grace period ends (then it is requeued).
async fn heartbeat(
    ctx: WorkerContext,
    who: Claimant,
    id: String,
    cancel: CancelToken,
    stopped_for_shutdown: Arc<AtomicBool>,
) {
    let period = ctx.lease / 3;
    let mut shutdown = ctx.shutdown.clone();
    let grace_end = async {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(ctx.grace).await;
    };
    tokio::pin!(grace_end);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {
                let lease_until = now_ms() + ctx.lease.as_millis() as i64;
                if let Ok(false) = ctx.store.heartbeat(&id, &who, lease_until).await {
                    cancel.cancel();
                    return;
                }
            }
            _ = &mut grace_end => {
                stopped_for_shutdown.store(true, Ordering::SeqCst);
                cancel.cancel();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::args::DeviceArg;
    use crate::generator::{self, EngineConfig, Generated, GpuMemory, Uploads};
    use crate::store::Video;

    /// The demo engine, deleting the job from the store when the base stage reaches step 2.
    struct DeleteAtStep2 {
        inner: generator::EngineGenerator,
        store: Store,
        runtime: Handle,
        id: String,
        updates: Vec<Update>,
    }

    impl ClipGenerator for DeleteAtStep2 {
        fn generate(
            &mut self,
            job: &JobInput,
            uploads: &Uploads,
            out: &Path,
            progress: &mut dyn FnMut(Update),
            cancel: &CancelToken,
        ) -> Result<Generated, GenError> {
            let (store, runtime, id) = (self.store.clone(), self.runtime.clone(), self.id.clone());
            let updates = &mut self.updates;
            let mut spy = |u: Update| {
                if u.stage == "denoise_base" && u.step == 2 {
                    assert!(runtime.block_on(store.delete(&id)).unwrap());
                }
                updates.push(u);
                progress(u);
            };
            self.inner.generate(job, uploads, out, &mut spy, cancel)
        }

        fn gpu_memory(&self) -> Option<GpuMemory> {
            None
        }
    }

    #[test]
    fn deleting_a_running_job_stops_it_within_one_step() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = runtime.block_on(Store::open(None, dir.path())).unwrap();
        let (tx, rx) = watch::channel(false);
        let ctx = WorkerContext {
            runtime: runtime.handle().clone(),
            store: store.clone(),
            metrics: Arc::default(),
            models: vec!["magihuman-distilled".into()],
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(60),
            grace: Duration::from_secs(1),
            wake: Arc::default(),
            shutdown: rx,
        };
        let job = JobInput {
            model: "magihuman-distilled".into(),
            prompt: "a test".into(),
            seconds: 1,
            width: 64,
            height: 64,
            seed: 1,
            steps: Some(8),
            image: false,
            audio: false,
            super_resolution: false,
        };
        let id = "video_0123456789abcdef0123456789abcdef".to_string();
        let video = Video {
            id: id.clone(),
            model: job.model.clone(),
            prompt: job.prompt.clone(),
            seconds: "1".into(),
            size: "64x64".into(),
            input: serde_json::to_string(&job).unwrap(),
            created_at: now_ms(),
        };
        runtime
            .block_on(store.create(&video, &Uploads::default()))
            .unwrap();
        let who = Claimant {
            owner: "test:1".into(),
            worker: "cpu".into(),
        };
        let config = EngineConfig::from_args(&crate::args::parse_for_tests(&["--demo"]));
        let mut generator = DeleteAtStep2 {
            inner: generator::load(&config, DeviceArg::Cpu).unwrap(),
            store: store.clone(),
            runtime: runtime.handle().clone(),
            id: id.clone(),
            updates: Vec::new(),
        };
        let row = runtime
            .block_on(store.claim(&who, &ctx.models, now_ms(), now_ms() + 30_000))
            .unwrap()
            .unwrap();
        run_job(&ctx, &who, &mut generator, &row);
        let last = generator.updates.last().unwrap();
        // Cancelled at the end of the step during which the job was deleted: no step 3, no
        // decoding, no clip.
        assert_eq!(
            (last.stage, last.step),
            ("denoise_base", 2),
            "{:?}",
            generator.updates
        );
        assert!(runtime.block_on(store.get(&id)).unwrap().is_none());
        assert!(!store.clip_path(&id).exists());
        drop(tx);
    }
}
