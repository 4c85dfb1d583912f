//! The hub: the one task per node that owns tick state. Every tick a relay handles passes
//! here: it is checked against the upstream gap tracker (new or duplicate), stored in the
//! ring, and forwarded to every child; children's NACKs are answered from the ring, and
//! what the ring lacks is asked of the parent once, however many children want it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Endpoint, SendDatagramError};
use tickcast_client::link::{
    FeedCmds, Feeds, Inbound, LinkConfig, ResumePoints, resume_from_points,
};
use tickcast_proto::codec::{
    self, ChannelHead, ChannelState, Control, DatagramBuilder, Role, Subscribe, Welcome,
};
use tickcast_proto::gap::{Arrival, GapTracker};
use tickcast_proto::ring::{Insert, Ring};
use tickcast_proto::{ChannelId, Clock, Seq, SeqRange, Tick};
use tokio::sync::mpsc;
use tokio::time::{Instant as TokioInstant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::server::{Child, HubMsg, Out};
use crate::{RelayConfig, RelayStats, Source};

/// Per-channel state.
struct Chan {
    ring: Ring,
    /// Upstream gap tracking (parent source only).
    tracker: GapTracker,
    /// Highest seq received (what heartbeats announce).
    head: Seq,
    /// Ranges this node itself could not recover: answered "unavailable" on request.
    lost: BTreeMap<Seq, Seq>,
    /// Fetches of ranges below the ring, asked of the parent on behalf of children.
    fetches: BTreeMap<SeqRange, Fetch>,
    /// Live ticks waiting to be batched into datagrams in this drain round.
    batch: Vec<Tick>,
    /// Ticks that arrived before the first welcome set the starting point.
    early: Vec<Tick>,
    /// Lowest seq seen numbered under the current epoch (`Seq::MAX`: none yet).
    epoch_floor: Seq,
}

struct Fetch {
    children: BTreeSet<u64>,
    asked: Instant,
}

/// The hub task's state; see the module docs.
pub struct Hub {
    cfg: RelayConfig,
    endpoint: Endpoint,
    clock: Arc<dyn Clock>,
    stats: Arc<RelayStats>,
    chans: BTreeMap<ChannelId, Chan>,
    children: BTreeMap<u64, Child>,
    /// Per child and channel, seq ranges already sent on a (reliable) stream in this
    /// session: a repeated NACK for them means they are still on the way, and answering
    /// again would only double the load on a server that is already behind.
    streamed: BTreeMap<(u64, ChannelId), BTreeMap<Seq, Seq>>,
    upstream: Option<FeedCmds>,
    /// Whether the tick source is the local sequencer (then nothing is upstream).
    local: bool,
    /// Resume points the link reads at each (re)connect to the parent.
    resume: ResumePoints,
    /// Heads as the heartbeat tasks see them.
    heads: Arc<Heads>,
    /// Highest origin epoch seen: ticks of older epochs are refused (no split brain).
    max_epoch: u32,
    /// Origin side of the commit gate; see [`Gate`].
    gate: Gate,
    /// Standby-origin side: what it learns from the primary, and how it takes over.
    standby: Option<StandbyState>,
    /// Feeds with a session up.
    feeds_up: BTreeSet<usize>,
    /// Since when no feed has had a session (a relay with a parent only).
    upstream_lost_at: Option<Instant>,
}

/// The origin's commit gate. With a standby origin connected, each numbered tick goes to
/// the standby first and waits here; it reaches everyone else, and its publisher is
/// acknowledged, once the standby confirms holding it. So whatever a consumer has seen or
/// a publisher was told is safe survives the primary's death.
#[derive(Default)]
struct Gate {
    /// The standby origin's child id, while connected.
    child: Option<u64>,
    /// Numbered, sent to the standby, not yet confirmed.
    pending: std::collections::VecDeque<crate::Sequenced>,
}

/// A standby origin before its takeover.
struct StandbyState {
    takeover: Option<tokio::sync::oneshot::Sender<crate::Takeover>>,
    /// Publisher record numbering, per publisher: (id, channel, seq), oldest first.
    marks: BTreeMap<String, std::collections::VecDeque<(u64, ChannelId, Seq)>>,
    /// Heads last confirmed to the primary.
    confirmed: BTreeMap<ChannelId, Seq>,
    /// Connected to the primary at least once.
    was_connected: bool,
    /// Set when the primary is declared dead: the run loop then takes over.
    promote: bool,
    /// Per channel, the primary's head + 1 when this standby first joined: from there on
    /// it holds every tick (the primary's gate sees to that); below, the primary's history
    /// is replayed to it in the background, for repairs after a takeover.
    live_from: BTreeMap<ChannelId, Seq>,
}

/// The highest `h` such that `tracker` holds every seq of `from..=h` (`from - 1` if none).
fn held_from(tracker: &GapTracker, from: Seq) -> Seq {
    match tracker.missing().find(|g| g.last >= from) {
        Some(g) => g.first.max(from) - 1,
        None => tracker.known_head().max(from - 1),
    }
}

/// Each channel's head, shared with the per-child heartbeat tasks so heartbeats keep their
/// rhythm however busy the hub is. (A hub that stops processing ticks stops advancing the
/// heads, which children notice as announced-but-undelivered ticks.)
pub struct Heads(
    BTreeMap<ChannelId, AtomicU64>,
    std::sync::atomic::AtomicBool,
);

impl Heads {
    /// Heartbeats stop while `false`: a relay cut off from every upstream for longer than
    /// it takes to fail over goes quiet, so its children move to its standby (which may
    /// still be fed) instead of waiting on ticks it cannot get.
    fn set_live(&self, live: bool) -> bool {
        self.1.swap(live, Relaxed) != live
    }

    fn set(&self, channel: ChannelId, head: Seq) {
        if let Some(h) = self.0.get(&channel) {
            h.store(head, Relaxed);
        }
    }

    fn heartbeat(&self, channels: &[ChannelId]) -> Bytes {
        let heads = channels
            .iter()
            .filter_map(|c| {
                self.0.get(c).map(|h| ChannelHead {
                    channel: *c,
                    head: h.load(Relaxed),
                })
            })
            .collect();
        codec::encode_control_datagram(&Control::Heartbeat { heads })
    }
}

/// Sends heartbeats to one child every `interval` until its connection closes.
fn spawn_heartbeats(
    conn: quinn::Connection,
    channels: Vec<ChannelId>,
    heads: Arc<Heads>,
    interval: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = conn.closed() => return,
                _ = tick.tick() => {
                    if !heads.1.load(Relaxed) {
                        continue;
                    }
                    if conn.send_datagram(heads.heartbeat(&channels)).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Adds `seq` to a set of ranges (first → last), extending a range that ends just below it
/// (answers are mostly runs). Bounded to 256 ranges; the oldest go first.
fn add_seq(set: &mut BTreeMap<Seq, Seq>, seq: Seq) {
    match set.range_mut(..=seq).next_back() {
        Some((_, last)) if last.saturating_add(1) >= seq => *last = (*last).max(seq),
        _ => {
            set.insert(seq, seq);
        }
    }
    while set.len() > 256 {
        set.pop_first();
    }
}

/// The parts of `r` that no range of `set` covers, ascending.
fn uncovered(set: &BTreeMap<Seq, Seq>, r: SeqRange) -> Vec<SeqRange> {
    let mut out = Vec::new();
    let mut next = r.first;
    let start = set
        .range(..=r.first)
        .next_back()
        .map_or(r.first, |(&f, _)| f);
    for (&f, &l) in set.range(start..=r.last) {
        if l < next {
            continue;
        }
        if f > next {
            out.push(SeqRange::new(next, f - 1));
        }
        next = l.saturating_add(1);
        if next > r.last {
            return out;
        }
    }
    out.push(SeqRange::new(next, r.last));
    out
}

/// Most datagrams a repair answer may take before it goes on a stream instead.
const REPAIR_DATAGRAMS: usize = 8;

/// Tick frames for a stream, as one contiguous buffer. (Copying the payloads once here is
/// far cheaper than handing quinn two small chunks per tick: its send buffer scans its
/// segments linearly, so thousands of chunks in a replay cost quadratically.)
fn tick_frames(ticks: &[Tick]) -> Vec<Bytes> {
    let len: usize = ticks.iter().map(|t| 5 + t.weight()).sum();
    let mut buf = bytes::BytesMut::with_capacity(len);
    for t in ticks {
        for part in codec::encode_tick_frame(t) {
            buf.extend_from_slice(&part);
        }
    }
    vec![buf.freeze()]
}

impl Hub {
    /// A hub for `cfg`'s channels.
    pub fn new(
        cfg: RelayConfig,
        endpoint: Endpoint,
        clock: Arc<dyn Clock>,
        stats: Arc<RelayStats>,
    ) -> Self {
        let resume = Arc::new(Mutex::new(
            cfg.channels.iter().map(|c| (*c, None)).collect(),
        ));
        let cfg_channels = cfg.channels.clone();
        let chans = cfg
            .channels
            .iter()
            .map(|&c| {
                (
                    c,
                    Chan {
                        ring: Ring::new(cfg.ring, 1),
                        tracker: GapTracker::new(cfg.gap),
                        head: 0,
                        lost: BTreeMap::new(),
                        fetches: BTreeMap::new(),
                        batch: Vec::new(),
                        early: Vec::new(),
                        epoch_floor: Seq::MAX,
                    },
                )
            })
            .collect();
        Hub {
            cfg,
            endpoint,
            clock,
            stats,
            chans,
            children: BTreeMap::new(),
            streamed: BTreeMap::new(),
            upstream: None,
            local: false,
            resume,
            heads: Arc::new(Heads(
                cfg_channels
                    .iter()
                    .map(|c| (*c, AtomicU64::new(0)))
                    .collect(),
                std::sync::atomic::AtomicBool::new(true),
            )),
            feeds_up: BTreeSet::new(),
            upstream_lost_at: None,
            max_epoch: 0,
            gate: Gate::default(),
            standby: None,
        }
    }

    /// Runs until shutdown, then closes every child connection.
    pub async fn run(
        mut self,
        source: Source,
        mut hub_rx: mpsc::Receiver<HubMsg>,
        shutdown: CancellationToken,
    ) {
        let link_shutdown = shutdown.child_token();
        let mut after_takeover = None;
        let (mut local_rx, mut link) = match source {
            Source::Local(rx) => {
                self.local = true;
                for c in self.chans.values_mut() {
                    c.tracker.start_at(1);
                }
                (Some(rx), None)
            }
            Source::Standby {
                primary,
                takeover,
                local,
            } => {
                self.standby = Some(StandbyState {
                    takeover: Some(takeover),
                    marks: BTreeMap::new(),
                    confirmed: BTreeMap::new(),
                    was_connected: false,
                    promote: false,
                    live_from: BTreeMap::new(),
                });
                after_takeover = Some(local);
                // A standby origin wants the primary's whole history, not just the live
                // stream: after a takeover it is the only source of repairs.
                {
                    let mut r = self.resume.lock().expect("resume lock");
                    for (c, ch) in self.chans.iter_mut() {
                        ch.tracker.start_at(1);
                        r.insert(*c, Some(1));
                    }
                }
                (
                    None,
                    Some(self.subscribe(vec![vec![primary]], &link_shutdown)),
                )
            }
            Source::Parents(feeds) => (None, Some(self.subscribe(feeds, &link_shutdown))),
        };
        loop {
            // NACK timers are checked after every input as well as by their own branch, so a
            // busy input can never starve them. (Heartbeats have tasks of their own.)
            let now = TokioInstant::now();
            if self
                .chans
                .values()
                .filter_map(|c| c.tracker.poll_timeout())
                .min()
                .is_some_and(|d| d <= now.into_std())
            {
                self.send_nacks();
            }
            let nack_due = self
                .chans
                .values()
                .filter_map(|c| c.tracker.poll_timeout())
                .min();
            let nack_at = nack_due
                .map(TokioInstant::from_std)
                .unwrap_or_else(|| TokioInstant::now() + Duration::from_secs(3600));
            let quiet_after = self.cfg.heartbeat * self.cfg.dead_after * 4;
            let quiet_at = self
                .upstream_lost_at
                .filter(|_| !self.local && self.heads.1.load(Relaxed))
                .map(|t| TokioInstant::from_std(t + quiet_after));
            // Biased, so a run is reproducible (netsim); fairness comes from each branch
            // also draining what the other inputs have queued, so neither starves.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                batch = async { local_rx.as_mut().expect("local source").recv().await }, if local_rx.is_some() => {
                    let Some(batch) = batch else { break };
                    self.on_local(batch);
                    while let Ok(more) = local_rx.as_mut().expect("local source").try_recv() {
                        self.on_local(more);
                    }
                    self.flush_batches();
                }
                m = async { link.as_mut().expect("parent source").inbound.recv().await }, if link.is_some() => {
                    let Some(m) = m else { break };
                    let now = self.clock.now();
                    let (feed, m) = m;
                    self.on_inbound(now, feed, m);
                    let rx = &mut link.as_mut().expect("parent source").inbound;
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok((feed, m)) => self.on_inbound(now, feed, m),
                            Err(_) => break,
                        }
                    }
                    self.flush_batches();
                    self.update_resume();
                }
                m = hub_rx.recv() => {
                    let Some(m) = m else { break };
                    self.on_hub_msg(m);
                    while let Ok(m) = hub_rx.try_recv() {
                        self.on_hub_msg(m);
                    }
                }
                _ = sleep_until(nack_at), if nack_due.is_some() => {}
                _ = sleep_until(quiet_at.unwrap_or(nack_at)), if quiet_at.is_some() => {}
            }
            // Cut off from every upstream for longer than a failover takes: go quiet.
            if let Some(since) = self.upstream_lost_at
                && !self.local
                && self.clock.now().duration_since(since)
                    >= self.cfg.heartbeat * self.cfg.dead_after * 4
                && self.heads.set_live(false)
            {
                warn!(node = %self.cfg.name, "no upstream; pausing heartbeats so children move to a standby");
            }
            // Children's requests never wait behind a busy tick flow.
            for _ in 0..1024 {
                match hub_rx.try_recv() {
                    Ok(m) => self.on_hub_msg(m),
                    Err(_) => break,
                }
            }
            if self.standby.as_ref().is_some_and(|s| s.promote) {
                // The primary origin is dead: stop listening for it, number from here on.
                link_shutdown.cancel();
                link = None;
                self.upstream = None;
                local_rx = after_takeover.take();
                self.take_over();
            }
        }
        for c in self.children.values() {
            c.conn.close(tickcast_transport::CLOSE_OK, b"shutdown");
        }
    }

    /// Starts one link per feed (each a list of candidate upstreams). Each channel resumes
    /// at the first seq this node still lacks, so a failover loses nothing the new parent
    /// holds.
    fn subscribe(
        &mut self,
        feeds: Vec<Vec<tickcast_client::Upstream>>,
        shutdown: &CancellationToken,
    ) -> Feeds {
        let cfgs = feeds.into_iter().map(|u| self.link_config(u)).collect();
        let resume = resume_from_points(self.resume.clone());
        let feeds = Feeds::spawn(cfgs, self.endpoint.clone(), resume, 1024, shutdown.clone());
        self.upstream = Some(feeds.cmds.clone());
        feeds
    }

    fn link_config(&self, upstreams: Vec<tickcast_client::Upstream>) -> LinkConfig {
        LinkConfig {
            name: self.cfg.name.clone(),
            role: Role::Relay,
            upstreams,
            heartbeat: self.cfg.heartbeat,
            dead_after: self.cfg.dead_after,
            connect_timeout: Duration::from_secs(2),
            retry_pause: self.cfg.heartbeat,
        }
    }

    fn update_resume(&mut self) {
        {
            let mut r = self.resume.lock().expect("resume lock");
            for (c, ch) in &self.chans {
                if ch.tracker.is_started() {
                    r.insert(*c, Some(ch.tracker.next_expected()));
                }
            }
        }
        // A standby origin tells the primary what it now holds (contiguously).
        if let (Some(sb), Some(up)) = (&mut self.standby, &self.upstream) {
            let mut heads = Vec::new();
            for (c, ch) in &self.chans {
                let Some(&from) = sb.live_from.get(c) else {
                    continue;
                };
                let held = held_from(&ch.tracker, from);
                if ch.tracker.is_started() && sb.confirmed.get(c) != Some(&held) {
                    sb.confirmed.insert(*c, held);
                    heads.push(ChannelHead {
                        channel: *c,
                        head: held,
                    });
                }
            }
            if !heads.is_empty() {
                up.send_all(Control::Confirm { heads });
            }
        }
    }

    // ---- ticks entering this node ----

    /// Numbered ticks from the local sequencer (origin). With a standby origin connected
    /// they go to it first and wait for its confirmation; otherwise they are committed now.
    fn on_local(&mut self, batch: Vec<crate::Sequenced>) {
        let mut to_standby: Vec<Tick> = Vec::new();
        let mut marks: BTreeMap<Arc<str>, Control> = BTreeMap::new();
        for s in batch {
            let t = &s.tick;
            let Some(ch) = self.chans.get_mut(&t.channel) else {
                continue;
            };
            self.stats.received.fetch_add(1, Relaxed);
            self.max_epoch = self.max_epoch.max(t.epoch);
            // The sequencer never repeats a seq; keep the tracker's view in step anyway so
            // that `next_expected` means the same thing on every node.
            let _ = ch.tracker.on_seq(self.clock.now(), t.seq);
            ch.ring.insert(t.clone());
            if self.gate.child.is_some() {
                to_standby.push(t.clone());
                if let Some(p) = &s.publish {
                    // Only the latest mark per publisher matters; ids only grow.
                    marks.insert(
                        p.publisher.clone(),
                        Control::PublishMark {
                            publisher: p.publisher.to_string(),
                            id: p.id,
                            channel: t.channel,
                            seq: t.seq,
                        },
                    );
                }
                self.gate.pending.push_back(s);
            } else {
                self.commit(s);
            }
        }
        if let Some(standby) = self.gate.child {
            let frames: Vec<Bytes> = marks.values().map(codec::encode_control_frame).collect();
            self.send_ticks_to(standby, to_standby);
            if !frames.is_empty() {
                self.send_to(standby, Out::Frames(frames));
            }
        }
    }

    /// A tick is safe (the standby holds it, or there is no standby): announce it, send it
    /// to every child, acknowledge its publisher.
    fn commit(&mut self, s: crate::Sequenced) {
        let t = s.tick;
        let Some(ch) = self.chans.get_mut(&t.channel) else {
            return;
        };
        ch.head = ch.head.max(t.seq);
        self.heads.set(t.channel, ch.head);
        ch.batch.push(t);
        if let Some(p) = s.publish {
            p.ack.send_if_modified(|v| {
                let newer = p.id > *v;
                *v = (*v).max(p.id);
                newer
            });
        }
    }

    /// The standby origin holds everything up to `heads`: commit what waited for it.
    fn on_confirm(&mut self, child: u64, heads: Vec<ChannelHead>) {
        if self.gate.child != Some(child) {
            return;
        }
        let held: BTreeMap<ChannelId, Seq> = heads.iter().map(|h| (h.channel, h.head)).collect();
        while let Some(front) = self.gate.pending.front() {
            let ok = held
                .get(&front.tick.channel)
                .is_some_and(|h| *h >= front.tick.seq);
            if !ok {
                break;
            }
            let s = self.gate.pending.pop_front().expect("front");
            self.commit(s);
        }
        self.flush_batches();
    }

    /// The standby origin left: commit what waited for it (running unconfirmed until it is
    /// back beats stopping the feed).
    fn release_gate(&mut self) {
        self.gate.child = None;
        let pending = std::mem::take(&mut self.gate.pending);
        if !pending.is_empty() {
            warn!(node = %self.cfg.name, waiting = pending.len(), "standby origin gone; publishing unconfirmed");
        }
        for s in pending {
            self.commit(s);
        }
        self.flush_batches();
    }

    /// Standby origin: the primary is dead. Keep what this node holds contiguously, drop
    /// anything above it (the new epoch numbers those seqs afresh), and report where
    /// numbering continues and which publisher records are already numbered.
    fn take_over(&mut self) {
        let Some(mut sb) = self.standby.take() else {
            return;
        };
        let epoch = self.max_epoch.max(1) + 1;
        let mut heads = BTreeMap::new();
        for (c, ch) in self.chans.iter_mut() {
            let head = match sb.live_from.get(c) {
                Some(&from) if ch.tracker.is_started() => held_from(&ch.tracker, from),
                _ => 0,
            };
            // History the primary never got to replay to us is gone for good: say so when
            // asked, rather than leave it looking like a repair in progress.
            for g in ch.tracker.missing().filter(|g| g.first <= head) {
                let lost = SeqRange::new(g.first, g.last.min(head));
                warn!(node = %self.cfg.name, channel = *c, range = %lost, "history not held at takeover");
                ch.lost.insert(lost.first, lost.last);
            }
            ch.ring.truncate_above(head);
            ch.tracker = GapTracker::new(self.cfg.gap);
            ch.tracker.start_at(head + 1);
            ch.head = head;
            ch.early.clear();
            self.heads.set(*c, head);
            heads.insert(*c, head);
        }
        let published = sb
            .marks
            .iter()
            .filter_map(|(p, marks)| {
                marks
                    .iter()
                    .filter(|(_, c, seq)| heads.get(c).is_some_and(|h| seq <= h))
                    .map(|(id, _, _)| *id)
                    .max()
                    .map(|id| (p.clone(), id))
            })
            .collect();
        self.local = true;
        self.max_epoch = epoch;
        warn!(node = %self.cfg.name, epoch, ?heads, "primary origin dead: taking over");
        if let Some(tx) = sb.takeover.take() {
            let _ = tx.send(crate::Takeover {
                heads,
                epoch,
                published,
            });
        }
        self.cfg.serving.store(true, Relaxed);
    }

    fn on_inbound(&mut self, now: Instant, feed: usize, m: Inbound) {
        match m {
            Inbound::Connected {
                upstream,
                welcome,
                rtt,
            } => {
                self.stats.upstream_connects.fetch_add(1, Relaxed);
                info!(node = %self.cfg.name, %upstream, "upstream connected");
                self.feeds_up.insert(feed);
                self.upstream_lost_at = None;
                if self.heads.set_live(true) {
                    info!(node = %self.cfg.name, "upstream back; heartbeats resume");
                }
                if let Some(sb) = &mut self.standby {
                    sb.was_connected = true;
                    sb.confirmed.clear(); // tell the (new) session what we hold
                    for st in &welcome.channels {
                        sb.live_from.entry(st.channel).or_insert(st.head + 1);
                    }
                }
                for st in welcome.channels {
                    let Some(ch) = self.chans.get_mut(&st.channel) else {
                        continue;
                    };
                    if !ch.tracker.is_started() {
                        // A node joining a running network starts at the live head; older
                        // ranges are fetched from the parent when a child asks for them.
                        ch.tracker.start_at(st.head + 1);
                        ch.ring = Ring::new(self.cfg.ring, st.head + 1);
                        // Ticks up to the upstream's head exist (this node can fetch them):
                        // announce them, so children resuming from before our start ask.
                        ch.head = ch.head.max(st.head);
                        self.heads.set(st.channel, ch.head);
                    }
                    if let Err(e) = ch.tracker.on_head(now, st.head) {
                        self.reconnect(feed, format!("welcome head: {e}"));
                        return;
                    }
                    ch.tracker
                        .set_retry(tickcast_proto::gap::nack_retry_for(rtt));
                    // The new session replays from our resume point by itself.
                    ch.tracker
                        .renack_all(now + (rtt * 4).max(Duration::from_millis(100)));
                    // Fetches pending on the old session are asked again of the new one.
                    for (r, f) in ch.fetches.iter_mut() {
                        f.asked = now;
                        if let Some(up) = &self.upstream {
                            up.send_to(
                                feed,
                                Control::Nack {
                                    channel: st.channel,
                                    ranges: vec![*r],
                                },
                            );
                        }
                    }
                    for t in std::mem::take(&mut ch.early) {
                        match self.accept(now, &t) {
                            Ok(true) => self
                                .chans
                                .get_mut(&t.channel)
                                .expect("channel")
                                .batch
                                .push(t),
                            Ok(false) => {}
                            Err(e) => {
                                self.reconnect(feed, e);
                                return;
                            }
                        }
                    }
                }
            }
            Inbound::Datagram { raw, ticks } => {
                let channel = ticks[0].channel;
                let same_channel = ticks.iter().all(|t| t.channel == channel);
                // Answers to this node's NACKs: every child is waiting for them too, so
                // they travel on as redundant copies. (Not every gap-filling copy: a late
                // copy from a second feed fills gaps nobody has asked about yet.)
                let repair = self.chans.get(&channel).is_some_and(|c| {
                    c.tracker.is_started() && ticks.iter().any(|t| c.tracker.is_nacked(t.seq))
                });
                let mut all_new = same_channel;
                let mut fresh = Vec::with_capacity(ticks.len());
                for t in ticks {
                    match self.accept(now, &t) {
                        Ok(true) => fresh.push(t),
                        Ok(false) => all_new = false,
                        Err(e) => {
                            self.reconnect(feed, e);
                            return;
                        }
                    }
                }
                if repair && same_channel {
                    for id in self.subscribers(channel) {
                        self.send_repair(id, fresh.clone());
                    }
                } else if all_new {
                    // Forward the upstream's datagram untouched: no re-encoding, no copies.
                    self.stats.forwarded_raw.fetch_add(1, Relaxed);
                    self.fan_out_datagram(channel, &raw, &fresh);
                } else {
                    for t in fresh {
                        if let Some(ch) = self.chans.get_mut(&t.channel) {
                            ch.batch.push(t);
                        }
                    }
                }
            }
            Inbound::StreamTick(t) => match self.accept(now, &t) {
                Ok(true) => {
                    if let Some(ch) = self.chans.get_mut(&t.channel) {
                        ch.batch.push(t);
                    }
                }
                Ok(false) => self.answer_fetches(&t),
                Err(e) => self.reconnect(feed, e),
            },
            Inbound::Heads(heads) => {
                for h in heads {
                    let Some(ch) = self.chans.get_mut(&h.channel) else {
                        continue;
                    };
                    if let Err(e) = ch.tracker.on_head(now, h.head) {
                        self.reconnect(feed, format!("heartbeat head: {e}"));
                        return;
                    }
                }
            }
            Inbound::Unavailable { channel, range } => self.on_unavailable(channel, range),
            Inbound::Disconnected { upstream, reason } => {
                debug!(node = %self.cfg.name, %upstream, %reason, "upstream session ended");
                self.feeds_up.remove(&feed);
                if self.feeds_up.is_empty() && self.upstream_lost_at.is_none() {
                    self.upstream_lost_at = Some(now);
                }
                if let Some(sb) = &mut self.standby
                    && sb.was_connected
                {
                    sb.promote = true;
                }
            }
            Inbound::Mark {
                publisher,
                id,
                channel,
                seq,
            } => {
                if let Some(sb) = &mut self.standby {
                    let q = sb.marks.entry(publisher).or_default();
                    q.push_back((id, channel, seq));
                    // Keep the marks the takeover may need: those above what is confirmed,
                    // plus the newest at or below it.
                    let confirmed = sb.confirmed.get(&channel).copied().unwrap_or(0);
                    while q.len() > 1
                        && q.get(1)
                            .is_some_and(|(_, c, s)| *c == channel && *s <= confirmed)
                    {
                        q.pop_front();
                    }
                }
            }
        }
    }

    /// Checks a tick from upstream; stores it if new. `Ok(true)`: new, to be forwarded.
    fn accept(&mut self, now: Instant, t: &Tick) -> Result<bool, String> {
        let Some(ch) = self.chans.get_mut(&t.channel) else {
            return Ok(false);
        };
        // An older epoch's tick below where the new epoch's numbering starts is history the
        // new origin inherited (a replay or repair of it): keep it. At or above, the new
        // epoch numbers that seq afresh: refuse it (never two different ticks for one seq).
        if t.epoch < self.max_epoch && t.seq >= ch.epoch_floor {
            self.stats.superseded.fetch_add(1, Relaxed);
            return Ok(false);
        }
        if t.epoch > self.max_epoch {
            self.max_epoch = t.epoch;
            for c in self.chans.values_mut() {
                c.epoch_floor = Seq::MAX;
            }
        }
        let Some(ch) = self.chans.get_mut(&t.channel) else {
            return Ok(false);
        };
        if t.epoch == self.max_epoch {
            ch.epoch_floor = ch.epoch_floor.min(t.seq);
        }
        if !ch.tracker.is_started() {
            // Live datagrams can overtake the welcome: keep them (bounded) for after it.
            if ch.early.len() < self.cfg.ring.max_ticks {
                ch.early.push(t.clone());
            }
            return Ok(false);
        }
        match ch
            .tracker
            .on_seq(now, t.seq)
            .map_err(|e| format!("upstream {e}"))?
        {
            Arrival::New => {
                self.stats.received.fetch_add(1, Relaxed);
                ch.head = ch.head.max(t.seq);
                self.heads.set(t.channel, ch.head);
                self.heads.set(t.channel, ch.head);
                if ch.ring.insert(t.clone()) == Insert::Duplicate {
                    return Ok(false);
                }
                Ok(true)
            }
            Arrival::Duplicate => {
                self.stats.duplicates.fetch_add(1, Relaxed);
                Ok(false)
            }
        }
    }

    fn reconnect(&self, feed: usize, reason: String) {
        warn!(node = %self.cfg.name, feed, %reason, "upstream misbehaved, switching");
        if let Some(up) = &self.upstream {
            up.reconnect(feed, reason);
        }
    }

    /// Upstream says nobody has `range`: what this node was missing is lost for good;
    /// children are told at once, and pending fetches for it are answered.
    fn on_unavailable(&mut self, channel: ChannelId, range: SeqRange) {
        let Some(ch) = self.chans.get_mut(&channel) else {
            return;
        };
        let lost = ch.tracker.resolve_lost(range);
        for r in &lost {
            warn!(node = %self.cfg.name, channel, range = %r, "range lost upstream");
            self.stats.lost.fetch_add(r.len(), Relaxed);
            ch.lost.insert(r.first, r.last);
        }
        let mut waiting: BTreeSet<u64> = BTreeSet::new();
        ch.fetches.retain(|fr, f| {
            if fr.intersect(&range).is_some() {
                waiting.extend(f.children.iter().copied());
                false
            } else {
                true
            }
        });
        let broadcast = self.subscribers(channel);
        for r in lost {
            let frame = codec::encode_control_frame(&Control::Unavailable { channel, range: r });
            for id in &broadcast {
                self.send_to(*id, Out::Frames(vec![frame.clone()]));
            }
        }
        let frame = codec::encode_control_frame(&Control::Unavailable { channel, range });
        for id in waiting {
            self.send_to(id, Out::Frames(vec![frame.clone()]));
        }
    }

    /// A tick below this node's own window arrived: it answers children's fetches.
    fn answer_fetches(&mut self, t: &Tick) {
        let Some(ch) = self.chans.get_mut(&t.channel) else {
            return;
        };
        let mut to: BTreeSet<u64> = BTreeSet::new();
        ch.fetches.retain(|r, f| {
            if r.contains(t.seq) {
                to.extend(f.children.iter().copied());
            }
            !(r.contains(t.seq) && t.seq == r.last)
        });
        if to.is_empty() {
            return;
        }
        let frames = tick_frames(std::slice::from_ref(t));
        for id in to {
            self.stats.repaired_out.fetch_add(1, Relaxed);
            self.send_to(id, Out::Frames(frames.clone()));
        }
    }

    // ---- ticks leaving this node ----

    /// Sends a datagram of `channel` to every child subscribed to it.
    fn fan_out_datagram(&mut self, channel: ChannelId, dgram: &Bytes, ticks: &[Tick]) {
        for id in self.subscribers(channel) {
            self.send_datagram_to(id, dgram.clone(), ticks);
        }
    }

    /// Batches what each channel collected in this round into datagrams (no waiting: only
    /// what is already here) and sends them; ticks too large for a datagram go on streams.
    fn flush_batches(&mut self) {
        let channels: Vec<ChannelId> = self.chans.keys().copied().collect();
        for channel in channels {
            let batch = std::mem::take(&mut self.chans.get_mut(&channel).expect("channel").batch);
            if batch.is_empty() {
                continue;
            }
            let (dgrams, large) = self.pack(batch);
            for (d, ticks) in dgrams {
                self.fan_out_datagram(channel, &d, &ticks);
            }
            for t in large {
                self.fan_out_stream(channel, t);
            }
        }
    }

    /// Packs ticks of one channel into as few datagrams as fit; ticks too large for any
    /// datagram come back separately (they travel on streams).
    fn pack(&self, ticks: Vec<Tick>) -> (Vec<(Bytes, Vec<Tick>)>, Vec<Tick>) {
        self.pack_for(ticks, self.datagram_size())
    }

    /// The datagram size every child can take: the smallest path limit, capped.
    fn datagram_size(&self) -> usize {
        self.children
            .values()
            .filter_map(|c| c.conn.max_datagram_size())
            .min()
            .unwrap_or(1150)
            .min(self.cfg.max_datagram)
    }

    /// [`pack`](Self::pack) for datagrams of at most `size` bytes.
    fn pack_for(&self, ticks: Vec<Tick>, size: usize) -> (Vec<(Bytes, Vec<Tick>)>, Vec<Tick>) {
        let mut b = DatagramBuilder::new(size);
        let mut out = Vec::new();
        let mut large = Vec::new();
        let mut in_dgram: Vec<Tick> = Vec::new();
        for t in ticks {
            if codec::single_tick_datagram_len(t.payload.len()) > size {
                large.push(t);
                continue;
            }
            if !b.fits(&t) {
                let d = b.finish().expect("non-empty batch");
                out.push((d, std::mem::take(&mut in_dgram)));
            }
            b.push(&t);
            in_dgram.push(t);
        }
        if let Some(d) = b.finish() {
            out.push((d, in_dgram));
        }
        (out, large)
    }

    /// Sends ticks (possibly of several channels) to one child only.
    fn send_ticks_to(&mut self, child: u64, ticks: Vec<Tick>) {
        let mut by_channel: BTreeMap<ChannelId, Vec<Tick>> = BTreeMap::new();
        for t in ticks {
            by_channel.entry(t.channel).or_default().push(t);
        }
        for (_, ticks) in by_channel {
            let (dgrams, large) = self.pack(ticks);
            for (d, ticks) in dgrams {
                self.send_datagram_to(child, d, &ticks);
            }
            for t in large {
                self.send_to(child, Out::Uni(codec::encode_tick_frame(&t).into()));
            }
        }
    }

    /// One datagram to one child. If its path takes less (an upstream datagram bigger than
    /// this child's MTU), the ticks are re-packed to its size; a tick too big for any
    /// datagram goes on a stream.
    fn send_datagram_to(&mut self, child: u64, d: Bytes, ticks: &[Tick]) {
        let Some(c) = self.children.get(&child) else {
            return;
        };
        match c.conn.send_datagram(d) {
            Ok(()) => {
                self.stats.datagrams_out.fetch_add(1, Relaxed);
            }
            Err(SendDatagramError::TooLarge) => {
                let size = c.conn.max_datagram_size().unwrap_or(0);
                let (dgrams, large) = self.pack_for(ticks.to_vec(), size);
                let c = &self.children[&child];
                for (d, _) in dgrams {
                    if c.conn.send_datagram(d).is_ok() {
                        self.stats.datagrams_out.fetch_add(1, Relaxed);
                    }
                }
                for t in large {
                    self.send_to(child, Out::Uni(codec::encode_tick_frame(&t).into()));
                }
            }
            Err(_) => {}
        }
    }

    /// Sends repaired ticks to one child. A short repair (the common case: a few lost
    /// packets) goes as redundant datagrams, so one more loss does not cost another round
    /// trip; a long one (a resume or catch-up) on its own reliable stream.
    fn send_repair(&mut self, child: u64, ticks: Vec<Tick>) {
        let Some(c) = self.children.get(&child) else {
            return;
        };
        let size = c
            .conn
            .max_datagram_size()
            .unwrap_or(0)
            .min(self.cfg.max_datagram);
        let bytes: usize = ticks.iter().map(|t| t.weight()).sum();
        if bytes > size * REPAIR_DATAGRAMS {
            self.stream_to(child, &ticks);
            return;
        }
        let (dgrams, large) = self.pack_for(ticks, size);
        let mut by_stream = Vec::new();
        if dgrams.len() > REPAIR_DATAGRAMS {
            by_stream.extend(dgrams.into_iter().flat_map(|(_, t)| t));
        } else {
            for (d, t) in dgrams {
                match tickcast_transport::send_datagram_copies(&self.children[&child].conn, d) {
                    Ok(()) => {
                        self.stats.datagrams_out.fetch_add(
                            tickcast_transport::redundant::COPY_OFFSETS.len() as u64,
                            Relaxed,
                        );
                    }
                    Err(_) => by_stream.extend(t),
                }
            }
        }
        by_stream.extend(large);
        if !by_stream.is_empty() {
            self.stream_to(child, &by_stream);
        }
    }

    /// The parts of `r` not already sent to `child` on a stream in this session.
    fn not_streamed(&self, child: u64, channel: ChannelId, r: SeqRange) -> Vec<SeqRange> {
        match self.streamed.get(&(child, channel)) {
            Some(set) => uncovered(set, r),
            None => vec![r],
        }
    }

    /// Ids of the children subscribed to `channel` that live ticks are fanned out to (all
    /// but a gating standby origin, which got them before they were committed).
    fn subscribers(&self, channel: ChannelId) -> Vec<u64> {
        self.children
            .iter()
            .filter(|(id, _)| self.gate.child != Some(**id))
            .filter(|(_, c)| c.hello.subscriptions.iter().any(|s| s.channel == channel))
            .map(|(id, _)| *id)
            .collect()
    }

    fn fan_out_stream(&mut self, channel: ChannelId, t: Tick) {
        for id in self.subscribers(channel) {
            self.send_to(id, Out::Uni(codec::encode_tick_frame(&t).into()));
        }
    }

    /// Queues work for one child's writer; a full queue means a slow child, whose loss is
    /// its own: it will NACK again, and nothing else waits for it. `false`: not queued.
    fn send_to(&mut self, id: u64, out: Out) -> bool {
        let Some(c) = self.children.get(&id) else {
            return false;
        };
        if c.writer.try_send(out).is_err() {
            self.stats.child_drops.fetch_add(1, Relaxed);
            return false;
        }
        true
    }

    /// Sends ticks to one child on a stream of their own and, if queued, remembers them
    /// as on their way (see `streamed`). A dropped answer is not remembered: the child's
    /// next NACK must get it.
    fn stream_to(&mut self, child: u64, ticks: &[Tick]) {
        if self.send_to(child, Out::Uni(tick_frames(ticks))) {
            for t in ticks {
                add_seq(self.streamed.entry((child, t.channel)).or_default(), t.seq);
            }
        }
    }

    fn send_nacks(&mut self) {
        let now = self.clock.now();
        let Some(up) = &self.upstream else { return };
        for (channel, ch) in self.chans.iter_mut() {
            while let Some(ranges) = ch.tracker.poll_nack(now) {
                self.stats.nacks_up.fetch_add(ranges.len() as u64, Relaxed);
                up.send_all(Control::Nack {
                    channel: *channel,
                    ranges,
                });
            }
        }
        // A parent that keeps announcing ticks without delivering them is failing: move on.
        if self.chans.values().any(|c| {
            c.tracker
                .stuck(now, self.cfg.stall_attempts, Duration::from_secs(1))
        }) {
            warn!(node = %self.cfg.name, "upstream announces ticks it does not deliver; switching");
            up.reconnect_all("announced ticks not delivered");
            for c in self.chans.values_mut() {
                c.tracker.renack_all(now);
            }
        }
    }

    // ---- children ----

    fn on_hub_msg(&mut self, m: HubMsg) {
        match m {
            HubMsg::Join(child) => self.join(child),
            HubMsg::Nack {
                child,
                channel,
                ranges,
            } => {
                self.stats.nacks_in.fetch_add(ranges.len() as u64, Relaxed);
                for r in ranges {
                    for piece in self.not_streamed(child, channel, r) {
                        self.answer(child, channel, piece);
                    }
                }
            }
            HubMsg::Confirm { child, heads } => self.on_confirm(child, heads),
            HubMsg::Gone { child } => {
                self.streamed.retain(|(c, _), _| *c != child);
                if let Some(c) = self.children.remove(&child) {
                    debug!(node = %self.cfg.name, child = %c.name, "child left");
                }
                if self.gate.child == Some(child) {
                    self.release_gate();
                }
                for ch in self.chans.values_mut() {
                    for f in ch.fetches.values_mut() {
                        f.children.remove(&child);
                    }
                    ch.fetches.retain(|_, f| !f.children.is_empty());
                }
            }
        }
    }

    /// Registers a child: welcome first, then (on resume) the replay, then live ticks. All
    /// in this one task, so no tick falls between the welcome's head and the live stream.
    fn join(&mut self, child: Child) {
        let states: Vec<ChannelState> = child
            .hello
            .subscriptions
            .iter()
            .filter_map(|s| {
                self.chans.get(&s.channel).map(|ch| ChannelState {
                    channel: s.channel,
                    head: ch.head,
                    oldest: ch
                        .ring
                        .oldest()
                        .unwrap_or(ch.head + 1)
                        .max(ch.ring.floor().min(ch.head + 1)),
                })
            })
            .collect();
        let welcome = codec::encode_control_frame(&Control::Welcome(Welcome {
            channels: states.clone(),
        }));
        if child.writer.try_send(Out::Frames(vec![welcome])).is_err() {
            return;
        }
        let id = child.id;
        let subs: Vec<Subscribe> = child.hello.subscriptions.clone();
        if self.local && self.cfg.standby.as_deref() == Some(child.name.as_str()) {
            // Our standby origin: from now on ticks wait for its confirmation.
            info!(node = %self.cfg.name, standby = %child.name, "standby origin connected; gating on its confirmations");
            self.gate.child = Some(id);
        }
        spawn_heartbeats(
            child.conn.clone(),
            subs.iter().map(|s| s.channel).collect(),
            self.heads.clone(),
            self.cfg.heartbeat,
        );
        self.children.insert(id, child);
        for (s, st) in subs.iter().zip(states) {
            if let Some(from) = s.resume_from
                && from <= st.head
            {
                self.answer(id, s.channel, SeqRange::new(from.max(1), st.head));
            }
        }
    }

    /// Answers one requested range for one child: from the ring what it holds; what fell
    /// below it is fetched from the parent (or unavailable at the origin); ranges this node
    /// lost are unavailable; ranges it is still repairing will reach the child live.
    fn answer(&mut self, child: u64, channel: ChannelId, r: SeqRange) {
        let now = self.clock.now();
        let Some(ch) = self.chans.get_mut(&channel) else {
            return;
        };
        // Children see committed ticks only; the gating standby origin sees all it is sent.
        let limit = if self.gate.child == Some(child) {
            ch.ring.newest().unwrap_or(ch.head).max(ch.head)
        } else {
            ch.head
        };
        if r.first > limit {
            return; // nothing of it exists here yet
        }
        let r = SeqRange::new(r.first, r.last.min(limit));
        let look = ch.ring.lookup(r, self.cfg.max_answer);
        let mut unavailable: Vec<SeqRange> = Vec::new();
        let mut fetch: Option<SeqRange> = None;
        if let Some(ev) = look.evicted {
            if self.local {
                unavailable.push(ev);
            } else {
                fetch = Some(ev);
            }
        }
        for h in &look.holes {
            // Parts this node gave up on are unavailable; parts it is still repairing
            // reach every child through the live path once repaired.
            for (&f, &l) in ch.lost.range(..=h.last) {
                if let Some(x) = SeqRange::new(f, l).intersect(h) {
                    unavailable.push(x);
                }
            }
        }
        if let Some(ev) = fetch {
            // One upstream request per range, however many children wait for it.
            let entry = ch.fetches.entry(ev).or_insert_with(|| Fetch {
                children: BTreeSet::new(),
                asked: now - Duration::from_secs(3600),
            });
            entry.children.insert(child);
            if now.duration_since(entry.asked) > self.cfg.heartbeat * 4 {
                entry.asked = now;
                if let Some(up) = &self.upstream {
                    self.stats.nacks_up.fetch_add(1, Relaxed);
                    up.send_all(Control::Nack {
                        channel,
                        ranges: vec![ev],
                    });
                }
            }
        }
        if !look.ticks.is_empty() {
            self.stats
                .repaired_out
                .fetch_add(look.ticks.len() as u64, Relaxed);
            self.send_repair(child, look.ticks);
        }
        for u in unavailable {
            self.stats.unavailable_out.fetch_add(1, Relaxed);
            self.send_to(
                child,
                Out::Frames(vec![codec::encode_control_frame(&Control::Unavailable {
                    channel,
                    range: u,
                })]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_ranges_are_subtracted_from_a_repeated_nack() {
        let mut set = BTreeMap::new();
        for seq in (10..=20).chain(30..=35) {
            add_seq(&mut set, seq);
        }
        assert_eq!(set.len(), 2, "runs merge into ranges");
        let r = |a, b| SeqRange::new(a, b);
        assert_eq!(
            uncovered(&set, r(1, 40)),
            vec![r(1, 9), r(21, 29), r(36, 40)]
        );
        assert_eq!(uncovered(&set, r(12, 18)), vec![]);
        assert_eq!(uncovered(&set, r(15, 32)), vec![r(21, 29)]);
        assert_eq!(uncovered(&set, r(36, 36)), vec![r(36, 36)]);
        assert_eq!(uncovered(&BTreeMap::new(), r(5, 6)), vec![r(5, 6)]);
        for seq in (1000..3000).step_by(2) {
            add_seq(&mut set, seq);
        }
        assert_eq!(set.len(), 256, "bounded");
    }
}
