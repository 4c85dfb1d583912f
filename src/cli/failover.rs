//! `tickcast failover`: the failover benchmark (a measurement, not a timed test). Each run
//! starts a small dedicated network on switchable sockets —
//! `origin → t1 (standby t1-b) → t2 (standby t2-b) → consumers listing [t2, t2-b]` — feeds
//! it at a steady rate, kills one node the way `kill -9` would (its socket falls silent,
//! no goodbye, then its tasks stop) and records what every consumer saw:
//!
//! * the **stall**: from the kill to the delivery of the first tick *scheduled at or
//!   after the kill*. Such a tick is published after the victim fell silent, so it can only
//!   have come through the new path; consumers deliver in order, so it also waits for every
//!   tick that was in flight through the dead node. Ticks already on their way when the
//!   kill happened (delivered a few µs later) do not count as "recovered". The figure
//!   includes the ordinary latency of that first tick (a fraction of a millisecond when
//!   the machine keeps up; as much as the backlog when it does not);
//! * the **gap**: the longest pause between two deliveries to one consumer, the later one
//!   after the kill (insensitive to a backlog: it is the outage as the consumer lives it);
//! * ticks **lost** (reported `Lost`), **undelivered** (neither delivered nor reported
//!   lost once the feed ended and `--drain` seconds passed) and **duplicated** (a seq
//!   delivered twice); all must be 0;
//! * **false failovers**: a consumer dropping an upstream that was not killed (or before
//!   the kill) — a liveness false positive;
//! * the latency (receive time minus scheduled time) of the ticks scheduled in the
//!   [`WINDOW`] before the kill and in the [`WINDOW`] after it, from the same runs.
//!
//! Kinds: `relay` kills `t2` (consumers fail over to `t2-b`), `parent` kills `t1` (`t2`
//! and `t2-b` fail over to `t1-b`), `dual` kills `t2` under dual-feed consumers (subscribed
//! to `t2` and `t2-b` at once). Every run uses fresh free ports on 127.0.0.1, so a network
//! still closing (a relay waits up to 2 s for its connections to close) never collides
//! with the next one; it finishes closing in the background while the next run starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hdrhistogram::Histogram;
use serde::Serialize;
use tickcast::net::{
    Certs, NetOptions, Network, Sockets, feeds_of, relay_counters, start_network_with,
};
use tickcast::tally::{Latency, Tally};
use tickcast_client::{ClientStats, Event, Subscription};
use tickcast_origin::synthetic;
use tickcast_proto::Clock;
use tickcast_proto::topology::{Settings, Topology};
use tickcast_relay::RelayStats;
use tickcast_transport::{TokioClock, TransportError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::harness::{READY_TIMEOUT, STOP_TIMEOUT, empty_histogram, latency_ref_us};
use super::report;
use super::signal::interrupt_token;
use super::up::{feed_config, seconds};

/// The origin of the benchmark network.
const ORIGIN: &str = "origin";
/// Tier-1 relay (under the origin), victim of `parent`.
const T1: &str = "t1";
/// Standby of [`T1`].
const T1_B: &str = "t1-b";
/// Tier-2 relay (the consumers' first choice), victim of `relay` and `dual`.
const T2: &str = "t2";
/// Standby of [`T2`].
const T2_B: &str = "t2-b";
/// Heartbeat interval of the benchmark network (the default).
const HEARTBEAT_MS: u64 = Settings::DEFAULT_HEARTBEAT.as_millis() as u64;
/// Missed heartbeats before a peer is dead (the default).
const DEAD_AFTER: u32 = Settings::DEFAULT_DEAD_AFTER;

/// Latency is compared between ticks scheduled this long before the kill and this long
/// after it.
pub const WINDOW: Duration = Duration::from_millis(500);
/// Per-tick samples are kept for ticks scheduled from this long before the planned kill...
const RECORD_BEFORE: Duration = Duration::from_millis(1000);
/// ...to this long after it (bounded memory whatever the feed's length).
const RECORD_AFTER: Duration = Duration::from_millis(2000);
/// Most per-tick samples kept per consumer and run.
const MAX_SAMPLES: usize = 1 << 22;
/// Attempts at starting a run's network (fresh ports each time) when a bind fails.
const BIND_ATTEMPTS: u32 = 10;
/// Pause between such attempts.
const BIND_PAUSE: Duration = Duration::from_millis(100);
/// How long past its planned end the feed may run before the run is abandoned.
const FEED_SLACK: Duration = Duration::from_secs(10);
/// How often relay counters are polled after the kill (to time their reconnects).
const WATCH_EVERY: Duration = Duration::from_millis(2);
/// Networks of earlier runs allowed to be still closing when a run starts; beyond that
/// the oldest is waited for (at most [`STOP_TIMEOUT`]).
const MAX_CLOSING: usize = 3;
/// Events of the slowest consumer shown in a run's line (all of them go to the JSON).
const SHOWN_EVENTS: usize = 12;
/// Failed runs (errors, not losses) after which the benchmark gives up.
const MAX_ERRORS: u32 = 3;
/// The goal for the p99 stall with default settings, ms.
const STALL_GOAL_MS: f64 = 150.0;
/// The goal for dual feed: p99 latency after the kill within this of before, µs.
const DUAL_GOAL_US: u64 = 1000;
/// p99 latency before the kill above which a dual-feed run measures a saturated machine.
const SATURATED_US: u64 = 100_000;

/// What a run kills.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The consumers' relay `t2`: consumers fail over to its standby `t2-b`.
    Relay,
    /// The relay's parent `t1`: `t2` and `t2-b` fail over to `t1-b`.
    Parent,
    /// `t2` under dual-feed consumers, subscribed to `t2` and `t2-b` at once.
    Dual,
}

impl Kind {
    /// The name used on the command line and in tables.
    fn name(self) -> &'static str {
        match self {
            Kind::Relay => "relay",
            Kind::Parent => "parent",
            Kind::Dual => "dual",
        }
    }

    /// The node a run of this kind kills.
    fn victim(self) -> &'static str {
        match self {
            Kind::Relay | Kind::Dual => T2,
            Kind::Parent => T1,
        }
    }

    /// Whether the consumers subscribe through both of their relays at once.
    fn dual_feed(self) -> bool {
        self == Kind::Dual
    }
}

