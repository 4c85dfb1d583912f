//! Runs a scenario: the real origin, relays and clients on simulated sockets.
//!
//! Owns [`run`] / [`simulate`] and what happens during a run: building the [`Plan`], one
//! [`SimNet`], node endpoints on [`SimSocket`](crate::socket::SimSocket)s with identities
//! from a [`SimPki`], starting the origin (`tickcast_origin::Origin`) and its standby if
//! any, every relay (`tickcast_relay::Relay`) and every consumer (`tickcast_client::Client`)
//! with a [`TokioClock`], waiting until the tree is connected, driving the synthetic feed
//! (into the origin's embedded handle, or, when the origin has a standby, through a
//! `tickcast_client::Publisher` on a host of its own that fails over between the origins),
//! applying the fault timeline, and collecting what each consumer received. The node code
//! is used as is, configured by `tickcast_node::net` exactly as `tickcast up` configures
//! it. Figures are computed by [`crate::report`].
//!
//! Time: with `realtime == false` the run uses a current-thread tokio runtime with paused
//! time, so time is virtual (tokio timers have 1 ms resolution; CPU time is free) and a
//! run is a function of scenario and seed. With `realtime == true` the same code runs on a
//! multi-threaded runtime in real time over the same simulated sockets, so per-hop
//! processing cost shows up in the figures (and they are no longer repeatable).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use tickcast_client::{
    Client, ClientStats, Event, Publisher, PublisherConfig, PublisherError, Subscription,
};
use tickcast_node::tally::Tally;
use tickcast_origin::OriginHandle;
use tickcast_origin::synthetic::{self, Burst, Sink, SyntheticConfig};
use tickcast_proto::{ChannelId, Clock};
use tickcast_relay::RelayStats;
use tickcast_transport::{Identity, QuicTuning, TokioClock};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::certs::SimPki;
use crate::net::{SimNet, stable_hash};
use crate::plan::{CHANNEL, ORIGIN, ORIGIN_STANDBY, Plan, Shape};
use crate::report::{self, FeedReport, Report};
use crate::scenario::{Congestion, FaultKind, FaultSpec, Scenario};

/// Unix time (µs) the simulated clocks start at: 2026-01-01T00:00:00Z. Fixed, so reports
/// do not depend on when they were made.
pub const EPOCH_US: u64 = 1_767_225_600_000_000;

/// Longest (virtual) wait for the tree to connect before the feed starts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nodes are connecting.
    Connecting,
    /// The feed runs.
    Feeding,
    /// The feed ended; repairs are finishing.
    Draining,
}

/// Progress of a run, reported every 100 ms of run time.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// What is happening.
    pub phase: Phase,
    /// Time since the feed started (zero while connecting).
    pub elapsed: Duration,
    /// Feed duration plus drain time.
    pub total: Duration,
}

/// Receives progress reports.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to run a scenario.
#[derive(Clone)]
pub struct RunOptions {
    /// Real time on a multi-threaded runtime instead of paused virtual time.
    pub realtime: bool,
    /// Tree (the scenario's topology) or star (all consumers on the origin).
    pub shape: Shape,
    /// Called with progress every 100 ms of run time.
    pub progress: Option<ProgressFn>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            realtime: false,
            shape: Shape::Tree,
            progress: None,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("realtime", &self.realtime)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

/// Runs `scenario` with `seed` on a runtime of its own (see the module docs) and returns
/// the report. Must not be called from inside a tokio runtime.
pub fn run(scenario: &Scenario, seed: u64, opts: &RunOptions) -> Result<Report> {
    let rt = if opts.realtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()?
    };
    let report = rt.block_on(simulate(scenario, seed, opts));
    rt.shutdown_timeout(Duration::from_secs(1));
    report
}

/// One delivered tick as a consumer saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// Sequence number.
    pub seq: u64,
    /// Receive time, unix µs (simulated clock).
    pub rx_us: u64,
    /// Receive time minus the tick's scheduled send time, µs.
    pub lat_us: u64,
}

/// What one consumer's collector gathered.
#[derive(Debug)]
pub(crate) struct Collected {
    /// The in-order / exactly-once check.
    pub tally: Tally,
    /// Every new tick delivered, in delivery order.
    pub samples: Vec<Sample>,
    /// (unix µs, what): connections, failovers, losses.
    pub events: Vec<(u64, String)>,
}

