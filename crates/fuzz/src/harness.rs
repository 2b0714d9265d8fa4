//! Runs a target: proptest draws cases (a seed and a list of mutations) from a seeded RNG, a
//! worker thread runs the parser on each under `catch_unwind` with its allocations measured,
//! and the calling thread watches the clock.
//!
//! A case fails when the parser panics, when it holds more than the target's bound at once,
//! or when it runs past [`time_limit`]; proptest then shrinks the failing case to a minimal
//! list of mutations, whose input is saved to a file named in the error (a hang cannot be
//! shrunk: the input that hung is saved as it is).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use crate::alloc::measure;
use crate::mutate::{apply, mutation, Mutation};
use crate::targets::Target;

/// Overrides every target's case count (a long run: `CADENCE_FUZZ_CASES=200000`).
pub const CASES_VAR: &str = "CADENCE_FUZZ_CASES";
/// Overrides the RNG seed (another run explores other inputs).
pub const SEED_VAR: &str = "CADENCE_FUZZ_SEED";

/// Mutations per case: one to this many (more mostly breaks a format's first check; the
/// seeds themselves are checked before the run).
const MAX_MUTATIONS: usize = 3;

/// What a run tried.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Inputs given to the parser (cases, plus shrinking steps after a failure).
    pub inputs: u64,
    /// Inputs the parser accepted.
    pub accepted: u64,
    /// The largest heap one input made the parser hold, in bytes.
    pub max_peak: usize,
    /// The slowest input.
    pub slowest: Duration,
}

/// The most one input may take: 10 s, for a test build on a loaded two-core machine (inputs
/// are a few kilobytes; the slowest measured take milliseconds).
pub fn time_limit() -> Duration {
    Duration::from_secs(10)
}

/// The case count for `target`: `$CADENCE_FUZZ_CASES` or the target's own.
pub fn cases(target: &Target) -> u32 {
    std::env::var(CASES_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(target.cases)
}

fn rng_seed() -> u64 {
    std::env::var(SEED_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0CAD_E0CE)
}

/// The input of a case: seed `index` with `mutations` applied, then the target's `finish`.
pub fn input(target: &Target, index: usize, mutations: &[Mutation]) -> Vec<u8> {
    let b = apply(&target.seeds[index], mutations, &target.seeds);
    match target.finish {
        Some(finish) => finish(b),
        None => b,
    }
}

enum Event {
    Started,
    Finished,
    Done(Result<(), String>),
}

/// Runs `target` for [`cases`] cases. `Err` describes the first failure and where its input
/// was saved.
pub fn run(target: Target) -> Result<Stats, String> {
    quiet_panics();
    let cases = cases(&target);
    let target = Arc::new(target);
    let stats = Arc::new(Counters::default());
    let current = Arc::new(Mutex::new(Vec::<u8>::new()));
    let (tx, rx) = channel();
    let worker = {
        let (target, stats, current) = (target.clone(), stats.clone(), current.clone());
        std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .spawn(move || {
                let done = run_cases(&target, cases, &stats, &current, &|e| {
                    let _ = tx.send(e);
                });
                let _ = tx.send(Event::Done(done));
            })
            .map_err(|e| format!("cannot start the fuzz worker: {e}"))?
    };
    let mut running = false;
    loop {
        match rx.recv_timeout(time_limit()) {
            Ok(Event::Started) => running = true,
            Ok(Event::Finished) => running = false,
            Ok(Event::Done(result)) => {
                let _ = worker.join();
                result?;
                return Ok(stats.snapshot());
            }
            Err(RecvTimeoutError::Timeout) if running => {
                let input = current.lock().map(|b| b.clone()).unwrap_or_default();
                let path = save(target.name, "hang", &input);
                // The worker cannot be stopped; the test fails and the process ends with it.
                return Err(format!(
                    "{}: one input ran past {:?} ({} bytes, saved to {})",
                    target.name,
                    time_limit(),
                    input.len(),
                    path.display()
                ));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("{}: the fuzz worker died", target.name))
            }
        }
    }
}

#[derive(Default)]
struct Counters {
    inputs: AtomicU64,
    accepted: AtomicU64,
    max_peak: AtomicUsize,
    slowest_us: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            inputs: self.inputs.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            max_peak: self.max_peak.load(Ordering::Relaxed),
            slowest: Duration::from_micros(self.slowest_us.load(Ordering::Relaxed)),
        }
    }
}

/// The proptest loop on the worker thread.
fn run_cases(
    target: &Target,
    cases: u32,
    stats: &Counters,
    current: &Mutex<Vec<u8>>,
    events: &dyn Fn(Event),
) -> Result<(), String> {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed().to_le_bytes().repeat(4));
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = (
        0..target.seeds.len(),
        prop::collection::vec(mutation(), 1..=MAX_MUTATIONS),
    );
    let result = runner.run(&strategy, |(index, mutations)| {
        let bytes = input(target, index, &mutations);
        if let Ok(mut c) = current.lock() {
            c.clone_from(&bytes);
        }
        events(Event::Started);
        let start = Instant::now();
        let (outcome, peak) = measure(|| catch_unwind(AssertUnwindSafe(|| (target.parse)(&bytes))));
        let took = start.elapsed();
        events(Event::Finished);
        stats.inputs.fetch_add(1, Ordering::Relaxed);
        stats.max_peak.fetch_max(peak, Ordering::Relaxed);
        stats
            .slowest_us
            .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
        match outcome {
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                return Err(TestCaseError::fail(format!("panicked: {what}")));
            }
            Ok(Ok(())) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_refused)) => {}
        }
        let bound = (target.max_peak)(bytes.len());
        if peak > bound {
            return Err(TestCaseError::fail(format!(
                "held {peak} bytes at once for a {}-byte input, over its bound of {bound}",
                bytes.len()
            )));
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(why, (index, mutations))) => {
            let bytes = input(target, index, &mutations);
            let path = save(target.name, "fail", &bytes);
            Err(format!(
                "{}: {why}; minimal input ({} bytes, seed {index} with {mutations:?}) saved to {}",
                target.name,
                bytes.len(),
                path.display()
            ))
        }
        Err(TestError::Abort(why)) => Err(format!("{}: aborted: {why}", target.name)),
    }
}

/// One line per panic instead of a backtrace: shrinking re-runs a panicking input hundreds of
/// times, and the failure report names the minimal input anyway.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}"))));
}

/// Saves a failing input under the system's temporary folder; returns its path.
fn save(target: &str, what: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "cadence-fuzz-{target}-{what}-{}.bin",
        std::process::id()
    ));
    // Best effort: the error message names the path either way.
    let _ = std::fs::write(&path, bytes);
    path
}
