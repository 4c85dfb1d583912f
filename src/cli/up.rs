//! `tickcast up`: the whole topology in this process, a synthetic feed, a live table and a
//! verdict.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tickcast::net::Certs;
use tickcast_origin::synthetic::{Burst, SyntheticConfig};
use tickcast_proto::Clock;
use tickcast_proto::topology::Topology;
use tickcast_transport::TokioClock;

use super::TopologyArg;
use super::harness::{DRAIN_TIMEOUT, Harness, READY_TIMEOUT, STOP_TIMEOUT};
use super::report::{self, ConsumerReport, RelayReport};
use super::signal::interrupt_token;

/// Flags of `tickcast up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    topology: TopologyArg,
    /// Run the feed this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Steady feed rate, ticks per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Payload bytes per tick (at least 16: the synthetic header).
    #[arg(long, value_name = "B", default_value_t = 100)]
    size: usize,
    /// Add a burst every this many milliseconds.
    #[arg(long, value_name = "MS", requires = "burst_count")]
    burst_every: Option<u64>,
    /// Ticks per burst.
    #[arg(long, value_name = "N", requires = "burst_every")]
    burst_count: Option<u64>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Refresh the live table this often.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    interval_ms: u64,
    /// Kill node NODE (origin or relay) SECONDS after the feed starts, as `kill -9` would:
    /// it falls silent without a goodbye. Repeatable.
    #[arg(long, value_name = "NODE@SECONDS", value_parser = parse_kill)]
    kill: Vec<(String, f64)>,
}

/// Parses `NODE@SECONDS`.
fn parse_kill(s: &str) -> std::result::Result<(String, f64), String> {
    let (node, at) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("{s:?}: expected NODE@SECONDS"))?;
    let at: f64 = at
        .parse()
        .map_err(|_| format!("{s:?}: {at:?} is not a number of seconds"))?;
    if node.is_empty() || !at.is_finite() || at < 0.0 {
        return Err(format!("{s:?}: expected NODE@SECONDS with SECONDS >= 0"));
    }
    Ok((node.to_string(), at))
}

/// The feed settings common to `up` and `bench`, checked.
pub fn feed_config(
    topo: &Topology,
    rate: f64,
    size: usize,
    burst: Option<Burst>,
    duration: Option<Duration>,
) -> Result<SyntheticConfig> {
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0,
        "--rate must be a positive number of ticks per second, not {rate}"
    );
    anyhow::ensure!(
        size <= tickcast_proto::tick::MAX_PAYLOAD,
        "--size {size} exceeds the 256 KiB payload limit"
    );
    let channel = topo
        .channels
        .first()
        .context("the topology has no channel to feed")?
        .id;
    Ok(SyntheticConfig {
        channel,
        rate,
        payload_size: size,
        burst,
        duration,
    })
}

/// A non-negative, finite number of seconds as a duration.
pub fn seconds(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("{flag} {s}: not a duration"))
}

/// The JSON file `up --json` writes.
#[derive(Serialize)]
struct UpJson {
    sent: u64,
    rate: f64,
    size: usize,
    duration_s: f64,
    consumers: Vec<ConsumerReport>,
    origin: RelayReport,
    relays: Vec<RelayReport>,
    ok: bool,
}

/// Redraws the live table under `title`.
fn live(tty: bool, title: &str) -> impl FnMut(&Harness) + '_ {
    move |h| report::print_screen(&report::live_table(h, title), tty)
}

/// Runs `tickcast up`.
pub async fn run(a: UpArgs) -> Result<ExitCode> {
    let topo = a.topology.load()?;
    let burst = match (a.burst_every, a.burst_count) {
        (Some(ms), Some(count)) if ms > 0 => Some(Burst {
            every: Duration::from_millis(ms),
            count,
        }),
        (Some(_), _) => anyhow::bail!("--burst-every must be at least 1 ms"),
        _ => None,
    };
    let duration = a.duration.map(|d| seconds("--duration", d)).transpose()?;
    let cfg = feed_config(&topo, a.rate, a.size, burst, duration)?;
    let every = Duration::from_millis(a.interval_ms.max(10));
    let interrupt = interrupt_token();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let certs = Certs::ephemeral()?;

    for (node, _) in &a.kill {
        anyhow::ensure!(
            topo.listen_addr(node).is_some(),
            "--kill {node}: not an origin or relay of the topology"
        );
    }
    // Kill switches cost a check per packet: only when kills are asked for.
    let opts = tickcast::net::NetOptions {
        sockets: if a.kill.is_empty() {
            Default::default()
        } else {
            tickcast::net::Sockets::switchable()
        },
        ..Default::default()
    };
    let h = Harness::start(&topo, &certs, clock, &opts).await?;
    eprintln!(
        "started {} relays and {} consumers from {}; waiting for them to connect",
        h.relays.len(),
        h.probes.len(),
        a.topology.topology.display()
    );
    if let Err(e) = h.wait_ready(READY_TIMEOUT, &interrupt).await {
        h.stop(STOP_TIMEOUT).await;
        return Err(e);
    }
    eprintln!(
        "all connected; feeding channel {} at {}/s, {} B{}{}",
        cfg.channel,
        cfg.rate,
        cfg.payload_size.max(tickcast_origin::synthetic::HEADER),
        burst.map_or(String::new(), |b| format!(
            ", bursts of {} every {:?}",
            b.count, b.every
        )),
        duration.map_or(" until Ctrl-C".into(), |d| format!(" for {d:?}")),
    );
    let tty = report::stdout_is_tty();
    for (node, at) in a.kill.clone() {
        let control = h.control.clone();
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs_f64(at)) => {
                    match control.kill(&node) {
                        Ok(()) => eprintln!("killed {node} at {at} s"),
                        Err(e) => eprintln!("error: {e:#}"),
                    }
                }
            }
        });
    }
    let (sent, ran) = h
        .feed(cfg, &interrupt, every, live(tty, "tickcast up: feeding"))
        .await?;
    let caught_up = h
        .drain(
            sent,
            DRAIN_TIMEOUT,
            every,
            live(tty, "tickcast up: feed ended, draining"),
        )
        .await;
    let title = format!(
        "tickcast up: sent {sent} ticks in {:.1} s{}",
        ran.as_secs_f64(),
        if caught_up { "" } else { " (drain incomplete)" }
    );
    // The last table before stopping (afterwards every node reports 0 children).
    report::print_screen(&report::live_table(&h, &title), tty);
    h.stop(STOP_TIMEOUT).await;
    let (text, ok) = report::summary(&h, sent);
    println!("\n{text}");
    if let Some(path) = &a.json {
        let (origin, relays) = report::relays(&h);
        report::write_json(
            path,
            &UpJson {
                sent,
                rate: a.rate,
                size: a.size,
                duration_s: ran.as_secs_f64(),
                consumers: report::consumers(&h),
                origin,
                relays,
                ok,
            },
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
