//! tickcast origin: where ticks enter the network and are numbered.
//!
//! Ingest paths (all end in the same FIFO, so their ticks are numbered in arrival order):
//! the embedded [`OriginHandle`], publishers over QUIC (`tickcast_client::Publisher`),
//! JSON lines ([`ingest::parse_json_line`], used by the binary for stdin) and the
//! [`synthetic`] generator. The sequencer task numbers each tick (per channel, from 1, no
//! holes), stamps the origin time and passes it to a relay hub whose upstream is that
//! sequencer: from there on the origin is a relay like any other (ring, fan-out, repair).

pub mod ingest;
pub mod synthetic;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use quinn::Endpoint;
use tickcast_proto::sequencer::Sequencer;
use tickcast_proto::{ChannelId, Clock, Tick};
use tickcast_relay::{Relay, RelayConfig, RelayStats, Source};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Origin settings: those of its relay part, plus the numbering epoch.
#[derive(Clone)]
pub struct OriginConfig {
    /// The serving side (name, channels, ring, heartbeat, who may connect).
    pub relay: RelayConfig,
    /// Epoch stamped on every tick.
    pub epoch: u32,
    /// Ingest records queued before publishers wait.
    pub ingest_capacity: usize,
}

/// One unit of ingest.
#[derive(Debug)]
pub enum Ingest {
    /// From the embedded API, stdin or the generator.
    Local {
        /// Channel.
        channel: ChannelId,
        /// Payload.
        payload: Bytes,
    },
    /// From a QUIC publisher: numbered once per (publisher, id), acknowledged after.
    Published {
        /// Publisher name.
        publisher: Arc<str>,
        /// Publisher's record id.
        id: u64,
        /// Channel.
        channel: ChannelId,
        /// Payload.
        payload: Bytes,
        /// Where the sequencer reports the highest id numbered.
        ack: watch::Sender<u64>,
    },
}

/// Why ingest failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The origin has stopped.
    #[error("origin stopped")]
    Closed,
    /// The channel is not configured.
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// Payload over 256 KiB.
    #[error("payload of {0} bytes exceeds the 256 KiB limit")]
    TooLarge(usize),
}

/// The embedded publishing API; cheap to clone.
#[derive(Clone)]
pub struct OriginHandle {
    tx: mpsc::Sender<Ingest>,
    channels: Arc<[ChannelId]>,
}

impl OriginHandle {
    /// Queues a tick for numbering; waits while the ingest queue is full.
    pub async fn publish(&self, channel: ChannelId, payload: Bytes) -> Result<(), IngestError> {
        if !self.channels.contains(&channel) {
            return Err(IngestError::UnknownChannel(channel));
        }
        if payload.len() > tickcast_proto::tick::MAX_PAYLOAD {
            return Err(IngestError::TooLarge(payload.len()));
        }
        self.tx
            .send(Ingest::Local { channel, payload })
            .await
            .map_err(|_| IngestError::Closed)
    }
}

/// An origin node: build with [`Origin::new`], drive with [`Origin::run`].
pub struct Origin {
    cfg: OriginConfig,
    relay: Relay,
    clock: Arc<dyn Clock>,
    ingest_tx: mpsc::Sender<Ingest>,
    ingest_rx: mpsc::Receiver<Ingest>,
    hub_tx: mpsc::Sender<Vec<Tick>>,
    publishers: mpsc::Receiver<tickcast_relay::PublisherSession>,
}

impl Origin {
    /// An origin serving on `endpoint`.
    pub fn new(mut cfg: OriginConfig, endpoint: Endpoint, clock: Arc<dyn Clock>) -> Self {
        let (ingest_tx, ingest_rx) = mpsc::channel(cfg.ingest_capacity.max(1));
        let (hub_tx, hub_rx) = mpsc::channel(1024);
        let (pub_tx, publishers) = mpsc::channel(16);
        cfg.relay.publishers = Some(pub_tx);
        let relay = Relay::new(
            cfg.relay.clone(),
            endpoint,
            clock.clone(),
            Source::Local(hub_rx),
        );
        Origin {
            cfg,
            relay,
            clock,
            ingest_tx,
            ingest_rx,
            hub_tx,
            publishers,
        }
    }

    /// The embedded publishing API.
    pub fn handle(&self) -> OriginHandle {
        OriginHandle {
            tx: self.ingest_tx.clone(),
            channels: self.cfg.relay.channels.clone().into(),
        }
    }

    /// Live counters of the serving side.
    pub fn stats(&self) -> Arc<RelayStats> {
        self.relay.stats()
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let Origin {
            cfg,
            relay,
            clock,
            ingest_tx,
            ingest_rx,
            hub_tx,
            mut publishers,
        } = self;
        let seq = Sequencer::new(cfg.epoch, cfg.relay.channels.iter().copied());
        tokio::spawn(sequence(seq, clock, ingest_rx, hub_tx, shutdown.clone()));
        let sd = shutdown.clone();
        let channels: Arc<[ChannelId]> = cfg.relay.channels.clone().into();
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    biased;
                    _ = sd.cancelled() => return,
                    s = publishers.recv() => match s { Some(s) => s, None => return },
                };
                tokio::spawn(ingest::serve_publisher(
                    s,
                    ingest_tx.clone(),
                    channels.clone(),
                    sd.clone(),
                ));
            }
        });
        relay.run(shutdown).await;
    }
}

/// The sequencer task: where every tick gets its seq. Drains what is queued (no waiting)
/// and hands the numbered batch to the hub.
async fn sequence(
    mut seq: Sequencer,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Ingest>,
    hub: mpsc::Sender<Vec<Tick>>,
    shutdown: CancellationToken,
) {
    // Highest id numbered per publisher: a resent record is not numbered twice.
    let mut published: BTreeMap<Arc<str>, u64> = BTreeMap::new();
    let mut buf = Vec::with_capacity(1024);
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            n = rx.recv_many(&mut buf, 1024) => n,
        };
        if n == 0 {
            return;
        }
        let now = clock.unix_micros();
        let mut ticks = Vec::with_capacity(n);
        for ing in buf.drain(..) {
            match ing {
                Ingest::Local { channel, payload } => match seq.next(channel, now, payload) {
                    Some(t) => ticks.push(t),
                    None => warn!(channel, "dropping tick for unknown channel"),
                },
                Ingest::Published {
                    publisher,
                    id,
                    channel,
                    payload,
                    ack,
                } => {
                    let last = published.entry(publisher.clone()).or_insert(0);
                    if id > *last {
                        match seq.next(channel, now, payload) {
                            Some(t) => ticks.push(t),
                            None => {
                                warn!(%publisher, channel, "dropping published tick for unknown channel")
                            }
                        }
                        *last = id;
                    }
                    ack.send_replace(*last);
                }
            }
        }
        if !ticks.is_empty() && hub.send(ticks).await.is_err() {
            info!("origin hub stopped; sequencer ends");
            return;
        }
    }
}