/// Counters copied from a client at the end of the run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClientCounters {
    pub nack_ranges: u64,
    pub repaired: u64,
    pub duplicates: u64,
    pub connects: u64,
}

impl ClientCounters {
    fn of(s: &ClientStats) -> Self {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ClientCounters {
            nack_ranges: g(&s.nack_ranges),
            repaired: g(&s.repaired),
            duplicates: g(&s.duplicates),
            connects: g(&s.connects),
        }
    }
}

/// A fault as applied.
#[derive(Clone, Debug)]
pub(crate) struct AppliedFault {
    pub spec: FaultSpec,
    /// Whether it could be applied (a restart of a live node cannot).
    pub note: Option<String>,
}

/// Everything a run produced, for [`report::build`].
pub(crate) struct RunData {
    pub seed: u64,
    pub realtime: bool,
    pub feed: FeedReport,
    /// Unix µs (simulated clock) when the feed started.
    pub feed_start_us: u64,
    pub consumers: Vec<(Collected, ClientCounters)>,
    /// Counters of every incarnation of the origin and each relay, by name.
    pub relays: BTreeMap<String, Vec<BTreeMap<&'static str, u64>>>,
    pub origin_children: u64,
    pub faults: Vec<AppliedFault>,
    pub net: SimNet,
}

/// Starts and crashes origin and relays.
struct Nodes<'a> {
    plan: &'a Plan,
    pki: SimPki,
    net: SimNet,
    clock: Arc<dyn Clock>,
    seed: u64,
    congestion: Congestion,
    shutdown: CancellationToken,
    identities: BTreeMap<String, Identity>,
    tokens: BTreeMap<String, CancellationToken>,
    stats: BTreeMap<String, Vec<Arc<RelayStats>>>,
    incarnation: BTreeMap<String, u32>,
}

/// The transport's congestion setting for a scenario's.
fn congestion(c: Congestion) -> tickcast_transport::Congestion {
    match c {
        Congestion::Cubic => tickcast_transport::Congestion::Cubic,
        Congestion::Bbr => tickcast_transport::Congestion::Bbr,
        Congestion::NewReno => tickcast_transport::Congestion::NewReno,
    }
}

