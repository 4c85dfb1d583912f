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
use tickcast_proto::{ChannelId, Clock};
use tickcast_relay::{PublishRef, Relay, RelayConfig, RelayStats, Sequenced, Source, Takeover};
use tokio::sync::{mpsc, oneshot, watch};
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
    /// Set on a standby origin: the primary it follows until taking over.
    pub standby_of: Option<tickcast_client::Upstream>,
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
    /// From a QUIC publisher: numbered once per (publisher, id), acknowledged once
    /// committed.
    Published {
        /// Publisher name.
        publisher: Arc<str>,
        /// Publisher's record id.
        id: u64,
        /// Channel.
        channel: ChannelId,
        /// Payload.
        payload: Bytes,
    },
}

/// What the origin knows of each publisher: the highest record id numbered (for dedup)
/// and the highest committed (acknowledged). Shared by the sequencer and every session of
/// that publisher, so an ack reaches whichever connection the publisher has now.
#[derive(Debug)]
pub struct PublisherState {
    /// Highest record id numbered.
    pub numbered: u64,
    /// Highest record id committed; sessions forward changes as `PublishAck`.
    pub committed: watch::Sender<u64>,
}

/// Publisher registry, by name.
pub type Publishers = Arc<std::sync::Mutex<BTreeMap<Arc<str>, PublisherState>>>;

/// The registry entry for `name`, created empty if new.
pub fn publisher_entry(reg: &Publishers, name: &Arc<str>) -> watch::Receiver<u64> {
    let mut r = reg.lock().expect("publishers lock");
    r.entry(name.clone())
        .or_insert_with(|| PublisherState {
            numbered: 0,
            committed: watch::channel(0).0,
        })
        .committed
        .subscribe()
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
    hub_tx: mpsc::Sender<Vec<Sequenced>>,
    sessions: mpsc::Receiver<tickcast_relay::PublisherSession>,
    /// A standby's takeover report (from its hub).
    takeover: Option<oneshot::Receiver<Takeover>>,
}

impl Origin {
    /// An origin serving on `endpoint`.
    pub fn new(mut cfg: OriginConfig, endpoint: Endpoint, clock: Arc<dyn Clock>) -> Self {
        let (ingest_tx, ingest_rx) = mpsc::channel(cfg.ingest_capacity.max(1));
        let (hub_tx, hub_rx) = mpsc::channel(1024);
        let (pub_tx, sessions) = mpsc::channel(16);
        cfg.relay.publishers = Some(pub_tx);
        let (source, takeover) = match &cfg.standby_of {
            None => (Source::Local(hub_rx), None),
            Some(primary) => {
                // A standby serves nobody until it takes over.
                cfg.relay
                    .serving
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                (
                    Source::Standby {
                        primary: primary.clone(),
                        takeover: tx,
                        local: hub_rx,
                    },
                    Some(rx),
                )
            }
        };
        let relay = Relay::new(cfg.relay.clone(), endpoint, clock.clone(), source);
        Origin {
            cfg,
            relay,
            clock,
            ingest_tx,
            ingest_rx,
            hub_tx,
            sessions,
            takeover,
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

    /// Runs until `shutdown` is cancelled. A standby origin numbers nothing until its hub
    /// reports the takeover.
    pub async fn run(self, shutdown: CancellationToken) {
        let Origin {
            cfg,
            relay,
            clock,
            ingest_tx,
            ingest_rx,
            hub_tx,
            mut sessions,
            takeover,
        } = self;
        let publishers: Publishers = Default::default();
        let channels: Vec<ChannelId> = cfg.relay.channels.clone();
        {
            let publishers = publishers.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let seq = match takeover {
                    None => Sequencer::new(cfg.epoch, channels.iter().copied()),
                    Some(rx) => {
                        let t = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            t = rx => match t { Ok(t) => t, Err(_) => return },
                        };
                        let mut seq = Sequencer::new(t.epoch, channels.iter().copied());
                        for (c, head) in &t.heads {
                            seq.resume(*c, *head);
                        }
                        let mut reg = publishers.lock().expect("publishers lock");
                        for (name, id) in t.published {
                            reg.insert(
                                name.into(),
                                PublisherState {
                                    numbered: id,
                                    committed: watch::channel(id).0,
                                },
                            );
                        }
                        seq
                    }
                };
                sequence(seq, clock, ingest_rx, hub_tx, publishers, shutdown).await;
            });
        }
        let sd = shutdown.clone();
        let channels: Arc<[ChannelId]> = cfg.relay.channels.clone().into();
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    biased;
                    _ = sd.cancelled() => return,
                    s = sessions.recv() => match s { Some(s) => s, None => return },
                };
                tokio::spawn(ingest::serve_publisher(
                    s,
                    ingest_tx.clone(),
                    publishers.clone(),
                    channels.clone(),
                    sd.clone(),
                ));
            }
        });
        relay.run(shutdown).await;
    }
}

/// The sequencer task: where every tick gets its seq. Drains what is queued (no waiting)
/// and hands the numbered batch to the hub, which commits and acknowledges.
async fn sequence(
    mut seq: Sequencer,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Ingest>,
    hub: mpsc::Sender<Vec<Sequenced>>,
    publishers: Publishers,
    shutdown: CancellationToken,
) {
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
                    Some(tick) => ticks.push(Sequenced {
                        tick,
                        publish: None,
                    }),
                    None => warn!(channel, "dropping tick for unknown channel"),
                },
                Ingest::Published {
                    publisher,
                    id,
                    channel,
                    payload,
                } => {
                    let mut reg = publishers.lock().expect("publishers lock");
                    let Some(st) = reg.get_mut(&publisher) else {
                        continue;
                    };
                    // A resent record already numbered is not numbered twice.
                    if id <= st.numbered {
                        continue;
                    }
                    st.numbered = id;
                    match seq.next(channel, now, payload) {
                        Some(tick) => ticks.push(Sequenced {
                            tick,
                            publish: Some(PublishRef {
                                publisher: publisher.clone(),
                                id,
                                ack: st.committed.clone(),
                            }),
                        }),
                        None => {
                            warn!(%publisher, channel, "dropping published tick for unknown channel")
                        }
                    }
                }
            }
        }
        if !ticks.is_empty() && hub.send(ticks).await.is_err() {
            info!("origin hub stopped; sequencer ends");
            return;
        }
    }
}
