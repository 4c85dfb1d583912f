//! The consumer: [`Client`] turns a link's raw arrivals into an in-order, exactly-once
//! [`Event`] stream per channel, repairing gaps by NACK and reporting what cannot be
//! repaired as [`Event::Lost`].

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use quinn::Endpoint;
use tickcast_proto::codec::{Control, Role};
use tickcast_proto::gap::{Delivery, GapConfig, Reassembler};
use tickcast_proto::{ChannelId, Clock, Seq, SeqRange, Tick};
use tokio::sync::mpsc;
use tokio::time::{Instant as TokioInstant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::link::{FeedCmds, Feeds, Inbound, LinkConfig, Upstream, resume_from_points};

/// What a consumer application receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The next tick of its channel: in order, exactly once.
    Tick(Tick),
    /// These seqs of the channel will never be delivered; the next event of the channel
    /// continues after `range.last`.
    Lost {
        /// Channel.
        channel: ChannelId,
        /// The unrecoverable range.
        range: SeqRange,
    },
    /// Subscribed (or re-subscribed after a failover) through this upstream.
    Connected {
        /// Upstream name.
        upstream: String,
    },
    /// The session through this upstream ended; the client is failing over.
    Disconnected {
        /// Upstream name.
        upstream: String,
        /// Why.
        reason: String,
    },
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our topology name (our certificate is valid for it).
    pub name: String,
    /// Candidate relays in order of preference.
    pub upstreams: Vec<Upstream>,
    /// Channels to receive.
    pub channels: Vec<ChannelId>,
    /// Per channel, the first seq wanted; channels not listed start at the live head.
    pub resume_from: BTreeMap<ChannelId, Seq>,
    /// Gap detection and NACK timing.
    pub gap: GapConfig,
    /// The upstream's heartbeat interval.
    pub heartbeat: Duration,
    /// Missed heartbeats before the upstream is declared dead.
    pub dead_after: u32,
    /// Most out-of-order ticks held per channel while a gap is repaired.
    pub max_held: usize,
    /// Events buffered for the application before the client stops reading.
    pub event_capacity: usize,
    /// A/B mode: subscribe through the first two candidates at once and keep whichever
    /// copy of each seq arrives first; losing either feed costs no stall.
    pub dual_feed: bool,
    /// NACKs sent for one gap without an answer before the upstream is treated as failing
    /// (alive, but not delivering what it announced) and abandoned for the next candidate.
    pub stall_attempts: u32,
}

impl ClientConfig {
    /// A consumer named `name` reading `channels` from `upstreams`, with default timing.
    pub fn new(
        name: impl Into<String>,
        upstreams: Vec<Upstream>,
        channels: Vec<ChannelId>,
    ) -> Self {
        ClientConfig {
            name: name.into(),
            upstreams,
            channels,
            resume_from: BTreeMap::new(),
            gap: GapConfig::default(),
            heartbeat: Duration::from_millis(50),
            dead_after: 3,
            max_held: 1_000_000,
            event_capacity: 65_536,
            dual_feed: false,
            stall_attempts: 10,
        }
    }

    /// One link configuration per feed: the candidate list, and in dual-feed mode a second
    /// list that starts at the second candidate.
    pub(crate) fn link_configs(&self, role: Role) -> Vec<LinkConfig> {
        let mut lists = vec![self.upstreams.clone()];
        if self.dual_feed && self.upstreams.len() >= 2 {
            let mut b = self.upstreams.clone();
            b.rotate_left(1);
            lists.push(b);
        }
        lists
            .into_iter()
            .map(|upstreams| LinkConfig {
                name: self.name.clone(),
                role,
                upstreams,
                heartbeat: self.heartbeat,
                dead_after: self.dead_after,
                connect_timeout: Duration::from_secs(2),
                retry_pause: self.heartbeat,
            })
            .collect()
    }
}

/// Counters of one client, readable while it runs.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Ticks handed to the application.
    pub delivered: AtomicU64,
    /// Seqs reported lost.
    pub lost: AtomicU64,
    /// New ticks that filled a gap (repairs and resume replays), by datagram or stream.
    pub repaired: AtomicU64,
    /// Copies dropped as duplicates.
    pub duplicates: AtomicU64,
    /// NACK ranges sent.
    pub nack_ranges: AtomicU64,
    /// Sessions started (1 + failovers).
    pub connects: AtomicU64,
}

/// The application's end: a `Stream` of [`Event`]s.
pub struct Subscription {
    events: mpsc::Receiver<Event>,
    stats: Arc<ClientStats>,
}

