//! A whole topology running in this process, with every consumer drained into a
//! [`Tally`]: start (retrying while the previous network's ports are still held), wait
//! until the tree is connected, run the synthetic feed, wait for the consumers to catch up,
//! stop. `up` and `bench` are both built from these steps.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::FutureExt;
use hdrhistogram::Histogram;
use tickcast::net::{Certs, NetOptions, NodeControl, start_network_with};
use tickcast::tally::Tally;
use tickcast_client::{ClientStats, Event, Subscription};
use tickcast_origin::OriginHandle;
use tickcast_origin::synthetic::{self, SyntheticConfig};
use tickcast_proto::topology::{ConsumerSpec, Topology};
use tickcast_proto::{Clock, Tick};
use tickcast_relay::RelayStats;
use tickcast_transport::TransportError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long to wait for every consumer and relay to connect.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait, after the feed ends, for consumers to account for every tick.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for node and drain tasks to finish after shutdown.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at binding the topology's fixed ports (a just-stopped network may still hold
/// them for a moment while its endpoints close).
const BIND_ATTEMPTS: u32 = 20;
/// Pause between bind attempts.
const BIND_PAUSE: Duration = Duration::from_millis(250);
/// Events taken per lock of a consumer's tally when several are already queued.
const DRAIN_BATCH: usize = 1024;

/// The time a tick's latency is measured against: the scheduled send time in a synthetic
/// payload's header, else the origin's timestamp.
pub fn latency_ref_us(t: &Tick) -> u64 {
    synthetic::decode_header(&t.payload).map_or(t.origin_us, |(at, _)| at)
}

/// An empty histogram with the same bounds as [`Tally::latency`] (so they can be added).
pub fn empty_histogram() -> Histogram<u64> {
    Tally::default().latency
}

/// One consumer under observation.
pub struct Probe {
    /// Its topology entry.
    pub spec: ConsumerSpec,
    /// What it received so far (updated by its drain task).
    pub tally: Arc<Mutex<Tally>>,
    /// The client's own counters (repairs, NACKs, connects).
    pub stats: Arc<ClientStats>,
}

impl Probe {
    /// The tally, even if a drain task panicked while holding it.
    pub fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running in-process network and the probes on its consumers.
pub struct Harness {
    /// Publishing into the origin.
    pub origin: OriginHandle,
    /// The origin's name and counters.
    pub origin_stats: (String, Arc<RelayStats>),
    /// Relay counters by name, in topology order.
    pub relays: Vec<(String, Arc<RelayStats>)>,
    /// One probe per consumer, in topology order.
    pub probes: Vec<Probe>,
    /// The clock every node and probe uses.
    pub clock: Arc<dyn Clock>,
    nodes: TaskTracker,
    drains: TaskTracker,
    shutdown: CancellationToken,
    /// Kill switches and partitions (effective when started on switchable sockets).
    pub control: NodeControl,
}

/// Whether an error is (or wraps) a failure to bind a socket.
fn is_bind_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<TransportError>(),
            Some(TransportError::Bind { .. })
        )
    })
}

impl Harness {
    /// Starts every node of `topo` with a fresh shutdown token and a drain task per
    /// consumer. Retries for a few seconds while a port is still in use.
    pub async fn start(
        topo: &Topology,
        certs: &Certs,
        clock: Arc<dyn Clock>,
        opts: &NetOptions,
    ) -> Result<Harness> {
        let mut attempt = 1;
        let (net, shutdown) = loop {
            let shutdown = CancellationToken::new();
            match start_network_with(topo, certs, clock.clone(), &shutdown, opts) {
                Ok(net) => break (net, shutdown),
                Err(e) if is_bind_error(&e) && attempt < BIND_ATTEMPTS => {
                    // Stop whatever part of this attempt did start, then try again.
                    shutdown.cancel();
                    info!(attempt, error = %format!("{e:#}"), "port still in use; retrying");
                    attempt += 1;
                    tokio::time::sleep(BIND_PAUSE).await;
                }
                Err(e) if is_bind_error(&e) => {
                    return Err(e.context(format!(
                        "starting the network: a port was still in use after {attempt} \
                         attempts (is another tickcast running?)"
                    )));
                }
                Err(e) => return Err(e.context("starting the network")),
            }
        };
        let drains = TaskTracker::new();
        let probes = net
            .consumers
            .into_iter()
            .map(|(spec, sub)| {
                let tally = Arc::new(Mutex::new(Tally::default()));
                let stats = sub.stats();
                drains.spawn(drain(sub, tally.clone(), clock.clone()));
                Probe { spec, tally, stats }
            })
            .collect();
        drains.close();
        Ok(Harness {
            origin: net.origin,
            origin_stats: (topo.origin.name.clone(), net.origin_stats),
            relays: net.relays,
            probes,
            clock,
            nodes: net.tasks,
            drains,
            shutdown,
            control: net.control,
        })
    }

