//! `tickcast sim`: one netsim scenario (the real nodes over simulated geo links, in virtual
//! time unless `--realtime`), written to `DIR/report.json` and `DIR/report.html`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Flags of `tickcast sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Scenario file (see netsim/scenarios/).
    scenario: PathBuf,
    /// Seed: the same scenario and seed give the same report, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "sim-out")]
    out: PathBuf,
    /// Also run the same consumers connected straight to the origin (`star`), to compare.
    #[arg(long, value_name = "SHAPE", value_parser = ["star"])]
    compare: Option<String>,
    /// Real time over loopback-speed simulated sockets, so per-hop CPU cost shows up.
    #[arg(long)]
    realtime: bool,
}

/// Runs `tickcast sim` (netsim builds its own runtime, so it runs on a thread of its own).
pub async fn run(a: SimArgs) -> Result<ExitCode> {
    let handle = std::thread::spawn(move || {
        tickcast_netsim::run_cli(&a.scenario, a.seed, &a.out, a.compare.is_some(), a.realtime)
    });
    let result = tokio::task::spawn_blocking(move || handle.join())
        .await
        .context("waiting for the simulation")?;
    match result {
        Ok(r) => r.map(|()| ExitCode::SUCCESS),
        Err(_) => anyhow::bail!("the simulation thread panicked"),
    }
}
