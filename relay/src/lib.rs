//! tickcast relay node: keeps a ring of recent ticks, fans live ticks out to its children
//! (child relays, consumers, its standby sibling) and repairs their gaps from its ring.
//!
//! Where things happen:
//! - [`server`] accepts connections, checks who the peer is (certificate name, role in the
//!   topology) and runs one reader and one writer task per child;
//! - [`hub`] is the single task that owns the ring, the upstream gap tracker and the list
//!   of children: every tick is stored, forwarded and repaired there;
//! - upstream is either a parent (through `tickcast_client::link`, the same machinery
//!   consumers use) or, for the origin, a local channel fed by the sequencer.

pub mod hub;
pub mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use quinn::Endpoint;
use tickcast_client::Upstream;
use tickcast_proto::codec::Role;
use tickcast_proto::gap::GapConfig;
use tickcast_proto::topology::RingLimits;
use tickcast_proto::{ChannelId, Clock, Tick};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use server::PublisherSession;

/// Decides whether a peer that proved `name` (by certificate) may connect in `role`.
pub type Authorize = Arc<dyn Fn(&str, Role) -> Result<(), String> + Send + Sync>;

/// A numbered tick from the origin's sequencer, with the publisher record it came from
/// (acknowledged to the publisher once the tick is committed).
#[derive(Debug)]
pub struct Sequenced {
    /// The tick.
    pub tick: Tick,
    /// The publisher record, if a QUIC publisher sent it.
    pub publish: Option<PublishRef>,
}

/// Which publisher record a tick is, and where to acknowledge it.
#[derive(Debug, Clone)]
pub struct PublishRef {
    /// Publisher name.
    pub publisher: Arc<str>,
    /// The publisher's record id.
    pub id: u64,
    /// Receives the highest id committed.
    pub ack: tokio::sync::watch::Sender<u64>,
}

/// What a standby origin knows when it takes over: where to continue numbering, under
/// which epoch, and which publisher records are already numbered.
#[derive(Debug, Clone, Default)]
pub struct Takeover {
    /// Last seq held (contiguously) per channel: numbering continues after it.
    pub heads: std::collections::BTreeMap<ChannelId, tickcast_proto::Seq>,
    /// The new epoch (higher than any seen).
    pub epoch: u32,
    /// Highest publisher record id numbered (at or below `heads`), per publisher.
    pub published: std::collections::BTreeMap<String, u64>,
}

/// Where a node's ticks come from.
pub enum Source {
    /// Subscribe upstream through one or more feeds at once, each a list of candidates
    /// tried in order. Ticks from any feed count, first copy wins (a standby relay has two:
    /// its primary, and its primary's parent).
    Parents(Vec<Vec<Upstream>>),
    /// Numbered ticks from the local sequencer (the origin).
    Local(mpsc::Receiver<Vec<Sequenced>>),
    /// A standby origin: subscribes to the primary origin (and confirms what it holds)
    /// until the primary is declared dead; then reports a [`Takeover`] and serves what the
    /// local sequencer numbers from then on.
    Standby {
        /// The primary origin.
        primary: Upstream,
        /// Where the takeover is reported.
        takeover: tokio::sync::oneshot::Sender<Takeover>,
        /// Ticks the local sequencer numbers after the takeover.
        local: mpsc::Receiver<Vec<Sequenced>>,
    },
}

/// Relay settings.
#[derive(Clone)]
pub struct RelayConfig {
    /// Our topology name.
    pub name: String,
    /// Channels carried.
    pub channels: Vec<ChannelId>,
    /// Ring limits per channel.
    pub ring: RingLimits,
    /// Heartbeat interval toward children (and expected from the parent).
    pub heartbeat: Duration,
    /// Missed heartbeats before the parent is declared dead.
    pub dead_after: u32,
    /// Gap tracking toward the parent.
    pub gap: GapConfig,
    /// Cap on the datagrams built (bytes). The size actually used is the smallest that every
    /// child's path takes (QUIC's path-MTU discovery), so on a 1500-byte path this is about
    /// 1.4 KB and on loopback several KB: fewer packets per tick where the path allows.
    pub max_datagram: usize,
    /// Messages queued per child writer before answers to that child are dropped.
    pub child_queue: usize,
    /// Most ticks sent in answer to one NACK range (the child asks again for the rest).
    pub max_answer: usize,
    /// NACKs for one gap without an answer before the parent is abandoned as failing.
    pub stall_attempts: u32,
    /// Who may connect.
    pub authorize: Authorize,
    /// Where publisher connections go (the origin sets this; relays refuse publishers).
    pub publishers: Option<mpsc::Sender<PublisherSession>>,
    /// (Origin) the standby origin's name: ticks reach everyone else, and publishers are
    /// acknowledged, only once it confirms holding them.
    pub standby: Option<String>,
    /// Whether this node accepts children and publishers (a standby origin waits until it
    /// takes over, so nothing it holds unconfirmed leaks).
    pub serving: Arc<std::sync::atomic::AtomicBool>,
}