    /// Waits until every consumer has connected and every relay has an upstream session,
    /// failing after `timeout` (naming what is missing) or when `interrupt` fires.
    pub async fn wait_ready(&self, timeout: Duration, interrupt: &CancellationToken) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let consumers: Vec<&str> = self
                .probes
                .iter()
                .filter(|p| p.tally().connects == 0)
                .map(|p| p.spec.name.as_str())
                .collect();
            let relays: Vec<&str> = self
                .relays
                .iter()
                .filter(|(_, s)| RelayStats::get(&s.upstream_connects) == 0)
                .map(|(n, _)| n.as_str())
                .collect();
            if consumers.is_empty() && relays.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "network not ready after {timeout:?}: {} relay(s) without an upstream \
                     session {}; {} consumer(s) not connected {}",
                    relays.len(),
                    list(&relays),
                    consumers.len(),
                    list(&consumers),
                );
            }
            tokio::select! {
                biased;
                _ = interrupt.cancelled() => bail!("interrupted while waiting for the network"),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    /// Runs the synthetic feed until it ends or `interrupt` fires, calling `every_tick`
    /// every `every` meanwhile. Returns ticks sent and how long the feed ran.
    pub async fn feed(
        &self,
        cfg: SyntheticConfig,
        interrupt: &CancellationToken,
        every: Duration,
        mut every_tick: impl FnMut(&Harness),
    ) -> Result<(u64, Duration)> {
        let stop = self.shutdown.child_token();
        let started = Instant::now();
        let mut feed = tokio::spawn(synthetic::run(
            cfg,
            self.origin.clone(),
            self.clock.clone(),
            stop.clone(),
        ));
        let mut ticker = interval(every);
        let sent = loop {
            tokio::select! {
                biased;
                _ = interrupt.cancelled(), if !stop.is_cancelled() => stop.cancel(),
                r = &mut feed => break r.context("feed task")?.context("synthetic feed")?,
                _ = ticker.tick() => every_tick(self),
            }
        };
        Ok((sent, started.elapsed()))
    }

    /// Waits until every consumer has delivered or reported lost `sent` ticks, at most
    /// `timeout`, calling `every_tick` every `every`. Returns whether every consumer caught
    /// up. Not interruptible: after a Ctrl-C stopped the feed, the ticks in flight are still
    /// counted (a second Ctrl-C exits at once).
    pub async fn drain(
        &self,
        sent: u64,
        timeout: Duration,
        every: Duration,
        mut every_tick: impl FnMut(&Harness),
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = interval(every);
        loop {
            let behind = self
                .probes
                .iter()
                .filter(|p| {
                    let t = p.tally();
                    t.delivered + t.lost < sent
                })
                .count();
            if behind == 0 {
                return true;
            }
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(behind, sent, "consumers still behind after {timeout:?}; giving up the drain");
                    return false;
                }
                _ = ticker.tick() => every_tick(self),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    /// Cancels every node, then waits (at most `bound` each) for the node tasks and the
    /// drain tasks, so the tallies are final and the ports are released.
    pub async fn stop(&self, bound: Duration) {
        self.shutdown.cancel();
        if tokio::time::timeout(bound, self.nodes.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.nodes.len(),
                "node tasks still running {bound:?} after shutdown"
            );
        }
        if tokio::time::timeout(bound, self.drains.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.drains.len(),
                "consumer drain tasks still running {bound:?} after shutdown"
            );
        }
    }

    /// Adds the latency histograms of the probes selected by `pick` into one.
    pub fn merged_latency(&self, mut pick: impl FnMut(&Probe) -> bool) -> Histogram<u64> {
        let mut all = empty_histogram();
        for p in self.probes.iter().filter(|p| pick(p)) {
            // Same bounds by construction; a failure would only drop samples.
            let _ = all.add(&p.tally().latency);
        }
        all
    }
}

/// Names for an error message: all of them up to eight, then a count.
fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = names.iter().take(8).copied().collect();
    let more = names.len().saturating_sub(shown.len());
    if more > 0 {
        format!("({}, and {more} more)", shown.join(", "))
    } else {
        format!("({})", shown.join(", "))
    }
}

/// A ticker whose first tick is one period from now (not immediately).
fn interval(every: Duration) -> tokio::time::Interval {
    let every = every.max(Duration::from_millis(10));
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

/// Feeds one consumer's events into its tally until the client stops. Takes the events
/// already queued under a single lock, so the table reader rarely contends.
async fn drain(mut sub: Subscription, tally: Arc<Mutex<Tally>>, clock: Arc<dyn Clock>) {
    while let Some(ev) = sub.recv().await {
        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
        record(&mut t, &ev, clock.as_ref());
        for _ in 0..DRAIN_BATCH {
            match sub.recv().now_or_never() {
                Some(Some(ev)) => record(&mut t, &ev, clock.as_ref()),
                Some(None) => return,
                None => break,
            }
        }
    }
}

/// Takes one event into a tally, latency measured against [`latency_ref_us`].
fn record(t: &mut Tally, ev: &Event, clock: &dyn Clock) {
    let now = match ev {
        Event::Tick(_) => clock.unix_micros(),
        _ => 0,
    };
    t.on_event(ev, now, latency_ref_us);
}
