//! tickcast-netsim: the real origin, relay and client code over a simulated network, with a
//! latency report.
//!
//! quinn runs an endpoint over any [`quinn::AsyncUdpSocket`]; netsim gives every node one
//! on a simulated network and starts the unmodified `tickcast_origin::Origin`,
//! `tickcast_relay::Relay` and `tickcast_client::Client`, configured from a generated
//! topology by `tickcast_node::net`, on a tokio runtime with paused time. Time is then
//! virtual: a 30 s scenario with 55 nodes runs in seconds, and a run is a function of the
//! scenario and the seed.
//!
//! The layers, bottom up:
//! - [`link`]: one directed link as a sans-IO model (delay, jitter, random and
//!   Gilbert-Elliott loss, bandwidth with a drop-tail queue, reordering, MTU);
//! - [`socket`]: [`socket::SimSocket`], the quinn socket on the simulated network;
//! - [`net`]: [`net::SimNet`], addresses, links, timed delivery, crashes and partitions;
//! - [`certs`]: node identities whose sizes do not vary between runs;
//! - [`scenario`]: the scenario file format (`netsim/scenarios/*.toml`);
//! - [`plan`]: a scenario turned into a tickcast topology, link profiles and floors;
//! - [`runner`]: one run, start to end ([`run`]);
//! - [`report`] and [`html`]: `report.json` and `report.html`.
//!
//! [`run_cli`] is what `tickcast sim` does.
//!
//! Known limits: under paused time tokio timers have 1 ms resolution, so every timer and
//! every packet delivery is rounded up to the next millisecond (figures carry up to 1 ms
//! per hop of rounding); CPU time is free, so processing cost per hop does not show
//! (`realtime` runs the same scenario in real time for that). Two nodes are never in one
//! region's "same machine": every pair of nodes has its own link.

pub mod certs;
pub mod html;
pub mod link;
pub mod net;
pub mod plan;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod socket;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

pub use plan::Shape;
pub use report::Report;
pub use runner::{RunOptions, run};
pub use scenario::Scenario;

/// `tickcast sim SCENARIO [--seed N] [--out DIR] [--compare star] [--realtime]`: runs the
/// scenario file with a progress bar on stderr, writes `DIR/report.json`,
/// `DIR/report.html` and `DIR/topology.toml` (the generated topology), with
/// `compare_star` also runs the star shape (writing `DIR/star.json` and putting the
/// comparison in the report), and prints a short summary on stdout. Builds its own tokio
/// runtime: do not call it from inside one.
pub fn run_cli(
    scenario_path: &Path,
    seed: u64,
    out: &Path,
    compare_star: bool,
    realtime: bool,
) -> Result<()> {
    let scenario = Scenario::load(scenario_path)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let tree_plan = plan::Plan::new(&scenario, Shape::Tree)?;
    write(&out.join("topology.toml"), &tree_plan.topology_toml)?;
    let mut report = run_with_bar(&scenario, seed, realtime, Shape::Tree)?;
    if compare_star {
        let star = run_with_bar(&scenario, seed, realtime, Shape::Star)?;
        let star_plan = plan::Plan::new(&scenario, Shape::Star)?;
        report.comparison = Some(report::Comparison {
            tree: report.summary(),
            star: star.summary(),
            star_skipped_faults: star_plan
                .skipped_faults
                .iter()
                .map(|f| f.describe())
                .collect(),
        });
        write(&out.join("star.json"), &star.to_json())?;
    }
    let json = out.join("report.json");
    write(&json, &report.to_json())?;
    let html = out.join("report.html");
    write(&html, &html::render(&report))?;
    print!("{}", report::summary_text(&report));
    println!("wrote {} and {}", json.display(), html.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Runs one shape with a progress bar (run time progressed / feed duration + drain).
fn run_with_bar(scenario: &Scenario, seed: u64, realtime: bool, shape: Shape) -> Result<Report> {
    let total = ((scenario.duration_s + scenario.drain_s) * 1000.0) as u64;
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>5} [{bar:40}] {pos:>6}/{len} ms {msg} ({elapsed} wall)",
        )
        .expect("progress template")
        .progress_chars("=> "),
    );
    bar.set_prefix(match shape {
        Shape::Tree => "tree",
        Shape::Star => "star",
    });
    let b = bar.clone();
    let mode = if realtime { "real time" } else { "virtual" };
    let opts = RunOptions {
        realtime,
        shape,
        progress: Some(Arc::new(move |p: &runner::Progress| {
            b.set_position(p.elapsed.as_millis() as u64);
            let phase = match p.phase {
                runner::Phase::Connecting => "connecting",
                runner::Phase::Feeding => "feeding",
                runner::Phase::Draining => "draining",
            };
            b.set_message(format!("{mode}, {phase}"));
        })),
    };
    let r = run(scenario, seed, &opts);
    bar.finish_and_clear();
    r
}