/// Flags of `tickcast failover`.
#[derive(clap::Args, Debug)]
pub struct FailoverArgs {
    /// Kills per kind (each on a fresh network).
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// Feed rate, ticks per second.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Kinds of kill: `relay` (t2 dies, consumers move to t2-b), `parent` (t1 dies, t2
    /// moves to t1-b), `dual` (t2 dies under dual-feed consumers).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "relay,parent,dual",
        value_name = "KIND,.."
    )]
    kinds: Vec<Kind>,
    /// Consumers under t2 / t2-b.
    #[arg(long, default_value_t = 40)]
    consumers: usize,
    /// Seconds of feed per run.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Seconds into the feed at which the victim is killed (late enough that the latency
    /// before it is steady state, not start-up).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    kill_at: f64,
    /// Seconds to wait after the feed for every consumer to account for every tick; what
    /// is still missing then counts as undelivered.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    drain: f64,
    /// Payload bytes per tick (at least 16: the synthetic header).
    #[arg(long, value_name = "B", default_value_t = 100)]
    size: usize,
    /// Write the results (per kind and per run) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// The checked settings of one benchmark.
struct Plan {
    /// Feed rate, ticks per second.
    rate: f64,
    /// Payload bytes per tick.
    size: usize,
    /// Consumers in the network.
    consumers: usize,
    /// Feed length per run.
    feed: Duration,
    /// When the victim is killed, after the feed starts.
    kill_at: Duration,
    /// How long consumers may take to catch up after the feed.
    drain: Duration,
}

