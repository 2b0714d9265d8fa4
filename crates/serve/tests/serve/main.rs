//! `cadence serve` end to end, on the demo model: servers run as separate processes (this
//! binary again, as `child_server`), driven over HTTP by a battery of bad requests, the
//! official `openai` Python package, headless Chromium, SIGKILL/SIGTERM, and a PostgreSQL
//! fleet. Tests needing Python, Chromium or PostgreSQL skip with a printed reason when the tool
//! is missing, and fail instead under CADENCE_SERVE_REQUIRE_TOOLS=1 (set by .ci/run).

mod battery;
mod browser;
mod clips;
mod fleet;
mod lifecycle;
mod sdk;
mod support;

/// The server process the other tests start; does nothing when run by hand.
#[test]
#[ignore = "the server process the other tests start"]
fn child_server() {
    let Ok(flags) = std::env::var(support::CHILD_ENV) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: cadence_serve::ServeArgs,
    }
    let cli = <Cli as clap::Parser>::parse_from(std::iter::once("serve").chain(flags.lines()));
    if let Err(e) = cadence_serve::run(&cli.serve) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
