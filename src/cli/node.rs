//! `tickcast origin` and `tickcast relay`: one node of the topology, with certificates
//! from the topology's tls dir, until Ctrl-C.

use std::io::BufRead;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tickcast::net::{Certs, Launcher, Sockets, check_certs, relay_counters};
use tickcast_origin::{IngestError, OriginHandle, synthetic};
use tickcast_proto::Clock;
use tickcast_proto::topology::Topology;
use tickcast_relay::RelayStats;
use tickcast_transport::TokioClock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::TopologyArg;
use super::harness::STOP_TIMEOUT;
use super::signal::interrupt_token;
use super::up::{feed_config, seconds};

/// How often a node logs its counters.
const COUNTERS_EVERY: Duration = Duration::from_secs(5);

/// Flags of `tickcast origin`.
#[derive(clap::Args, Debug)]
pub struct OriginArgs {
    /// The origin's name in the topology.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    topology: TopologyArg,
    /// Publish JSON lines from stdin: `{"channel":1,"payload":"..."}`.
    #[arg(long, conflicts_with = "rate")]
    stdin: bool,
    /// Run the synthetic feed at this many ticks per second (first channel).
    #[arg(long)]
    rate: Option<f64>,
    /// Synthetic payload bytes (with --rate).
    #[arg(long, value_name = "B", default_value_t = 100, requires = "rate")]
    size: usize,
    /// Stop the synthetic feed after this many seconds (the node keeps serving).
    #[arg(long, value_name = "SECS", requires = "rate")]
    duration: Option<f64>,
}

/// Flags of `tickcast relay`.
#[derive(clap::Args, Debug)]
pub struct RelayArgs {
    /// The relay's name in the topology.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    topology: TopologyArg,
}

/// A boxed future that feeds the origin (or never ends, for a serve-only node).
type Feed = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Runs `tickcast origin`.
pub async fn run_origin(a: OriginArgs) -> Result<std::process::ExitCode> {
    let topo = a.topology.load()?;
    if topo.origin_spec(&a.name).is_none() {
        bail!(
            "{:?} is not an origin of {} (origins: {:?})",
            a.name,
            a.topology.topology.display(),
            topo.origin_names()
        );
    }
    check_certs(&topo, &a.name)?;
    let certs = Certs::Dir(topo.tls_dir.clone());
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let interrupt = interrupt_token();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let launch = Launcher {
        certs: &certs,
        clock: clock.clone(),
        tasks: &tasks,
        sockets: &Sockets::Real,
    };
    let (handle, stats) = launch.origin(&topo, &a.name, &shutdown)?;
    tasks.close();
    let listen = topo.listen_addr(&a.name).expect("origin address");
    info!(node = %a.name, %listen, "origin serving");
    let feed: Feed = if a.stdin {
        Box::pin(stdin_feed(handle, interrupt.clone()))
    } else if let Some(rate) = a.rate {
        let duration = a.duration.map(|d| seconds("--duration", d)).transpose()?;
        let cfg = feed_config(&topo, rate, a.size, None, duration)?;
        let (clock, stop) = (clock.clone(), shutdown.clone());
        Box::pin(async move {
            let sent = synthetic::run(cfg, handle, clock, stop).await?;
            info!(sent, "synthetic feed ended; serving until Ctrl-C");
            Ok(())
        })
    } else {
        Box::pin(std::future::pending())
    };
    serve(&a.name, &stats, feed, &interrupt).await?;
    stop(&shutdown, &tasks).await;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs `tickcast relay`.
pub async fn run_relay(a: RelayArgs) -> Result<std::process::ExitCode> {
    let topo = a.topology.load()?;
    let Some(spec) = topo.relay(&a.name) else {
        bail!(
            "{:?} is not a relay of {} (relays: {})",
            a.name,
            a.topology.topology.display(),
            relay_names(&topo)
        );
    };
    check_certs(&topo, &a.name)?;
    let certs = Certs::Dir(topo.tls_dir.clone());
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let interrupt = interrupt_token();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let launch = Launcher {
        certs: &certs,
        clock: clock.clone(),
        tasks: &tasks,
        sockets: &Sockets::Real,
    };
    let stats = launch.relay(&topo, &a.name, &shutdown)?;
    tasks.close();
    info!(node = %a.name, listen = %spec.listen, parent = %spec.parent, "relay serving");
    serve(
        &a.name,
        &stats,
        Box::pin(std::future::pending()),
        &interrupt,
    )
    .await?;
    stop(&shutdown, &tasks).await;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The relay names of a topology, for error messages.
fn relay_names(topo: &Topology) -> String {
    topo.relays
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Drives `feed` to its end and logs the node's counters every few seconds, until
/// `interrupt`. A feed error ends the node.
async fn serve(
    name: &str,
    stats: &RelayStats,
    mut feed: Feed,
    interrupt: &CancellationToken,
) -> Result<()> {
    let mut feeding = true;
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + COUNTERS_EVERY, COUNTERS_EVERY);
    loop {
        tokio::select! {
            biased;
            _ = interrupt.cancelled() => return Ok(()),
            r = &mut feed, if feeding => {
                feeding = false;
                r?;
            }
            _ = ticker.tick() => {
                let counters = relay_counters(stats)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                info!(node = %name, "{counters}");
            }
        }
    }
}

/// Stops the node and waits (bounded) for its tasks.
async fn stop(shutdown: &CancellationToken, tasks: &TaskTracker) {
    shutdown.cancel();
    if tokio::time::timeout(STOP_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        warn!("node tasks still running {STOP_TIMEOUT:?} after shutdown");
    }
}

/// Publishes JSON lines from stdin until it ends. A bad line is reported on stderr with
/// its number and skipped. Stdin is read on a thread of its own, so a blocked read never
/// holds up the runtime's shutdown.
async fn stdin_feed(origin: OriginHandle, interrupt: CancellationToken) -> Result<()> {
    let (tx, mut rx) = mpsc::channel::<(u64, std::io::Result<String>)>(1024);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for (i, line) in std::io::stdin().lock().lines().enumerate() {
                let stop = line.is_err();
                if tx.blocking_send((i as u64 + 1, line)).is_err() || stop {
                    return;
                }
            }
        })
        .context("spawning the stdin reader")?;
    let (mut published, mut skipped) = (0u64, 0u64);
    loop {
        let (n, line) = tokio::select! {
            biased;
            _ = interrupt.cancelled() => return Ok(()),
            l = rx.recv() => match l { Some(l) => l, None => break },
        };
        let line = line.with_context(|| format!("reading stdin line {n}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let (channel, payload) = match tickcast_origin::ingest::parse_json_line(&line) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("stdin line {n}: {e}; skipped");
                skipped += 1;
                continue;
            }
        };
        match origin.publish(channel, payload).await {
            Ok(()) => published += 1,
            Err(IngestError::Closed) => bail!("the origin stopped while publishing stdin"),
            Err(e) => {
                eprintln!("stdin line {n}: {e}; skipped");
                skipped += 1;
            }
        }
    }
    info!(published, skipped, "end of stdin; serving until Ctrl-C");
    Ok(())
}
