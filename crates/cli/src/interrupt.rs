//! Ctrl-C and SIGTERM (and SIGHUP, a closed terminal): never leave a partial clip behind.
//!
//! Before the output file is opened there is nothing to clean up, so a signal exits at once
//! (loading 15B models can take minutes; waiting for it would feel like a hang). Once the clip
//! is being written, a signal cancels the pipeline's [`CancelToken`]: generation stops within a
//! step or a decoder block, the unfinished writer is dropped and removes its temporary file, and
//! the program exits with code 130. A second signal exits at once.
//!
//! The handler runs on its own thread; a mutex orders it with [`GuardedSink::start`], so the
//! handler never exits in the instant between "no file yet" and the file's creation.

use std::sync::{Arc, Mutex, MutexGuard};

use cadence_pipeline::engine::{CancelToken, ClipInfo, ClipSink};

use crate::errors::{CliError, ExitKind};

/// Shared between the handler thread and the sink.
#[derive(Default)]
struct Shared {
    /// True once the output file exists (as a temporary file being written).
    writing: Mutex<bool>,
    cancel: CancelToken,
}

impl Shared {
    fn writing(&self) -> MutexGuard<'_, bool> {
        // A poisoned lock still holds a meaningful flag.
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The installed Ctrl-C handler.
pub struct Interrupt {
    shared: Arc<Shared>,
}

impl Interrupt {
    /// Installs the handler (once per process).
    pub fn install() -> Result<Self, CliError> {
        let shared = Arc::new(Shared::default());
        let handler = Arc::clone(&shared);
        ctrlc::set_handler(move || on_interrupt(&handler)).map_err(|e| {
            CliError::new(
                ExitKind::Other,
                format!("cannot install the Ctrl-C and SIGTERM handler: {e}"),
            )
        })?;
        Ok(Self { shared })
    }

    /// The token the pipeline polls.
    pub fn token(&self) -> &CancelToken {
        &self.shared.cancel
    }

    /// Wraps the output sink so that opening the file switches Ctrl-C to a clean stop.
    pub fn guard<S: ClipSink>(&self, sink: S) -> GuardedSink<S> {
        GuardedSink {
            inner: sink,
            shared: Arc::clone(&self.shared),
        }
    }
}

fn on_interrupt(shared: &Shared) {
    let writing = shared.writing();
    if !*writing {
        eprintln!("\ninterrupted; no output was written");
        std::process::exit(ExitKind::Interrupted.code().into());
    }
    if shared.cancel.is_cancelled() {
        eprintln!(
            "\ninterrupted again: quitting now (the unfinished clip's files are unnamed, so none is left)"
        );
        std::process::exit(ExitKind::Interrupted.code().into());
    }
    shared.cancel.cancel();
    eprintln!("\nstopping now and removing the unfinished file (Ctrl-C again to quit at once)");
}

/// A [`ClipSink`] that tells the handler when the output file comes into existence.
pub struct GuardedSink<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> GuardedSink<S> {
    /// The wrapped sink, to finish it.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: ClipSink> ClipSink for GuardedSink<S> {
    fn start(&mut self, info: &ClipInfo) -> cadence_core::Result<()> {
        // Held while the file is created: the handler cannot exit half-way through.
        let mut writing = self.shared.writing();
        *writing = true;
        self.inner.start(info)
    }

    fn frames(&mut self, rgb: &[u8], count: usize) -> cadence_core::Result<()> {
        self.inner.frames(rgb, count)
    }

    fn audio(&mut self, interleaved: &[f32]) -> cadence_core::Result<()> {
        self.inner.audio(interleaved)
    }
}