/// Runs `tickcast failover`. Exit status 1 if any tick was lost, left undelivered,
/// duplicated or reordered (or a consumer never resumed), else 2 if a run failed with an
/// error, else 0.
pub async fn run(a: FailoverArgs) -> Result<ExitCode> {
    ensure!(a.kills >= 1, "--kills must be at least 1");
    ensure!(
        (1..=999).contains(&a.consumers),
        "--consumers must be between 1 and 999, not {}",
        a.consumers
    );
    let feed = seconds("--seconds", a.seconds)?;
    let kill_at = seconds("--kill-at", a.kill_at)?;
    ensure!(
        kill_at >= WINDOW,
        "--kill-at must be at least {WINDOW:?} (the latency window before the kill)"
    );
    ensure!(
        feed >= kill_at + Duration::from_secs(1),
        "--seconds must leave at least 1 s of feed after --kill-at"
    );
    let mut kinds = Vec::new();
    for k in &a.kinds {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    ensure!(!kinds.is_empty(), "--kinds needs at least one kind");
    // Checks rate and size once (the channel is the same in every run).
    feed_config(
        &topology(Kind::Relay, 1, &[1, 2, 3, 4, 5])?,
        a.rate,
        a.size,
        None,
        Some(feed),
    )?;
    let plan = Plan {
        rate: a.rate,
        size: a.size,
        consumers: a.consumers,
        feed,
        kill_at,
        drain: seconds("--drain", a.drain)?,
    };
    let interrupt = interrupt_token();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let certs = Certs::ephemeral()?;
    let started = Instant::now();
    eprintln!(
        "failover: {} kill(s) of each of {} at {} ticks/s, {} consumers, {feed:?} of feed \
         per run, kill at {kill_at:?}",
        a.kills,
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        a.rate,
        a.consumers,
    );

    let mut closing = Vec::new();
    let mut aggs = Vec::new();
    let mut runs = Vec::new();
    let mut errors = 0u32;
    for &kind in &kinds {
        let mut agg = KindAgg::new(kind);
        for i in 1..=a.kills {
            if interrupt.is_cancelled() || errors >= MAX_ERRORS {
                break;
            }
            let label = format!("{} kill {i}/{}", kind.name(), a.kills);
            match run_once(kind, i, &plan, &certs, &clock, &interrupt, &mut closing).await {
                Ok(out) => {
                    eprintln!("failover: {label}: {}", out.record.line());
                    agg.add(&out);
                    runs.push(out.record);
                }
                Err(_) if interrupt.is_cancelled() => break,
                Err(e) => {
                    let e = format!("{e:#}");
                    eprintln!("failover: {label}: error: {e}");
                    errors += 1;
                    agg.errors += 1;
                    runs.push(RunRecord::failed(kind, i, e));
                }
            }
        }
        aggs.push(agg);
        if interrupt.is_cancelled() {
            eprintln!("failover: interrupted; reporting the runs measured so far");
            break;
        }
        if errors >= MAX_ERRORS {
            eprintln!("failover: {errors} runs failed; giving up");
            break;
        }
    }
    for (label, tasks) in closing {
        wait_closed(&label, &tasks).await;
    }
    let summaries: Vec<KindSummary> = aggs.iter().map(KindAgg::summary).collect();
    print!("{}", markdown(&summaries, &plan));
    eprintln!(
        "failover: {} run(s) in {:.0} s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &a.json {
        report::write_json(
            path,
            &FailoverJson {
                rate: plan.rate,
                size: plan.size,
                consumers: plan.consumers,
                seconds: a.seconds,
                kill_at_s: a.kill_at,
                drain_s: a.drain,
                heartbeat_ms: HEARTBEAT_MS,
                dead_after: DEAD_AFTER,
                window_ms: WINDOW.as_millis() as u64,
                kinds: &summaries,
                runs: &runs,
            },
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(if summaries.iter().any(|s| !s.clean()) {
        ExitCode::FAILURE
    } else if errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The benchmark topology as TOML, listening on `ports` (origin, t1, t1-b, t2, t2-b).
fn topology_text(kind: Kind, consumers: usize, ports: &[u16; 5]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[settings]\nheartbeat_ms = {HEARTBEAT_MS}\ndead_after = {DEAD_AFTER}\n\n\
         [[channel]]\nid = 1\nname = \"failover\"\n\n\
         [origin]\nname = \"{ORIGIN}\"\nregion = \"local\"\nlisten = \"127.0.0.1:{}\"",
        ports[0]
    );
    let relays = [
        (T1, ports[1], ORIGIN, Some(T1_B)),
        (T1_B, ports[2], ORIGIN, None),
        (T2, ports[3], T1, Some(T2_B)),
        (T2_B, ports[4], T1, None),
    ];
    for (name, port, parent, standby) in relays {
        let _ = writeln!(
            s,
            "\n[[relay]]\nname = \"{name}\"\nregion = \"local\"\n\
             listen = \"127.0.0.1:{port}\"\nparent = \"{parent}\""
        );
        if let Some(standby) = standby {
            let _ = writeln!(s, "standby = \"{standby}\"");
        }
    }
    for i in 1..=consumers {
        let _ = writeln!(
            s,
            "\n[[consumer]]\nname = \"c-{i:02}\"\nregion = \"local\"\n\
             relays = [\"{T2}\", \"{T2_B}\"]\ndual_feed = {}",
            kind.dual_feed()
        );
    }
    s
}

/// The benchmark topology, validated.
fn topology(kind: Kind, consumers: usize, ports: &[u16; 5]) -> Result<Topology> {
    Topology::from_toml_str(&topology_text(kind, consumers, ports))
        .context("building the failover topology")
}

/// Five UDP ports on 127.0.0.1 that were free a moment ago (all bound at once, so they
/// differ, then released).
fn free_ports() -> Result<[u16; 5]> {
    let socks = (0..5)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free UDP ports on 127.0.0.1")?;
    let mut ports = [0u16; 5];
    for (p, s) in ports.iter_mut().zip(&socks) {
        *p = s.local_addr()?.port();
    }
    Ok(ports)
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

/// Starts a fresh benchmark network on switchable sockets, retrying on other free ports
/// when a bind fails (another process took a port between probing and binding).
async fn start(
    kind: Kind,
    consumers: usize,
    certs: &Certs,
    clock: &Arc<dyn Clock>,
) -> Result<(Topology, Network, CancellationToken)> {
    let mut attempt = 1;
    loop {
        let topo = topology(kind, consumers, &free_ports()?)?;
        let shutdown = CancellationToken::new();
        let opts = NetOptions {
            sockets: Sockets::switchable(),
            ..Default::default()
        };
        match start_network_with(&topo, certs, clock.clone(), &shutdown, &opts) {
            Ok(net) => return Ok((topo, net, shutdown)),
            Err(e) if is_bind_error(&e) && attempt < BIND_ATTEMPTS => {
                shutdown.cancel();
                attempt += 1;
                tokio::time::sleep(BIND_PAUSE).await;
            }
            Err(e) => {
                shutdown.cancel();
                return Err(e.context(format!("starting the network (attempt {attempt})")));
            }
        }
    }
}

/// Waits (at most [`STOP_TIMEOUT`]) for the node tasks of a cancelled network.
async fn wait_closed(label: &str, tasks: &TaskTracker) {
    if tokio::time::timeout(STOP_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        eprintln!(
            "failover: warning: {label}: {} node task(s) still running {STOP_TIMEOUT:?} \
             after shutdown",
            tasks.len()
        );
    }
}

/// Instants of one run shared with the consumer watchers, in the clock's unix µs
/// (0: not known yet).
#[derive(Default)]
struct Marks {
    /// Per-tick samples are kept for ticks scheduled from here...
    from: AtomicU64,
    /// ...to here (exclusive).
    to: AtomicU64,
    /// The kill (taken just after the victim fell silent).
    kill: AtomicU64,
}

/// What one consumer saw during a run.
struct Trace {
    /// Consumer name.
    name: String,
    /// Delivery verdict (lost, duplicates, order).
    tally: Tally,
    /// Receive time of the last delivery.
    last_us: Option<u64>,
    /// Largest gap between two deliveries over the whole run, µs.
    max_gap_us: u64,
    /// Largest gap between two deliveries, the later one after the kill, µs.
    kill_gap_us: u64,
    /// Receive time of the first tick scheduled at or after the kill.
    resumed_us: Option<u64>,
    /// Ticks scheduled inside the recording window: (scheduled, received) in µs from
    /// `samples_from`.
    samples: Vec<(u32, u32)>,
    /// The start of the recording window, unix µs.
    samples_from: u64,
    /// Non-tick events with their receive time.
    events: Vec<(u64, Event)>,
}

impl Trace {
    /// An empty trace expecting about `capacity` samples.
    fn new(name: String, capacity: usize) -> Trace {
        Trace {
            name,
            tally: Tally::default(),
            last_us: None,
            max_gap_us: 0,
            kill_gap_us: 0,
            resumed_us: None,
            samples: Vec::with_capacity(capacity.min(MAX_SAMPLES)),
            samples_from: 0,
            events: Vec::new(),
        }
    }

    /// Takes one event received at `now` (unix µs).
    fn take(&mut self, ev: Event, now: u64, marks: &Marks) {
        let duplicates = self.tally.duplicates;
        self.tally.on_event(&ev, now, latency_ref_us);
        let Event::Tick(t) = &ev else {
            self.events.push((now, ev));
            return;
        };
        if self.tally.duplicates != duplicates {
            return; // a seq delivered again: not a delivery
        }
        let kill = marks.kill.load(Ordering::Acquire);
        if let Some(last) = self.last_us {
            let gap = now.saturating_sub(last);
            self.max_gap_us = self.max_gap_us.max(gap);
            if kill != 0 && now >= kill {
                self.kill_gap_us = self.kill_gap_us.max(gap);
            }
        }
        self.last_us = Some(now);
        let at = latency_ref_us(t);
        if kill != 0 && at >= kill && self.resumed_us.is_none() {
            self.resumed_us = Some(now);
        }
        let from = marks.from.load(Ordering::Acquire);
        let to = marks.to.load(Ordering::Acquire);
        if from != 0 && (from..to).contains(&at) && self.samples.len() < MAX_SAMPLES {
            self.samples_from = from;
            let rel = |x: u64| u32::try_from(x.saturating_sub(from)).unwrap_or(u32::MAX);
            self.samples.push((rel(at), rel(now)));
        }
    }

    /// Ticks accounted for: delivered once or reported lost.
    fn accounted(&self) -> u64 {
        self.tally.delivered + self.tally.lost
    }

    /// Upstreams dropped that were not killed, or dropped before the kill.
    fn false_failovers(&self, victim: &str, kill_us: u64) -> u64 {
        self.events
            .iter()
            .filter(|(at, e)| {
                matches!(e, Event::Disconnected { upstream, .. }
                    if upstream != victim || *at < kill_us)
            })
            .count() as u64
    }
}

/// An event as `±ms after the kill: what`, for the slow-consumer report.
fn describe(at: u64, kill_us: u64, e: &Event) -> String {
    let when = (at as f64 - kill_us as f64) / 1000.0;
    let what = match e {
        Event::Tick(t) => format!("tick {}", t.seq),
        Event::Lost { channel, range } => format!(
            "lost channel {channel} seqs {}..={} ({})",
            range.first,
            range.last,
            range.len()
        ),
        Event::Connected { upstream } => format!("connected to {upstream}"),
        Event::Disconnected { upstream, reason } => {
            format!("dropped {upstream} ({reason})")
        }
    };
    format!("{when:+.1} ms {what}")
}

/// Drains one consumer's subscription into a [`Trace`] until the client stops, keeping
/// `progress` at the ticks accounted for.
async fn watch_consumer(
    mut sub: Subscription,
    mut trace: Trace,
    clock: Arc<dyn Clock>,
    marks: Arc<Marks>,
    progress: Arc<AtomicU64>,
) -> Trace {
    while let Some(ev) = sub.recv().await {
        let counts = matches!(ev, Event::Tick(_) | Event::Lost { .. });
        trace.take(ev, clock.unix_micros(), &marks);
        if counts {
            progress.store(trace.accounted(), Ordering::Release);
        }
    }
    trace
}

/// Polls the relays' upstream session counters from the kill until `stop`, returning for
/// each relay that started a new upstream session how long after the kill it did, µs.
async fn watch_relays(
    relays: Vec<(String, Arc<RelayStats>)>,
    clock: Arc<dyn Clock>,
    kill_us: u64,
    stop: CancellationToken,
) -> BTreeMap<String, u64> {
    let base: Vec<u64> = relays
        .iter()
        .map(|(_, s)| RelayStats::get(&s.upstream_connects))
        .collect();
    let mut seen = BTreeMap::new();
    loop {
        for ((name, s), b) in relays.iter().zip(&base) {
            if !seen.contains_key(name) && RelayStats::get(&s.upstream_connects) > *b {
                seen.insert(name.clone(), clock.unix_micros().saturating_sub(kill_us));
            }
        }
        if seen.len() == relays.len() {
            return seen;
        }
        tokio::select! {
            _ = stop.cancelled() => return seen,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}

/// A consumer under observation during a run.
struct Watched {
    /// Ticks it has accounted for so far.
    progress: Arc<AtomicU64>,
    /// Its client's counters (sessions started).
    stats: Arc<ClientStats>,
    /// Its name.
    name: String,
    /// Its watcher task.
    task: JoinHandle<Trace>,
}

/// What the feed phase of a run established.
struct Fed {
    /// Ticks the origin sent.
    sent: u64,
    /// The kill, unix µs.
    kill_us: u64,
    /// The kill, after the feed started.
    kill_after: Duration,
    /// Whether every consumer accounted for every tick before the drain timeout.
    drained: bool,
    /// Relays that started a new upstream session after the kill, and when (µs after).
    reconnects: BTreeMap<String, u64>,
    /// Every relay's counters once the consumers drained.
    relays: BTreeMap<String, BTreeMap<&'static str, u64>>,
}

/// One run: start, wait until connected, feed, kill, drain, stop; then the measurements.
/// The network's node tasks are left closing in the background (in `closing`).
async fn run_once(
    kind: Kind,
    index: u32,
    plan: &Plan,
    certs: &Certs,
    clock: &Arc<dyn Clock>,
    interrupt: &CancellationToken,
    closing: &mut Vec<(String, TaskTracker)>,
) -> Result<RunOutcome> {
    closing.retain(|(_, t)| !t.is_empty());
    while closing.len() >= MAX_CLOSING {
        let (label, tasks) = closing.remove(0);
        wait_closed(&label, &tasks).await;
    }
    let (topo, mut net, shutdown) = start(kind, plan.consumers, certs, clock).await?;
    closing.push((format!("{} kill {index}", kind.name()), net.tasks.clone()));
    let marks = Arc::new(Marks::default());
    let capacity = ((RECORD_BEFORE + RECORD_AFTER).as_secs_f64() * plan.rate * 1.05) as usize;
    let watched: Vec<Watched> = std::mem::take(&mut net.consumers)
        .into_iter()
        .map(|(spec, sub)| {
            let progress = Arc::new(AtomicU64::new(0));
            let stats = sub.stats();
            let task = tokio::spawn(watch_consumer(
                sub,
                Trace::new(spec.name.clone(), capacity),
                clock.clone(),
                marks.clone(),
                progress.clone(),
            ));
            Watched {
                progress,
                stats,
                name: spec.name,
                task,
            }
        })
        .collect();
    let fed = feed_and_kill(kind, plan, &topo, &net, &watched, &marks, clock, interrupt).await;
    // Stop everything, whatever happened. The consumers stop at once (so the traces are
    // final); relays may take a while to close their connections: not waited for here.
    shutdown.cancel();
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    let mut problems = Vec::new();
    let mut traces = Vec::new();
    for w in watched {
        let abort = w.task.abort_handle();
        match tokio::time::timeout_at(deadline, w.task).await {
            Ok(Ok(t)) => traces.push(t),
            Ok(Err(e)) => problems.push(format!("watcher of {} failed: {e}", w.name)),
            Err(_) => {
                abort.abort();
                problems.push(format!(
                    "watcher of {} still running {STOP_TIMEOUT:?} after shutdown",
                    w.name
                ));
            }
        }
    }
    let fed = fed?;
    if !problems.is_empty() {
        bail!("stopping the network: {}", problems.join("; "));
    }
    Ok(measure(kind, index, &fed, traces))
}

/// Waits until every relay feed and consumer feed has a session, feeds at the planned
/// rate, kills the victim at the planned instant, and waits for the consumers to account
/// for every tick.
#[allow(clippy::too_many_arguments)] // one call site; the pieces of a run.
async fn feed_and_kill(
    kind: Kind,
    plan: &Plan,
    topo: &Topology,
    net: &Network,
    watched: &[Watched],
    marks: &Marks,
    clock: &Arc<dyn Clock>,
    interrupt: &CancellationToken,
) -> Result<Fed> {
    wait_ready(kind, topo, net, watched, interrupt).await?;
    let cfg = feed_config(topo, plan.rate, plan.size, None, Some(plan.feed))?;
    let planned_kill = clock.unix_micros() + plan.kill_at.as_micros() as u64;
    marks.from.store(
        planned_kill.saturating_sub(RECORD_BEFORE.as_micros() as u64),
        Ordering::Release,
    );
    marks.to.store(
        planned_kill + RECORD_AFTER.as_micros() as u64,
        Ordering::Release,
    );
    let stop_feed = CancellationToken::new();
    let _stop_feed = stop_feed.clone().drop_guard();
    let started = tokio::time::Instant::now();
    let mut feed = tokio::spawn(synthetic::run(
        cfg,
        net.origin.clone(),
        clock.clone(),
        stop_feed.clone(),
    ));
    tokio::select! {
        biased;
        _ = interrupt.cancelled() => bail!("interrupted"),
        r = &mut feed => bail!(
            "the feed ended before the kill: {}",
            match r {
                Ok(Ok(n)) => format!("{n} ticks sent"),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            }
        ),
        _ = tokio::time::sleep_until(started + plan.kill_at) => {}
    }
    let victim = kind.victim();
    net.control.kill(victim)?;
    // Taken after the victim fell silent: a tick scheduled from here on is published
    // later still, so it cannot have gone through the victim.
    let kill_us = clock.unix_micros();
    marks.kill.store(kill_us, Ordering::Release);
    let kill_after = started.elapsed();
    let stop_watch = CancellationToken::new();
    let _stop_watch = stop_watch.clone().drop_guard();
    let survivors: Vec<(String, Arc<RelayStats>)> = net
        .relays
        .iter()
        .filter(|(n, _)| n != victim)
        .cloned()
        .collect();
    let relay_watch = tokio::spawn(watch_relays(
        survivors,
        clock.clone(),
        kill_us,
        stop_watch.clone(),
    ));
    let feed_left = plan.feed.saturating_sub(kill_after) + FEED_SLACK;
    let sent = tokio::select! {
        biased;
        _ = interrupt.cancelled() => bail!("interrupted"),
        r = tokio::time::timeout(feed_left, &mut feed) => match r {
            Err(_) => bail!(
                "the feed did not finish within {FEED_SLACK:?} of its planned {:?} \
                 (the origin is not keeping up)",
                plan.feed
            ),
            Ok(r) => r.context("feed task")?.context("synthetic feed")?,
        },
    };
    let drained = drain(watched, sent, plan.drain).await;
    stop_watch.cancel();
    let reconnects = relay_watch.await.unwrap_or_default();
    let relays = net
        .relays
        .iter()
        .map(|(n, s)| (n.clone(), relay_counters(s)))
        .collect();
    Ok(Fed {
        sent,
        kill_us,
        kill_after,
        drained,
        reconnects,
        relays,
    })
}

/// Waits until every relay has a session on each of its feeds and every consumer on each
/// of its feeds (two in dual-feed mode), failing after [`READY_TIMEOUT`] with the names
/// still missing.
async fn wait_ready(
    kind: Kind,
    topo: &Topology,
    net: &Network,
    watched: &[Watched],
    interrupt: &CancellationToken,
) -> Result<()> {
    let consumer_feeds = if kind.dual_feed() { 2 } else { 1 };
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let mut missing: Vec<&str> = net
            .relays
            .iter()
            .filter(|(n, s)| RelayStats::get(&s.upstream_connects) < feeds_of(topo, n).len() as u64)
            .map(|(n, _)| n.as_str())
            .collect();
        missing.extend(
            watched
                .iter()
                .filter(|w| w.stats.connects.load(Ordering::Relaxed) < consumer_feeds)
                .map(|w| w.name.as_str()),
        );
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let shown = missing
                .iter()
                .take(8)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            bail!(
                "network not ready after {READY_TIMEOUT:?}: {} node(s) without a session on \
                 every feed ({shown}{})",
                missing.len(),
                if missing.len() > 8 { ", ..." } else { "" }
            );
        }
        tokio::select! {
            biased;
            _ = interrupt.cancelled() => bail!("interrupted while waiting for the network"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

/// Waits (at most `timeout`) until every consumer accounted for `sent` ticks; returns
/// whether they all did. Not interruptible: ticks in flight still count.
async fn drain(watched: &[Watched], sent: u64, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if watched
            .iter()
            .all(|w| w.progress.load(Ordering::Acquire) >= sent)
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The measurements of one finished run.
struct RunOutcome {
    /// The per-run record (printed and written to JSON).
    record: RunRecord,
    /// Each resumed consumer's stall, µs.
    stalls_us: Vec<u64>,
    /// Each consumer's longest gap ending after the kill, µs.
    gaps_us: Vec<u64>,
    /// Latency of ticks scheduled in the window before the kill.
    before: Histogram<u64>,
    /// Latency of ticks scheduled in the window after the kill.
    after: Histogram<u64>,
}

/// The consumer of one run that was slowest to resume, with what it saw.
#[derive(Debug, Clone, Serialize)]
struct Slowest {
    /// Consumer name.
    name: String,
    /// Its stall, ms (`None`: it never delivered a tick scheduled after the kill).
    stall_ms: Option<f64>,
    /// Its non-tick events, `±ms after the kill: what`.
    events: Vec<String>,
}

/// One run as printed and written to JSON.
#[derive(Debug, Clone, Serialize)]
struct RunRecord {
    /// Kind of kill.
    kind: Kind,
    /// Run number within the kind, from 1.
    run: u32,
    /// The node killed.
    victim: &'static str,
    /// Ticks the origin sent.
    sent: u64,
    /// When the victim was killed, seconds after the feed started.
    kill_at_s: f64,
    /// Median stall over the consumers, ms.
    stall_p50_ms: f64,
    /// Longest stall over the consumers, ms.
    stall_max_ms: f64,
    /// Consumers that never delivered a tick scheduled after the kill.
    no_resume: u64,
    /// Longest gap between two deliveries to one consumer, the later after the kill, ms.
    gap_max_ms: f64,
    /// Longest gap between two deliveries to one consumer over the whole run, ms.
    run_gap_max_ms: f64,
    /// Seqs reported lost (`Lost` events), summed over consumers.
    lost: u64,
    /// Ticks neither delivered nor reported lost by the drain timeout, summed.
    undelivered: u64,
    /// Duplicate deliveries, summed.
    duplicates: u64,
    /// Out-of-order deliveries, summed.
    out_of_order: u64,
    /// Consumer upstreams dropped that were not killed (or before the kill), summed.
    false_failovers: u64,
    /// Whether every consumer accounted for every tick before the drain timeout.
    drained: bool,
    /// Relays that started a new upstream session after the kill: ms after it.
    relay_reconnects_ms: BTreeMap<String, f64>,
    /// Every relay's counters at the end of the run.
    relays: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// The slowest consumer to resume.
    slowest: Option<Slowest>,
    /// Why the run failed, if it did (then nothing else is meaningful).
    error: Option<String>,
}

impl RunRecord {
    /// The record of a run that failed with an error.
    fn failed(kind: Kind, run: u32, error: String) -> RunRecord {
        RunRecord {
            kind,
            run,
            victim: kind.victim(),
            sent: 0,
            kill_at_s: 0.0,
            stall_p50_ms: 0.0,
            stall_max_ms: 0.0,
            no_resume: 0,
            gap_max_ms: 0.0,
            run_gap_max_ms: 0.0,
            lost: 0,
            undelivered: 0,
            duplicates: 0,
            out_of_order: 0,
            false_failovers: 0,
            drained: false,
            relay_reconnects_ms: BTreeMap::new(),
            relays: BTreeMap::new(),
            slowest: None,
            error: Some(error),
        }
    }

    /// Whether every consumer got every tick once and in order.
    fn clean(&self) -> bool {
        self.lost == 0
            && self.undelivered == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.no_resume == 0
    }

    /// One line for stderr; with the slowest consumer's events when it missed the goal or
    /// something went wrong.
    fn line(&self) -> String {
        let mut s = format!(
            "sent {}, killed {} at {:.3} s, stall p50 {:.1} ms max {:.1} ms, gap max {:.1} \
             ms, lost {}, dup {}",
            self.sent,
            self.victim,
            self.kill_at_s,
            self.stall_p50_ms,
            self.stall_max_ms,
            self.gap_max_ms,
            self.lost,
            self.duplicates
        );
        if self.undelivered > 0 {
            let _ = write!(s, ", undelivered {}", self.undelivered);
        }
        if self.out_of_order > 0 {
            let _ = write!(s, ", out of order {}", self.out_of_order);
        }
        if self.no_resume > 0 {
            let _ = write!(s, ", {} consumer(s) never resumed", self.no_resume);
        }
        if self.false_failovers > 0 {
            let _ = write!(s, ", {} false failover(s)", self.false_failovers);
        }
        if !self.drained {
            s.push_str(" (drain incomplete)");
        }
        if !self.relay_reconnects_ms.is_empty() {
            let r: Vec<String> = self
                .relay_reconnects_ms
                .iter()
                .map(|(n, ms)| format!("{n} +{ms:.1} ms"))
                .collect();
            let _ = write!(s, "; relay reconnects: {}", r.join(", "));
        }
        if let Some(w) = &self.slowest
            && (w.stall_ms.is_none_or(|ms| ms > STALL_GOAL_MS)
                || !self.clean()
                || self.false_failovers > 0)
        {
            let shown = w.events.len().min(SHOWN_EVENTS);
            let _ = write!(
                s,
                "\n    slowest {} ({}): {}{}",
                w.name,
                w.stall_ms
                    .map_or("never resumed".to_string(), |ms| format!("{ms:.1} ms")),
                w.events[..shown].join("; "),
                if w.events.len() > shown {
                    format!("; ... {} more (see --json)", w.events.len() - shown)
                } else {
                    String::new()
                }
            );
        }
        s
    }
}

/// Milliseconds from microseconds.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The nearest-rank `q` quantile of sorted values (0 when empty).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Turns the traces of a finished run into its measurements.
fn measure(kind: Kind, index: u32, fed: &Fed, traces: Vec<Trace>) -> RunOutcome {
    let k = fed.kill_us;
    let w = WINDOW.as_micros() as u64;
    let victim = kind.victim();
    let mut before = empty_histogram();
    let mut after = empty_histogram();
    let mut stalls = Vec::new();
    let mut gaps = Vec::new();
    // (stall, or None when it never resumed; trace) of the slowest consumer.
    let mut slowest: Option<(Option<u64>, &Trace)> = None;
    let (mut lost, mut undelivered, mut dup, mut ooo) = (0, 0, 0, 0);
    let (mut no_resume, mut false_failovers, mut run_gap) = (0, 0, 0);
    for t in &traces {
        lost += t.tally.lost;
        undelivered += fed.sent.saturating_sub(t.accounted());
        dup += t.tally.duplicates;
        ooo += t.tally.out_of_order;
        false_failovers += t.false_failovers(victim, k);
        run_gap = run_gap.max(t.max_gap_us);
        gaps.push(t.kill_gap_us);
        let stall = t.resumed_us.map(|r| r.saturating_sub(k));
        match stall {
            Some(s) => stalls.push(s),
            None => no_resume += 1,
        }
        // Never resumed is slowest of all.
        let slower = match (&slowest, stall) {
            (None, _) => true,
            (Some((None, _)), _) => false,
            (Some((Some(_), _)), None) => true,
            (Some((Some(worst), _)), Some(s)) => s > *worst,
        };
        if slower {
            slowest = Some((stall, t));
        }
        for &(at, rx) in &t.samples {
            let at_us = t.samples_from + at as u64;
            let lat = (rx as u64).saturating_sub(at as u64).clamp(1, 120_000_000);
            if at_us < k && at_us + w >= k {
                let _ = before.record(lat);
            } else if at_us >= k && at_us < k + w {
                let _ = after.record(lat);
            }
        }
    }
    stalls.sort_unstable();
    gaps.sort_unstable();
    let slowest = slowest.map(|(stall, t)| Slowest {
        name: t.name.clone(),
        stall_ms: stall.map(ms),
        events: t.events.iter().map(|(at, e)| describe(*at, k, e)).collect(),
    });
    let record = RunRecord {
        kind,
        run: index,
        victim,
        sent: fed.sent,
        kill_at_s: fed.kill_after.as_secs_f64(),
        stall_p50_ms: ms(quantile(&stalls, 0.5)),
        stall_max_ms: ms(stalls.last().copied().unwrap_or(0)),
        no_resume,
        gap_max_ms: ms(gaps.last().copied().unwrap_or(0)),
        run_gap_max_ms: ms(run_gap),
        lost,
        undelivered,
        duplicates: dup,
        out_of_order: ooo,
        false_failovers,
        drained: fed.drained,
        relay_reconnects_ms: fed
            .reconnects
            .iter()
            .map(|(n, us)| (n.clone(), ms(*us)))
            .collect(),
        relays: fed.relays.clone(),
        slowest,
        error: None,
    };
    RunOutcome {
        record,
        stalls_us: stalls,
        gaps_us: gaps,
        before,
        after,
    }
}

/// Everything measured for one kind, across its runs.
struct KindAgg {
    /// The kind.
    kind: Kind,
    /// Runs that completed.
    kills: u32,
    /// Runs that failed with an error.
    errors: u32,
    /// Every resumed consumer's stall, µs.
    stalls_us: Vec<u64>,
    /// Every consumer's longest gap ending after the kill, µs.
    gaps_us: Vec<u64>,
    /// Consumers (summed over runs) that never resumed.
    no_resume: u64,
    /// Reported lost, summed.
    lost: u64,
    /// Never delivered by the drain timeout, summed.
    undelivered: u64,
    /// Duplicates, summed.
    duplicates: u64,
    /// Out-of-order deliveries, summed.
    out_of_order: u64,
    /// False failovers, summed.
    false_failovers: u64,
    /// Runs whose drain did not complete.
    undrained: u32,
    /// Latency of ticks scheduled in the window before each kill.
    before: Histogram<u64>,
    /// Latency of ticks scheduled in the window after each kill.
    after: Histogram<u64>,
}

impl KindAgg {
    /// Nothing measured yet.
    fn new(kind: Kind) -> KindAgg {
        KindAgg {
            kind,
            kills: 0,
            errors: 0,
            stalls_us: Vec::new(),
            gaps_us: Vec::new(),
            no_resume: 0,
            lost: 0,
            undelivered: 0,
            duplicates: 0,
            out_of_order: 0,
            false_failovers: 0,
            undrained: 0,
            before: empty_histogram(),
            after: empty_histogram(),
        }
    }

    /// Adds one finished run.
    fn add(&mut self, o: &RunOutcome) {
        let r = &o.record;
        self.kills += 1;
        self.stalls_us.extend_from_slice(&o.stalls_us);
        self.gaps_us.extend_from_slice(&o.gaps_us);
        self.no_resume += r.no_resume;
        self.lost += r.lost;
        self.undelivered += r.undelivered;
        self.duplicates += r.duplicates;
        self.out_of_order += r.out_of_order;
        self.false_failovers += r.false_failovers;
        self.undrained += u32::from(!r.drained);
        // Same bounds by construction; a failure would only drop samples.
        let _ = self.before.add(&o.before);
        let _ = self.after.add(&o.after);
    }

    /// The summary row.
    fn summary(&self) -> KindSummary {
        let mut s = self.stalls_us.clone();
        s.sort_unstable();
        let mut g = self.gaps_us.clone();
        g.sort_unstable();
        KindSummary {
            kind: self.kind,
            victim: self.kind.victim(),
            kills: self.kills,
            errors: self.errors,
            stall_samples: s.len(),
            stall_p50_ms: ms(quantile(&s, 0.5)),
            stall_p99_ms: ms(quantile(&s, 0.99)),
            stall_max_ms: ms(s.last().copied().unwrap_or(0)),
            gap_p99_ms: ms(quantile(&g, 0.99)),
            gap_max_ms: ms(g.last().copied().unwrap_or(0)),
            no_resume: self.no_resume,
            lost: self.lost,
            undelivered: self.undelivered,
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            false_failovers: self.false_failovers,
            undrained_runs: self.undrained,
            latency_before_us: Latency::of(&self.before),
            latency_after_us: Latency::of(&self.after),
        }
    }
}

/// One kind's results, as printed and written to JSON.
#[derive(Debug, Clone, Serialize)]
struct KindSummary {
    /// Kind of kill.
    kind: Kind,
    /// The node killed.
    victim: &'static str,
    /// Runs that completed.
    kills: u32,
    /// Runs that failed with an error.
    errors: u32,
    /// Stalls measured (consumers × completed runs, minus those that never resumed).
    stall_samples: usize,
    /// Median stall, ms.
    stall_p50_ms: f64,
    /// 99th-percentile stall, ms.
    stall_p99_ms: f64,
    /// Longest stall, ms.
    stall_max_ms: f64,
    /// 99th percentile over consumers and runs of the longest gap ending after the kill, ms.
    gap_p99_ms: f64,
    /// Longest gap ending after the kill, ms.
    gap_max_ms: f64,
    /// Consumers (summed over runs) that never delivered a tick scheduled after the kill.
    no_resume: u64,
    /// Seqs reported lost (`Lost` events), summed.
    lost: u64,
    /// Ticks neither delivered nor reported lost by the drain timeout, summed.
    undelivered: u64,
    /// Duplicate deliveries, summed.
    duplicates: u64,
    /// Out-of-order deliveries, summed.
    out_of_order: u64,
    /// Consumer upstreams dropped that were not killed (or before the kill), summed.
    false_failovers: u64,
    /// Runs whose consumers had not accounted for every tick by the drain timeout.
    undrained_runs: u32,
    /// Latency of ticks scheduled in the window before the kill, µs.
    latency_before_us: Latency,
    /// Latency of ticks scheduled in the window after the kill, µs.
    latency_after_us: Latency,
}

impl KindSummary {
    /// Whether every tick reached every consumer once, in order, and every consumer resumed.
    fn clean(&self) -> bool {
        self.lost == 0
            && self.undelivered == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.no_resume == 0
    }
}

/// The JSON file `failover --json` writes.
#[derive(Serialize)]
struct FailoverJson<'a> {
    rate: f64,
    size: usize,
    consumers: usize,
    seconds: f64,
    kill_at_s: f64,
    drain_s: f64,
    heartbeat_ms: u64,
    dead_after: u32,
    window_ms: u64,
    kinds: &'a [KindSummary],
    runs: &'a [RunRecord],
}

/// The results as a Markdown table, then the verdicts against the goals.
fn markdown(rows: &[KindSummary], plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\norigin → t1 (standby t1-b) → t2 (standby t2-b) → {} consumers [t2, t2-b]; \
         {} ticks/s of {} B; heartbeat {HEARTBEAT_MS} ms, dead after {DEAD_AFTER} \
         (detection alone takes {} ms); kill at {:?} of {:?} of feed. Stall: kill → first \
         delivery of a tick scheduled after the kill, per consumer and kill. Gap: longest \
         pause between deliveries ending after the kill. Latency: p99 of ticks scheduled \
         {:?} before / after the kill, µs.\n",
        plan.consumers,
        plan.rate,
        plan.size,
        HEARTBEAT_MS * DEAD_AFTER as u64,
        plan.kill_at,
        plan.feed,
        WINDOW
    );
    let _ = writeln!(
        s,
        "| kind | victim | kills | stall p50 ms | stall p99 ms | stall max ms | gap max ms \
         | lost | undelivered | dup | false failovers | lat p99 before µs | lat p99 after µs |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {}{} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |",
            r.kind.name(),
            r.victim,
            r.kills,
            if r.errors > 0 {
                format!(" (+{} failed)", r.errors)
            } else {
                String::new()
            },
            r.stall_p50_ms,
            r.stall_p99_ms,
            r.stall_max_ms,
            r.gap_max_ms,
            r.lost,
            r.undelivered,
            r.duplicates,
            r.false_failovers,
            r.latency_before_us.p99,
            r.latency_after_us.p99,
        );
    }
    s.push('\n');
    for r in rows {
        let mut notes = Vec::new();
        if r.out_of_order > 0 {
            notes.push(format!("{} out of order", r.out_of_order));
        }
        if r.no_resume > 0 {
            notes.push(format!("{} consumer run(s) never resumed", r.no_resume));
        }
        if r.undrained_runs > 0 {
            notes.push(format!("{} run(s) did not drain", r.undrained_runs));
        }
        let mut bad = Vec::new();
        for (n, what) in [
            (r.lost, "LOST"),
            (r.undelivered, "UNDELIVERED"),
            (r.duplicates, "DUPLICATED"),
            (r.out_of_order, "OUT OF ORDER"),
        ] {
            if n > 0 {
                bad.push(format!("{n} {what}"));
            }
        }
        let verdict = if bad.is_empty() {
            "every tick delivered once, in order".to_string()
        } else {
            format!("ticks: {}", bad.join(", "))
        };
        let goal = if r.kind.dual_feed() {
            let (b, a) = (r.latency_before_us.p99, r.latency_after_us.p99);
            format!(
                "p99 latency {a} µs after the kill vs {b} µs before: {}",
                if b > SATURATED_US {
                    // Seconds of latency with nothing killed: the machine, not the failover.
                    "NOT MEASURED: the network was saturated before the kill (try fewer --consumers)"
                        .to_string()
                } else if a <= b + DUAL_GOAL_US {
                    format!("within the {DUAL_GOAL_US} µs goal")
                } else {
                    format!("MISSES the {DUAL_GOAL_US} µs goal")
                }
            )
        } else {
            format!(
                "p99 stall {:.1} ms: {}",
                r.stall_p99_ms,
                if r.stall_p99_ms <= STALL_GOAL_MS {
                    format!("within the {STALL_GOAL_MS} ms goal")
                } else {
                    format!("MISSES the {STALL_GOAL_MS} ms goal")
                }
            )
        };
        let _ = writeln!(
            s,
            "- {}: {verdict}; {goal}{}",
            r.kind.name(),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_has_standbys_and_dual_consumers() {
        let t = topology(Kind::Dual, 3, &[7000, 7001, 7002, 7003, 7004]).expect("valid");
        assert_eq!(t.standby_of(T1), Some(T1_B));
        assert_eq!(t.standby_of(T2), Some(T2_B));
        assert_eq!(
            t.upstream_candidates(T2),
            vec![T1.to_string(), T1_B.to_string()]
        );
        assert_eq!(t.consumers.len(), 3);
        assert!(
            t.consumers
                .iter()
                .all(|c| c.dual_feed && c.relays == [T2, T2_B])
        );
        let t = topology(Kind::Relay, 1, &[7000, 7001, 7002, 7003, 7004]).expect("valid");
        assert!(!t.consumers[0].dual_feed);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[7], 0.99), 7);
    }

    #[test]
    fn trace_measures_the_stall_from_the_first_tick_scheduled_after_the_kill() {
        use bytes::{BufMut, BytesMut};
        let marks = Marks::default();
        marks.from.store(1_000, Ordering::Relaxed);
        marks.to.store(1_000_000, Ordering::Relaxed);
        let tick = |seq: u64, at: u64| {
            let mut b = BytesMut::new();
            b.put_u64_le(at);
            b.put_u64_le(seq);
            Event::Tick(tickcast_proto::Tick {
                channel: 1,
                seq,
                epoch: 1,
                origin_us: at,
                payload: b.freeze(),
            })
        };
        let mut t = Trace::new("c".into(), 8);
        t.take(tick(1, 10_000), 10_100, &marks);
        marks.kill.store(20_000, Ordering::Relaxed);
        // In flight when the kill happened: delivered after it, but scheduled before.
        t.take(tick(2, 19_990), 20_050, &marks);
        t.take(tick(2, 19_990), 20_060, &marks); // a duplicate: ignored
        t.take(tick(3, 19_995), 180_000, &marks);
        t.take(tick(4, 20_010), 180_010, &marks);
        assert_eq!(t.resumed_us, Some(180_010));
        assert_eq!(t.kill_gap_us, 180_000 - 20_050);
        assert_eq!((t.tally.delivered, t.tally.duplicates), (4, 1));
        assert_eq!(t.samples.len(), 4);
    }
}