/// 32 seed bytes for quinn from a u64 (SplitMix64).
fn seed32(mut x: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

impl Nodes<'_> {
    fn identity(&mut self, name: &str) -> Result<Identity> {
        if let Some(id) = self.identities.get(name) {
            return Ok(id.clone());
        }
        let id = self.pki.identity(name)?;
        self.identities.insert(name.to_owned(), id.clone());
        Ok(id)
    }

    /// A fresh endpoint for `name` at its address (a new incarnation after a crash).
    fn endpoint(&mut self, name: &str, serve: bool) -> Result<quinn::Endpoint> {
        let id = self.identity(name)?;
        let ca = self.pki.ca();
        let tuning = QuicTuning {
            congestion: congestion(self.congestion),
            ..QuicTuning::default()
        };
        let server = if serve {
            Some(tickcast_transport::server_config(&id, &ca, &tuning)?)
        } else {
            None
        };
        let client = tickcast_transport::client_config(&id, &ca, &tuning)?;
        let inc = self.incarnation.entry(name.to_owned()).or_insert(0);
        *inc += 1;
        let rng = stable_hash(&[
            &self.seed.to_le_bytes(),
            name.as_bytes(),
            &inc.to_le_bytes(),
        ]);
        let addr = self
            .plan
            .addr_of(name)
            .with_context(|| format!("{name:?} has no address"))?;
        Ok(self.net.endpoint(addr, name, server, client, seed32(rng))?)
    }

    fn token(&mut self, name: &str) -> CancellationToken {
        let t = self.shutdown.child_token();
        self.tokens.insert(name.to_owned(), t.clone());
        t
    }

    /// Starts origin `name` (the origin, or its standby, which follows the origin and takes
    /// over if it dies); returns its embedded publishing handle.
    fn start_origin(&mut self, name: &str) -> Result<OriginHandle> {
        let topo = &self.plan.topology;
        let ep = self.endpoint(name, true)?;
        let origin = tickcast_node::net::origin_on(topo, name, ep, self.clock.clone())?;
        let handle = origin.handle();
        self.stats
            .entry(name.to_owned())
            .or_default()
            .push(origin.stats());
        let token = self.token(name);
        tokio::spawn(origin.run(token));
        Ok(handle)
    }

    fn start_relay(&mut self, name: &str) -> Result<()> {
        let topo = &self.plan.topology;
        let ep = self.endpoint(name, true)?;
        let relay = tickcast_node::net::relay_on(topo, name, ep, self.clock.clone())?;
        self.stats
            .entry(name.to_owned())
            .or_default()
            .push(relay.stats());
        let token = self.token(name);
        tokio::spawn(relay.run(token));
        Ok(())
    }

    /// Applies a fault; returns a note when it could not be applied as written.
    fn apply(&mut self, f: &FaultSpec) -> Result<Option<String>> {
        info!(fault = %f.describe(), "netsim fault");
        match f.kind {
            FaultKind::Crash => {
                let node = f.node.as_deref().expect("validated");
                if self.net.is_crashed(node) {
                    return Ok(Some(format!("{node} was already crashed")));
                }
                // Sockets first: whatever the node sends while it stops is never seen.
                self.net.crash(node);
                if let Some(t) = self.tokens.get(node) {
                    t.cancel();
                }
            }
            FaultKind::Restart => {
                let node = f.node.as_deref().expect("validated");
                if !self.net.is_crashed(node) {
                    return Ok(Some(format!("{node} was running; restart ignored")));
                }
                self.start_relay(node)?;
            }
            FaultKind::Partition => {
                let (from, to) = (f.from.as_deref(), f.to.as_deref());
                self.net
                    .partition(from.expect("validated"), to.expect("validated"), f.oneway);
            }
            FaultKind::Heal => match (f.from.as_deref(), f.to.as_deref()) {
                (Some(from), Some(to)) => self.net.heal(from, to, f.oneway),
                _ => self.net.heal_all(),
            },
        }
        Ok(None)
    }
}

/// The synthetic feed's way into a QUIC publisher; counts what it was handed.
struct PublisherSink {
    publisher: Publisher,
    handed: u64,
}

impl Sink for PublisherSink {
    type Error = PublisherError;

    fn publish(
        &mut self,
        channel: ChannelId,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), PublisherError>> + Send {
        self.handed += 1;
        async move { self.publisher.publish(channel, payload).await.map(|_| ()) }
    }
}

/// Runs the feed through publisher `name` until it ends, then waits (until `flush_until`)
/// for the origins to acknowledge what is still outstanding; the publisher resends it to
/// whichever origin now numbers.
async fn publish_feed(
    cfg: SyntheticConfig,
    name: String,
    mut sink: PublisherSink,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    flush_until: Instant,
) -> FeedReport {
    let mut error = synthetic::run_into(cfg, &mut sink, clock, shutdown)
        .await
        .err()
        .map(|e| e.to_string());
    if error.is_none() {
        match tokio::time::timeout_at(flush_until, sink.publisher.flush()).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(e)) => error = Some(format!("flush: {e}")),
        }
    }
    FeedReport {
        sent: sink.handed,
        publisher: Some(name),
        unacked: sink.publisher.unacked() as u64,
        error,
    }
}

/// Reads one consumer's events until its client stops.
async fn collect(
    mut sub: Subscription,
    clock: Arc<dyn Clock>,
    connected: Arc<AtomicUsize>,
) -> Collected {
    let mut c = Collected {
        tally: Tally::default(),
        samples: Vec::new(),
        events: Vec::new(),
    };
    let mut was_connected = false;
    while let Some(ev) = sub.recv().await {
        let now = clock.unix_micros();
        let sched = |t: &tickcast_proto::Tick| {
            synthetic::decode_header(&t.payload).map_or(t.origin_us, |(at, _)| at)
        };
        match &ev {
            Event::Tick(t) => {
                let dup = c.tally.next.get(&t.channel).is_some_and(|n| t.seq < *n);
                if !dup {
                    c.samples.push(Sample {
                        seq: t.seq,
                        rx_us: now,
                        lat_us: now.saturating_sub(sched(t)),
                    });
                }
            }
            Event::Connected { upstream } => {
                if !was_connected {
                    was_connected = true;
                    connected.fetch_add(1, Ordering::SeqCst);
                }
                c.events.push((now, format!("connected to {upstream}")));
            }
            Event::Disconnected { upstream, reason } => {
                c.events.push((now, format!("left {upstream}: {reason}")));
            }
            Event::Lost { range, .. } => {
                c.events
                    .push((now, format!("lost seqs {}..={}", range.first, range.last)));
            }
        }
        c.tally.on_event(&ev, now, sched);
    }
    c
}

