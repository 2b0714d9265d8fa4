//! Where messages go: progress bars on a terminal, plain log lines otherwise.
//!
//! Progress bars are drawn on stderr only when it is a terminal and `--quiet` is off; when
//! stderr is a pipe or a file (CI, `2> log.txt`) the same events become `tracing` log lines.
//! Log lines printed while bars are on screen go through [`MultiProgress::suspend`], so they
//! appear above the bars instead of tearing them.

use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressDrawTarget};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::args::LogArgs;

/// How the run reports itself; shared by every subcommand.
#[derive(Clone)]
pub struct Output {
    /// The bars (drawing to a hidden target when [`Output::bars`] is false).
    pub multi: MultiProgress,
    /// Whether bars are drawn; when false, progress is logged as lines.
    pub bars: bool,
    /// `--quiet`: nothing but errors.
    pub quiet: bool,
}

impl Output {
    /// Sets up bars and the log subscriber from the verbosity flags.
    pub fn init(log: &LogArgs) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bars = terminal && !log.quiet;
        let target = if bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let layer = tracing_subscriber::fmt::layer()
            .without_time()
            .with_target(log.verbose > 0)
            .with_ansi(terminal)
            .with_writer(SuspendWriter {
                multi: multi.clone(),
            })
            .with_filter(filter(log));
        // A second init (only possible in tests) keeps the first subscriber.
        let _ = tracing_subscriber::registry().with(layer).try_init();
        Self {
            multi,
            bars,
            quiet: log.quiet,
        }
    }
}

/// What is logged at each verbosity.
fn filter(log: &LogArgs) -> Targets {
    if log.quiet {
        return Targets::new().with_default(LevelFilter::ERROR);
    }
    match log.verbose {
        // `cadence::` is this binary's modules only; the libraries speak up from -v on.
        0 => Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("cadence::", LevelFilter::INFO)
            // Request warnings reach the user through the pipeline's Progress::warning.
            .with_target("cadence_pipeline::request", LevelFilter::ERROR),
        // `cadence` is a prefix: it covers the binary and every cadence_* library.
        1 => Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("cadence", LevelFilter::DEBUG),
        _ => Targets::new().with_default(LevelFilter::TRACE),
    }
}

/// Writes each log event to stderr in one piece, with the bars lifted out of the way.
#[derive(Clone)]
struct SuspendWriter {
    multi: MultiProgress,
}

impl<'a> MakeWriter<'a> for SuspendWriter {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer {
            multi: self.multi.clone(),
            buf: Vec::new(),
        }
    }
}

/// One event's text, printed when the formatter is done with it.
struct EventBuffer {
    multi: MultiProgress,
    buf: Vec<u8>,
}

impl Write for EventBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.multi.suspend(|| {
            // Nowhere left to report a failing stderr.
            let _ = std::io::stderr().write_all(&self.buf);
        });
    }
}
