//! Start-up and shutdown: the store, the listener, recovery of this server's interrupted jobs,
//! the worker threads, the housekeeping task, and the signals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Notify};

use crate::api::{self, AppState, Limits, Readiness};
use crate::args::ServeArgs;
use crate::auth::Keys;
use crate::generator::{self, Catalog, EngineConfig, GenError};
use crate::metrics::Metrics;
use crate::store::{now_ms, Claimant, Store};
use crate::worker::{self, WorkerContext};
use crate::ServeError;

/// How often each server requeues jobs of vanished workers and deletes expired videos.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Runs `cadence serve` until SIGTERM or Ctrl-C (or a worker fails to load its models).
pub fn run(args: &ServeArgs) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cadence-serve")
        .build()
        .map_err(|e| ServeError::Config(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(args, runtime.handle().clone()))
}

async fn serve(args: &ServeArgs, runtime: Handle) -> Result<(), ServeError> {
    let keys =
        Keys::load(&args.api_keys, args.api_key_file.as_deref()).map_err(ServeError::Config)?;
    check_devices(args)?;
    let lease = Duration::from_secs(args.lease.max(3));
    let retention = Duration::from_secs(args.retention);
    let store = Store::open(args.queue.as_deref(), &args.data_dir).await?;
    let listener = TcpListener::bind(args.bind).await.map_err(|e| {
        ServeError::Config(format!(
            "cannot listen on {} ({e}); choose another --bind",
            args.bind
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Config(format!("the listening socket has no address: {e}")))?;
    if !addr.ip().is_loopback() && !keys.required() {
        tracing::warn!(
            "listening on {addr} without API keys: anyone who reaches it can generate; give \
             --api-key"
        );
    }
    // This server's name in the queue. Holding the port proves no other live process has it,
    // so jobs still held under this name are from this server's previous life.
    let owner = format!(
        "{}:{}",
        gethostname::gethostname().to_string_lossy(),
        addr.port()
    );
    let expires = now_ms() + retention.as_millis() as i64;
    let (requeued, failed) = store
        .recover(Some(&owner), now_ms(), args.max_attempts, expires)
        .await?;
    if requeued + failed > 0 {
        tracing::info!(
            "{requeued} interrupted job(s) requeued, {failed} failed after --max-attempts"
        );
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let config = EngineConfig::from_args(args);
    let catalog = Catalog::new(&config, args.max_seconds, args.max_prompt_chars);
    let devices = if args.no_worker {
        Vec::new()
    } else {
        args.devices.clone()
    };
    let readiness = Arc::new(Readiness {
        expected: devices.len(),
        loaded: AtomicUsize::new(0),
    });
    let metrics = Arc::new(Metrics::default());
    let wake = Arc::new(Notify::new());
    let ctx = WorkerContext {
        runtime,
        store: store.clone(),
        metrics: Arc::clone(&metrics),
        models: catalog
            .model_names()
            .into_iter()
            .map(String::from)
            .collect(),
        lease,
        retention,
        grace: Duration::from_secs(args.grace),
        wake: Arc::clone(&wake),
        shutdown: stop_rx.clone(),
    };
    let (load_failed_tx, mut load_failed) = mpsc::unbounded_channel::<GenError>();
    let mut threads = Vec::new();
    for device in devices {
        let (ctx, config, readiness, failed) = (
            ctx.clone(),
            config.clone(),
            Arc::clone(&readiness),
            load_failed_tx.clone(),
        );
        let who = Claimant {
            owner: owner.clone(),
            worker: device.to_string(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("worker {device}"))
            .spawn(move || match generator::load(&config, device) {
                Ok(mut generator) => {
                    readiness.loaded.fetch_add(1, Ordering::SeqCst);
                    tracing::info!("worker on {device} loaded its models");
                    worker::run(&ctx, &who, &mut generator);
                }
                Err(e) => {
                    let _ = failed.send(e);
                }
            })
            .map_err(|e| ServeError::Config(format!("cannot start a worker thread: {e}")))?;
        threads.push(thread);
    }
    drop(load_failed_tx);

    tokio::spawn(housekeeping(
        store.clone(),
        args.max_attempts,
        retention,
        stop_rx.clone(),
    ));
    let load_error = Arc::new(Mutex::new(None));
    {
        let load_error = Arc::clone(&load_error);
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| ServeError::Config(format!("cannot watch for SIGTERM: {e}")))?;
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
                Some(e) = load_failed.recv() => {
                    *load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
            let _ = stop_tx.send(true);
        });
    }

    let state = Arc::new(AppState {
        store,
        catalog: catalog.clone(),
        keys,
        limits: Limits {
            max_upload_bytes: args.max_upload_bytes,
            max_queue: args.max_queue,
        },
        metrics,
        wake,
        readiness,
        shutdown: stop_rx.clone(),
    });
    tracing::info!(
        "serving {} on http://{addr}/ (as {owner})",
        catalog.model_names().join(", ")
    );
    let mut stopping = stop_rx.clone();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|e| ServeError::Config(format!("the HTTP server failed: {e}")))?;
    // Workers finish (or requeue) their job within --grace, then return.
    tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await
    .map_err(|e| ServeError::Config(format!("a worker thread failed: {e}")))?;
    let load_error = load_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    match load_error {
        Some(e) => Err(ServeError::Engine(e)),
        None => Ok(()),
    }
}

/// Devices must be distinct; the demo runs on the CPU only.
fn check_devices(args: &ServeArgs) -> Result<(), ServeError> {
    for (i, d) in args.devices.iter().enumerate() {
        if args.devices[..i].contains(d) {
            return Err(ServeError::Config(format!(
                "--devices names {d} twice; give each device once"
            )));
        }
    }
    if args.devices.is_empty() && !args.no_worker {
        return Err(ServeError::Config(
            "--devices is empty; name at least one device (cpu, 0, 1, ...) or use --no-worker"
                .into(),
        ));
    }
    Ok(())
}

/// Requeues (or fails) jobs whose lease ran out and deletes expired videos, until shutdown.
async fn housekeeping(
    store: Store,
    max_attempts: u32,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HOUSEKEEPING) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = now_ms();
        let expires = now + retention.as_millis() as i64;
        match store.recover(None, now, max_attempts, expires).await {
            Ok((0, 0)) => {}
            Ok((requeued, failed)) => tracing::info!(
                "jobs of vanished workers: {requeued} requeued, {failed} failed after \
                 --max-attempts"
            ),
            Err(e) => tracing::warn!("recovering jobs: {e}"),
        }
        match store.expire(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{n} expired video(s) deleted"),
            Err(e) => tracing::warn!("deleting expired videos: {e}"),
        }
    }
}