impl Subscription {
    /// Live counters.
    pub fn stats(&self) -> Arc<ClientStats> {
        self.stats.clone()
    }

    /// Next event; `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

impl Stream for Subscription {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

/// A consumer subscription: build with [`Client::new`], drive with [`Client::run`].
pub struct Client {
    cfg: ClientConfig,
    endpoint: Endpoint,
    clock: Arc<dyn Clock>,
    events: mpsc::Sender<Event>,
    stats: Arc<ClientStats>,
}

impl Client {
    /// A client and the [`Subscription`] its events arrive on.
    pub fn new(
        cfg: ClientConfig,
        endpoint: Endpoint,
        clock: Arc<dyn Clock>,
    ) -> (Client, Subscription) {
        let (tx, rx) = mpsc::channel(cfg.event_capacity.max(1));
        let stats = Arc::new(ClientStats::default());
        (
            Client {
                cfg,
                endpoint,
                clock,
                events: tx,
                stats: stats.clone(),
            },
            Subscription { events: rx, stats },
        )
    }

    /// Convenience: spawns [`run`](Self::run) on the current runtime.
    pub fn spawn(
        cfg: ClientConfig,
        endpoint: Endpoint,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Subscription {
        let (client, sub) = Client::new(cfg, endpoint, clock);
        tokio::spawn(client.run(shutdown));
        sub
    }

    /// Receives until `shutdown` is cancelled or the [`Subscription`] is dropped.
    pub async fn run(self, shutdown: CancellationToken) {
        let Client {
            cfg,
            endpoint,
            clock,
            events,
            stats,
        } = self;
        let mut chans: BTreeMap<ChannelId, Reassembler> = cfg
            .channels
            .iter()
            .map(|&c| (c, Reassembler::new(c, cfg.gap, cfg.max_held)))
            .collect();
        // Resume points the link reads for each (re)connect: last delivered + 1, or the
        // configured start, or live.
        let resume_points: Arc<Mutex<BTreeMap<ChannelId, Option<Seq>>>> = Arc::new(Mutex::new(
            cfg.channels
                .iter()
                .map(|c| (*c, cfg.resume_from.get(c).copied()))
                .collect(),
        ));
        let resume = resume_from_points(resume_points.clone());
        let link_shutdown = shutdown.child_token();
        let feeds = Feeds::spawn(
            cfg.link_configs(Role::Consumer),
            endpoint,
            resume,
            1024,
            link_shutdown.clone(),
        );
        let mut feeds = feeds;
        let _stop_link = link_shutdown.drop_guard();
        let mut out: Vec<Delivery> = Vec::new();
        let mut pending: Vec<Event> = Vec::new();
        loop {
            let next_nack = chans
                .values_mut()
                .filter_map(|r| r.tracker().poll_timeout())
                .min();
            let nack_at = next_nack
                .map(TokioInstant::from_std)
                .unwrap_or_else(|| TokioInstant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                msg = feeds.inbound.recv() => {
                    let Some(msg) = msg else { return };
                    let now = clock.now();
                    let mut next = Some(msg);
                    // Drain what is already queued before flushing events (cheap batching).
                    while let Some((feed, msg)) = next.take() {
                        if let Err(reason) = handle(msg, now, &mut chans, &cfg, &stats, &mut out, &mut pending) {
                            warn!(client = %cfg.name, %reason, "dropping upstream");
                            feeds.cmds.reconnect(feed, reason);
                        }
                        flush(&mut out, &mut pending, &stats);
                        if pending.len() < 4096 {
                            next = feeds.inbound.try_recv().ok();
                        }
                    }
                    {
                        let mut rp = resume_points.lock().expect("resume lock");
                        for (c, r) in chans.iter() {
                            if r.is_started() {
                                rp.insert(*c, Some(r.deliver_next()));
                            }
                        }
                    }
                    // A steady inbound flow must not starve NACKs: send those due now.
                    send_due_nacks(clock.now(), &mut chans, &cfg, &stats, &feeds.cmds);
                    for ev in pending.drain(..) {
                        if events.send(ev).await.is_err() {
                            return;
                        }
                    }
                }
                _ = sleep_until(nack_at), if next_nack.is_some() => {
                    send_due_nacks(clock.now(), &mut chans, &cfg, &stats, &feeds.cmds);
                }
            }
        }
    }
}

/// Sends every NACK that is due (to every feed), and abandons upstreams that keep
/// announcing ticks without delivering them.
fn send_due_nacks(
    now: std::time::Instant,
    chans: &mut BTreeMap<ChannelId, Reassembler>,
    cfg: &ClientConfig,
    stats: &ClientStats,
    feeds: &FeedCmds,
) {
    for (c, r) in chans.iter_mut() {
        while let Some(ranges) = r.tracker().poll_nack(now) {
            stats.nack_ranges.fetch_add(ranges.len() as u64, Relaxed);
            feeds.send_all(Control::Nack {
                channel: *c,
                ranges,
            });
        }
    }
    if chans.values_mut().any(|r| {
        r.tracker()
            .stuck(now, cfg.stall_attempts, Duration::from_secs(1))
    }) {
        warn!(client = %cfg.name, "upstream announces ticks it does not deliver; switching");
        feeds.reconnect_all("announced ticks not delivered");
        for r in chans.values_mut() {
            r.tracker().renack_all(now);
        }
    }
}

/// Applies one inbound message; an `Err` is a protocol violation by the upstream.
fn handle(
    msg: Inbound,
    now: std::time::Instant,
    chans: &mut BTreeMap<ChannelId, Reassembler>,
    cfg: &ClientConfig,
    stats: &ClientStats,
    out: &mut Vec<Delivery>,
    pending: &mut Vec<Event>,
) -> Result<(), String> {
    match msg {
        Inbound::Connected {
            upstream,
            welcome,
            rtt,
        } => {
            stats.connects.fetch_add(1, Relaxed);
            for st in welcome.channels {
                let Some(r) = chans.get_mut(&st.channel) else {
                    continue;
                };
                let first = cfg
                    .resume_from
                    .get(&st.channel)
                    .copied()
                    .unwrap_or(st.head + 1);
                r.start_at(now, first, out).map_err(|e| e.to_string())?;
                r.on_head(now, st.head).map_err(|e| e.to_string())?;
                r.tracker()
                    .set_retry(tickcast_proto::gap::nack_retry_for(rtt));
                // The new session replays from our resume point by itself: re-ask for what
                // is still missing only once that replay has had time to arrive.
                r.tracker()
                    .renack_all(now + (rtt * 4).max(Duration::from_millis(100)));
            }
            pending.push(Event::Connected { upstream });
        }
        Inbound::Datagram { ticks, .. } => {
            for t in ticks {
                on_tick(now, t, chans, stats, out)?;
            }
        }
        Inbound::StreamTick(t) => on_tick(now, t, chans, stats, out)?,
        Inbound::Heads(heads) => {
            for h in heads {
                if let Some(r) = chans.get_mut(&h.channel) {
                    r.on_head(now, h.head).map_err(|e| e.to_string())?;
                }
            }
        }
        Inbound::Unavailable { channel, range } => {
            if let Some(r) = chans.get_mut(&channel) {
                r.on_unavailable(range, out);
            }
        }
        Inbound::Disconnected { upstream, reason } => {
            pending.push(Event::Disconnected { upstream, reason });
        }
        Inbound::Mark { .. } => {} // meant for a standby origin only
    }
    Ok(())
}

fn on_tick(
    now: std::time::Instant,
    t: Tick,
    chans: &mut BTreeMap<ChannelId, Reassembler>,
    stats: &ClientStats,
    out: &mut Vec<Delivery>,
) -> Result<(), String> {
    let Some(r) = chans.get_mut(&t.channel) else {
        return Ok(()); // a channel we did not ask for: ignore
    };
    let fills = r.is_started() && t.seq <= r.tracker().known_head();
    match r.on_tick(now, t, out).map_err(|e| e.to_string())? {
        tickcast_proto::gap::Arrival::New if fills => {
            stats.repaired.fetch_add(1, Relaxed);
        }
        tickcast_proto::gap::Arrival::New => {}
        tickcast_proto::gap::Arrival::Duplicate => {
            stats.duplicates.fetch_add(1, Relaxed);
        }
    }
    Ok(())
}

fn flush(out: &mut Vec<Delivery>, pending: &mut Vec<Event>, stats: &ClientStats) {
    for d in out.drain(..) {
        pending.push(match d {
            Delivery::Tick(t) => {
                stats.delivered.fetch_add(1, Relaxed);
                Event::Tick(t)
            }
            Delivery::Lost { channel, range } => {
                stats.lost.fetch_add(range.len(), Relaxed);
                Event::Lost { channel, range }
            }
        });
    }
}