impl RelayConfig {
    /// Settings with defaults for everything but name, channels, ring and authorization.
    pub fn new(
        name: impl Into<String>,
        channels: Vec<ChannelId>,
        ring: RingLimits,
        authorize: Authorize,
    ) -> Self {
        RelayConfig {
            name: name.into(),
            channels,
            ring,
            heartbeat: Duration::from_millis(50),
            dead_after: 3,
            gap: GapConfig::default(),
            max_datagram: 16 * 1024,
            child_queue: 4096,
            max_answer: 8192,
            stall_attempts: 10,
            authorize,
            publishers: None,
            standby: None,
            serving: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }
}

/// Counters of one relay, readable while it runs.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// New ticks received from upstream (or the sequencer).
    pub received: AtomicU64,
    /// Upstream copies dropped as duplicates.
    pub duplicates: AtomicU64,
    /// Datagrams sent to children.
    pub datagrams_out: AtomicU64,
    /// Upstream datagrams forwarded byte-for-byte.
    pub forwarded_raw: AtomicU64,
    /// NACK ranges received from children.
    pub nacks_in: AtomicU64,
    /// Ticks resent to children from the ring.
    pub repaired_out: AtomicU64,
    /// Ranges answered "unavailable".
    pub unavailable_out: AtomicU64,
    /// NACK ranges sent upstream (own gaps and fetches for children).
    pub nacks_up: AtomicU64,
    /// Seqs this relay itself could not recover.
    pub lost: AtomicU64,
    /// Messages to children dropped because the child's queue was full (slow child).
    pub child_drops: AtomicU64,
    /// Children currently connected.
    pub children: AtomicU64,
    /// Ticks refused because a newer origin epoch was already seen (no split brain).
    pub superseded: AtomicU64,
    /// Upstream sessions started.
    pub upstream_connects: AtomicU64,
}

impl RelayStats {
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// A relay node: build with [`Relay::new`], drive with [`Relay::run`].
pub struct Relay {
    cfg: RelayConfig,
    endpoint: Endpoint,
    clock: Arc<dyn Clock>,
    source: Source,
    stats: Arc<RelayStats>,
}

impl Relay {
    /// A relay serving on `endpoint` (already bound, with a server config) fed by `source`.
    pub fn new(
        cfg: RelayConfig,
        endpoint: Endpoint,
        clock: Arc<dyn Clock>,
        source: Source,
    ) -> Self {
        Relay {
            cfg,
            endpoint,
            clock,
            source,
            stats: Arc::new(RelayStats::default()),
        }
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` is cancelled; then closes every child connection.
    pub async fn run(self, shutdown: CancellationToken) {
        let Relay {
            cfg,
            endpoint,
            clock,
            source,
            stats,
        } = self;
        let (hub_tx, hub_rx) = mpsc::channel(4096);
        let accept = tokio::spawn(server::accept_loop(
            cfg.clone(),
            endpoint.clone(),
            hub_tx,
            stats.clone(),
            shutdown.clone(),
        ));
        hub::Hub::new(cfg, endpoint.clone(), clock, stats)
            .run(source, hub_rx, shutdown)
            .await;
        let _ = accept.await;
        // Release the UDP port only once peers have been told (bounded: a dead peer never
        // acknowledges the close).
        endpoint.close(tickcast_transport::CLOSE_OK, b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    }
}