/// Runs `scenario` inside the current tokio runtime (paused for virtual time, or not).
pub async fn simulate(scenario: &Scenario, seed: u64, opts: &RunOptions) -> Result<Report> {
    let plan = Plan::new(scenario, opts.shape)?;
    let net = SimNet::new(seed, Arc::new(plan.links.clone()));
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(EPOCH_US));
    let shutdown = CancellationToken::new();
    let mut nodes = Nodes {
        plan: &plan,
        pki: SimPki::generate()?,
        net: net.clone(),
        clock: clock.clone(),
        seed,
        congestion: scenario.settings.congestion,
        shutdown: shutdown.clone(),
        identities: BTreeMap::new(),
        tokens: BTreeMap::new(),
        stats: BTreeMap::new(),
        incarnation: BTreeMap::new(),
    };
    let origin = nodes.start_origin(ORIGIN)?;
    if plan.topology.origin_standby.is_some() {
        nodes.start_origin(ORIGIN_STANDBY)?;
    }
    for r in &plan.topology.relays {
        nodes.start_relay(&r.name)?;
    }
    let connected = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for spec in &plan.topology.consumers {
        let ep = nodes.endpoint(&spec.name, false)?;
        let cfg = tickcast_node::net::consumer_config(&plan.topology, spec)?;
        let (client, sub) = Client::new(cfg, ep, clock.clone());
        let stats = sub.stats();
        tokio::spawn(client.run(shutdown.child_token()));
        let task = tokio::spawn(collect(sub, clock.clone(), connected.clone()));
        consumers.push((stats, task));
    }

    // Wait until every relay has an upstream session and every consumer is subscribed.
    let total = Duration::from_secs_f64(scenario.duration_s + scenario.drain_s);
    let progress = |phase, elapsed| {
        if let Some(p) = &opts.progress {
            p(&Progress {
                phase,
                elapsed,
                total,
            });
        }
    };
    let t0 = Instant::now();
    loop {
        let relays_up = nodes.stats.iter().all(|(name, s)| {
            name == ORIGIN
                || s.iter()
                    .any(|s| s.upstream_connects.load(Ordering::Relaxed) > 0)
        });
        if relays_up && connected.load(Ordering::SeqCst) == consumers.len() {
            break;
        }
        if t0.elapsed() > READY_TIMEOUT {
            let waiting: Vec<&str> = nodes
                .stats
                .iter()
                .filter(|(n, s)| {
                    n.as_str() != ORIGIN
                        && s.iter()
                            .all(|s| s.upstream_connects.load(Ordering::Relaxed) == 0)
                })
                .map(|(n, _)| n.as_str())
                .collect();
            bail!(
                "the network did not connect within {READY_TIMEOUT:?}: relays without upstream {waiting:?}, {} of {} consumers subscribed",
                connected.load(Ordering::SeqCst),
                consumers.len()
            );
        }
        progress(Phase::Connecting, Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // With an origin standby the feed enters through a publisher that cycles between the
    // origins, as a real feed handler would; connected before the feed starts.
    let publisher = match &plan.publisher {
        None => None,
        Some(name) => {
            let ep = nodes.endpoint(name, false)?;
            let topo = &plan.topology;
            let origins = tickcast_node::net::upstreams(topo, &topo.origin_names())?;
            // The publisher sits beside the origin: it gives up on a silent origin after the
            // topology's dead interval, like every other link (the 500 ms default suits a
            // publisher across a WAN). It then reaches the standby right at its takeover.
            let mut pcfg = PublisherConfig::new(name.clone(), origins);
            pcfg.ack_timeout = topo.settings.heartbeat * topo.settings.dead_after;
            let p = Publisher::connect(pcfg, ep)
                .await
                .with_context(|| format!("publisher {name:?} could not connect"))?;
            Some((name.clone(), p))
        }
    };

    // The feed.
    let feed_start = Instant::now();
    let feed_start_us = clock.unix_micros();
    let duration = Duration::from_secs_f64(scenario.duration_s);
    let feed_cfg = SyntheticConfig {
        channel: CHANNEL,
        rate: scenario.feed.rate,
        payload_size: scenario.feed.payload_bytes,
        burst: scenario.feed.burst.as_ref().map(|b| Burst {
            every: Duration::from_millis(b.every_ms),
            count: b.count,
        }),
        duration: Some(duration),
    };
    let end = feed_start + total;
    let feed = match publisher {
        Some((name, publisher)) => tokio::spawn(publish_feed(
            feed_cfg,
            name,
            PublisherSink {
                publisher,
                handed: 0,
            },
            clock.clone(),
            shutdown.child_token(),
            end,
        )),
        None => {
            let sent = synthetic::run(feed_cfg, origin, clock.clone(), shutdown.child_token());
            tokio::spawn(async move {
                let (sent, error) = match sent.await {
                    Ok(n) => (n, None),
                    Err(e) => (0, Some(e.to_string())),
                };
                FeedReport {
                    sent,
                    publisher: None,
                    unacked: 0,
                    error,
                }
            })
        }
    };

    // Faults and progress, until the feed has ended and the drain time has passed.
    let mut applied = Vec::new();
    let mut next_fault = 0;
    let mut next_progress = feed_start;
    loop {
        let now = Instant::now();
        while next_fault < plan.faults.len()
            && feed_start + Duration::from_millis(plan.faults[next_fault].at_ms) <= now
        {
            let f = &plan.faults[next_fault];
            let note = nodes.apply(f)?;
            applied.push(AppliedFault {
                spec: f.clone(),
                note,
            });
            next_fault += 1;
        }
        if now >= next_progress {
            let elapsed = now - feed_start;
            let phase = if elapsed < duration {
                Phase::Feeding
            } else {
                Phase::Draining
            };
            progress(phase, elapsed.min(total));
            next_progress += Duration::from_millis(100);
        }
        if now >= end {
            break;
        }
        let mut wake = end.min(next_progress);
        if let Some(f) = plan.faults.get(next_fault) {
            wake = wake.min(feed_start + Duration::from_millis(f.at_ms));
        }
        sleep_until(wake).await;
    }
    let feed = feed.await.context("the feed task failed")?;
    if feed.publisher.is_none()
        && let Some(e) = &feed.error
    {
        // The embedded handle only fails if the origin stopped, which no fault may cause.
        bail!("the feed failed: {e}");
    }

    // Counters before shutdown (shutdown closes connections). The origin serving at the
    // end: the primary, or the standby that took over from it.
    let serving = [ORIGIN, ORIGIN_STANDBY]
        .into_iter()
        .find(|n| nodes.stats.contains_key(*n) && !net.is_crashed(n))
        .unwrap_or(ORIGIN);
    let origin_children = nodes.stats[serving]
        .last()
        .map_or(0, |s| s.children.load(Ordering::Relaxed));
    let mut relays = BTreeMap::new();
    for (name, incarnations) in &nodes.stats {
        let counters: Vec<_> = incarnations
            .iter()
            .map(|s| tickcast_node::net::relay_counters(s))
            .collect();
        relays.insert(name.clone(), counters);
    }
    let client_counters: Vec<ClientCounters> = consumers
        .iter()
        .map(|(s, _)| ClientCounters::of(s))
        .collect();
    shutdown.cancel();
    let mut collected = Vec::new();
    for ((_, task), counters) in consumers.into_iter().zip(client_counters) {
        let c = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .context("a consumer did not stop within 30 s of shutdown")?
            .context("a consumer collector failed")?;
        collected.push((c, counters));
    }
    net.close();
    let data = RunData {
        seed,
        realtime: opts.realtime,
        feed,
        feed_start_us,
        consumers: collected,
        relays,
        origin_children,
        faults: applied,
        net,
    };
    Ok(report::build(scenario, &plan, data))
}
