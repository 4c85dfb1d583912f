//! The upstream link: one subscription to one of several candidate servers.
//!
//! A link connects to the first reachable candidate, sends `Hello` (with resume points
//! supplied by its owner), waits for `Welcome`, then passes everything that arrives to its
//! owner as [`Inbound`] messages, and sends what its owner asks for ([`LinkCmd`]). It
//! declares the upstream dead after `dead_after` heartbeat intervals of silence (not after
//! the QUIC idle timeout), and then moves on to the next candidate. The owner (a consumer's
//! reassembly task or a relay's hub) keeps all sequence state; the link keeps none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, Endpoint};
use tickcast_proto::codec::{
    self, ChannelHead, Control, Datagram, Frame, Hello, PROTOCOL_VERSION, Role, Subscribe, Welcome,
};
use tickcast_proto::{ChannelId, SeqRange, Tick};
use tokio::sync::mpsc;
use tokio::time::{Instant as TokioInstant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::frames::{FrameError, read_frame, write_control};

/// A candidate server: its topology name (its certificate must be valid for it) and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Topology name, used as the TLS server name.
    pub name: String,
    /// UDP address.
    pub addr: SocketAddr,
}

/// Settings of a link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Our own topology name (our certificate is valid for it).
    pub name: String,
    /// The role we claim in `Hello`.
    pub role: Role,
    /// Candidates in order of preference.
    pub upstreams: Vec<Upstream>,
    /// The upstream's heartbeat interval.
    pub heartbeat: Duration,
    /// Heartbeat intervals of silence after which the upstream is declared dead.
    pub dead_after: u32,
    /// How long a connection attempt plus hello/welcome exchange may take.
    pub connect_timeout: Duration,
    /// Pause after every candidate failed in turn, before trying again.
    pub retry_pause: Duration,
}

impl LinkConfig {
    /// Silence after which the upstream is declared dead.
    pub fn dead_interval(&self) -> Duration {
        self.heartbeat * self.dead_after.max(1)
    }
}

/// What a link passes to its owner, in arrival order per source.
#[derive(Debug)]
pub enum Inbound {
    /// A session started: the server's view of each channel.
    Connected {
        /// Candidate name.
        upstream: String,
        /// The server's answer.
        welcome: Welcome,
        /// Round-trip time measured by the handshake.
        rtt: Duration,
    },
    /// A datagram of live ticks, with its raw bytes so a relay can forward it untouched.
    Datagram {
        /// The datagram as received.
        raw: Bytes,
        /// Its decoded ticks (payloads are slices of `raw`).
        ticks: Vec<Tick>,
    },
    /// A tick that came on a stream: a repair, a resume replay, or a large live tick.
    StreamTick(Tick),
    /// Heads announced by a heartbeat.
    Heads(Vec<ChannelHead>),
    /// Nobody upstream has this range any more.
    Unavailable {
        /// Channel.
        channel: ChannelId,
        /// Range.
        range: SeqRange,
    },
    /// (Standby origin only) a publisher record's numbering, from the primary origin.
    Mark {
        /// Publisher name.
        publisher: String,
        /// Record id.
        id: u64,
        /// Channel.
        channel: ChannelId,
        /// Seq given.
        seq: tickcast_proto::Seq,
    },
    /// The current session ended.
    Disconnected {
        /// Candidate name.
        upstream: String,
        /// Why, for logs and events.
        reason: String,
    },
}

/// What an owner asks of its link.
#[derive(Debug)]
pub enum LinkCmd {
    /// Send a control message (a NACK) on the current session; dropped if none.
    Send(Control),
    /// Drop the current session (the upstream misbehaved) and move to the next candidate.
    Reconnect(String),
}

/// Supplies the subscriptions for each `Hello` (resume points change as ticks arrive).
pub type ResumeFn = Arc<dyn Fn() -> Vec<Subscribe> + Send + Sync>;

/// Resume points an owner updates as ticks arrive: per channel, the first seq still
/// wanted (`None`: start at the live head).
pub type ResumePoints =
    Arc<std::sync::Mutex<std::collections::BTreeMap<ChannelId, Option<tickcast_proto::Seq>>>>;

/// A [`ResumeFn`] reading shared [`ResumePoints`].
pub fn resume_from_points(points: ResumePoints) -> ResumeFn {
    Arc::new(move || {
        points
            .lock()
            .expect("resume lock")
            .iter()
            .map(|(&channel, &resume_from)| Subscribe {
                channel,
                resume_from,
            })
            .collect()
    })
}

/// An owner's end of one or more links ("feeds") sharing one inbound queue. With two
/// feeds (A/B), the owner keeps whichever copy of a seq arrives first.
pub struct Feeds {
    /// Messages from every feed, tagged with the feed index.
    pub inbound: mpsc::Receiver<(usize, Inbound)>,
    /// Commands to the feeds.
    pub cmds: FeedCmds,
}

/// The command side of [`Feeds`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct FeedCmds(Vec<mpsc::UnboundedSender<LinkCmd>>);

impl Feeds {
    /// Starts one link task per configuration; they run until `shutdown` is cancelled or
    /// this handle is dropped.
    pub fn spawn(
        cfgs: Vec<LinkConfig>,
        endpoint: Endpoint,
        resume: ResumeFn,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> Feeds {
        let (tx, inbound) = mpsc::channel(capacity);
        let cmds = cfgs
            .into_iter()
            .enumerate()
            .map(|(i, cfg)| {
                // Commands are few (NACK batches, reconnects) and must never block the owner.
                let (cmds, cmd_rx) = mpsc::unbounded_channel();
                tokio::spawn(run_link(
                    i,
                    cfg,
                    endpoint.clone(),
                    resume.clone(),
                    tx.clone(),
                    cmd_rx,
                    shutdown.clone(),
                ));
                cmds
            })
            .collect();
        Feeds {
            inbound,
            cmds: FeedCmds(cmds),
        }
    }
}

impl FeedCmds {
    /// Number of feeds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no feeds.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sends a control message on every feed's current session (a NACK goes to both A and
    /// B: the first answer wins, the other is dropped as a duplicate).
    pub fn send_all(&self, msg: Control) {
        for c in &self.0 {
            let _ = c.send(LinkCmd::Send(msg.clone()));
        }
    }

    /// Sends a control message on one feed.
    pub fn send_to(&self, feed: usize, msg: Control) {
        if let Some(c) = self.0.get(feed) {
            let _ = c.send(LinkCmd::Send(msg));
        }
    }

    /// Drops one feed's session and moves it to its next candidate.
    pub fn reconnect(&self, feed: usize, reason: String) {
        if let Some(c) = self.0.get(feed) {
            let _ = c.send(LinkCmd::Reconnect(reason));
        }
    }

    /// Drops every feed's session.
    pub fn reconnect_all(&self, reason: &str) {
        for i in 0..self.0.len() {
            self.reconnect(i, reason.to_string());
        }
    }
}

/// Why a session ended.
enum End {
    Shutdown,
    OwnerGone,
    Failed(String),
}

async fn run_link(
    feed: usize,
    cfg: LinkConfig,
    endpoint: Endpoint,
    resume: ResumeFn,
    tx: mpsc::Sender<(usize, Inbound)>,
    mut cmds: mpsc::UnboundedReceiver<LinkCmd>,
    shutdown: CancellationToken,
) {
    let mut failures_in_row = 0usize;
    let mut idx = 0usize;
    // Sessions in a row that died of silence soon after starting. Each doubles the next
    // session's patience (up to 8x): an upstream flooded by everyone failing over to it at
    // once gets time to catch up instead of a stampede back and forth.
    let mut quick_deaths = 0u32;
    let mut spare: Option<Spare> = None;
    loop {
        if shutdown.is_cancelled() || cfg.upstreams.is_empty() {
            return;
        }
        let n = cfg.upstreams.len();
        let up = cfg.upstreams[idx % n].clone();
        let dead = cfg.dead_interval() * (1 << quick_deaths.min(3));
        let started = tokio::time::Instant::now();
        // A spare connection to this candidate saves the handshake now; then keep one to
        // the candidate after it.
        let ready = spare.take().and_then(|s| s.take_for(idx % n));
        if n > 1 {
            spare = Some(Spare::spawn(
                (idx + 1) % n,
                endpoint.clone(),
                cfg.upstreams[(idx + 1) % n].clone(),
                cfg.connect_timeout,
            ));
        }
        let (end, was_connected) = session(
            feed, &cfg, &endpoint, ready, &resume, &up, &tx, &mut cmds, &shutdown, dead,
        )
        .await;
        let reason = match end {
            End::Shutdown | End::OwnerGone => return,
            End::Failed(reason) => reason,
        };
        if was_connected && reason.starts_with("no heartbeat") && started.elapsed() < dead * 20 {
            quick_deaths += 1;
        } else if was_connected {
            quick_deaths = 0;
        }
        if was_connected {
            failures_in_row = 0;
            warn!(link = %cfg.name, upstream = %up.name, %reason, "upstream lost, failing over");
        } else {
            failures_in_row += 1;
            debug!(link = %cfg.name, upstream = %up.name, %reason, "connect failed");
        }
        if tx
            .send((
                feed,
                Inbound::Disconnected {
                    upstream: up.name.clone(),
                    reason,
                },
            ))
            .await
            .is_err()
        {
            return;
        }
        idx += 1;
        if failures_in_row >= cfg.upstreams.len() {
            failures_in_row = 0;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(cfg.retry_pause) => {}
            }
        }
    }
}

/// A connection kept open to the next candidate upstream, handshake done but no session
/// on it: a failover then starts with the hello instead of a TLS handshake, which on a
/// server that all of a dead relay's consumers hit at once is most of the reconnect time.
/// Kept alive by QUIC keep-alives; re-dialled if it drops.
struct Spare {
    target: usize,
    conn: Arc<std::sync::Mutex<Option<Connection>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Spare {
    fn spawn(target: usize, endpoint: Endpoint, up: Upstream, connect_timeout: Duration) -> Spare {
        let conn = Arc::new(std::sync::Mutex::new(None));
        let slot = conn.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(connecting) = endpoint.connect(up.addr, &up.name)
                    && let Ok(Ok(c)) = timeout(connect_timeout, connecting).await
                {
                    *slot.lock().expect("spare slot") = Some(c.clone());
                    c.closed().await;
                    *slot.lock().expect("spare slot") = None;
                }
                // A dead candidate is re-dialled slowly: it costs a timeout, not a storm.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Spare { target, conn, task }
    }

    /// The open connection, if this spare is for candidate `target` and has one.
    fn take_for(self, target: usize) -> Option<Connection> {
        if self.target != target {
            return None;
        }
        let c = self.conn.lock().expect("spare slot").take();
        c.filter(|c| c.close_reason().is_none())
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    feed: usize,
    cfg: &LinkConfig,
    endpoint: &Endpoint,
    ready: Option<Connection>,
    resume: &ResumeFn,
    up: &Upstream,
    tx: &mpsc::Sender<(usize, Inbound)>,
    cmds: &mut mpsc::UnboundedReceiver<LinkCmd>,
    shutdown: &CancellationToken,
    dead: Duration,
) -> (End, bool) {
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: cfg.role,
        name: cfg.name.clone(),
        subscriptions: resume(),
    };
    let connect = async {
        let conn = match ready {
            Some(c) => c,
            None => endpoint
                .connect(up.addr, &up.name)
                .map_err(|e| format!("connect to {}: {e}", up.addr))?
                .await
                .map_err(|e| format!("handshake with {} ({}): {e}", up.name, up.addr))?,
        };
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| format!("open control stream: {e}"))?;
        write_control(&mut send, &Control::Hello(hello))
            .await
            .map_err(|e| format!("send hello: {e}"))?;
        match read_frame(&mut recv).await {
            Ok(Frame::Control(Control::Welcome(w))) => Ok((conn, send, recv, w)),
            Ok(other) => Err(format!("expected Welcome, got {other:?}")),
            Err(e) => Err(format!("waiting for Welcome: {e}")),
        }
    };
    let (conn, mut send, recv, welcome) = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return (End::Shutdown, false),
        r = timeout(cfg.connect_timeout, connect) => match r {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return (End::Failed(e), false),
            Err(_) => return (End::Failed(format!("no welcome from {} within {:?}", up.name, cfg.connect_timeout)), false),
        },
    };
    info!(link = %cfg.name, upstream = %up.name, addr = %up.addr, "subscribed");
    // Commands queued while no session was up are stale: the owner re-asks for every
    // open gap when it sees `Connected`.
    while cmds.try_recv().is_ok() {}
    if tx
        .send((
            feed,
            Inbound::Connected {
                upstream: up.name.clone(),
                welcome,
                rtt: conn.rtt(),
            },
        ))
        .await
        .is_err()
    {
        return (End::OwnerGone, true);
    }

    // Stream readers run as tasks (reads are not cancel-safe); they report their end here.
    let (end_tx, mut end_rx) = mpsc::channel::<String>(4);
    let readers = [
        tokio::spawn(control_reader(feed, recv, tx.clone(), end_tx.clone())),
        tokio::spawn(uni_acceptor(feed, conn.clone(), tx.clone(), end_tx)),
    ];
    // Checked often, so a dead upstream is noticed within a few ms of the dead interval.
    let check_every = (cfg.heartbeat / 10).max(Duration::from_millis(2));
    let mut next_check = TokioInstant::now() + check_every;
    let mut last_alive = TokioInstant::now();
    let mut rx_seen = conn.stats().udp_rx.datagrams;
    let end = loop {
        // Order matters: commands (NACKs) are rare and must never starve behind a steady
        // datagram flow; the dead-peer timer comes last and double-checks for arrivals.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                conn.close(tickcast_transport::CLOSE_OK, b"shutdown");
                break End::Shutdown;
            }
            cmd = cmds.recv() => match cmd {
                None => break End::OwnerGone,
                Some(LinkCmd::Send(msg)) => {
                    // NACKs go as redundant datagrams: on the control stream one lost packet
                    // would hold up every NACK behind it for a round trip.
                    if matches!(msg, Control::Nack { .. }) && send_urgent(&conn, &msg) {
                        continue;
                    }
                    if let Err(e) = write_control(&mut send, &msg).await {
                        break End::Failed(format!("control stream write: {e}"));
                    }
                }
                Some(LinkCmd::Reconnect(reason)) => {
                    conn.close(tickcast_transport::CLOSE_PROTOCOL, reason.as_bytes());
                    break End::Failed(reason);
                }
            },
            Some(reason) = end_rx.recv() => {
                break End::Failed(reason);
            }
            d = conn.read_datagram() => {
                if let Err(end) = on_datagram(feed, &conn, d, tx).await {
                    break end;
                }
            }
            _ = sleep_until(next_check) => {
                // Liveness is any packet from the upstream reaching our endpoint (heartbeats
                // guarantee one per interval), not this task's own progress: a busy owner
                // or a loaded machine must not look like a dead upstream.
                let now = TokioInstant::now();
                let rx_now = conn.stats().udp_rx.datagrams;
                if rx_now != rx_seen {
                    rx_seen = rx_now;
                    last_alive = now;
                }
                next_check = now + check_every;
                if now.duration_since(last_alive) < dead {
                    continue;
                }
                conn.close(tickcast_transport::CLOSE_OK, b"heartbeat timeout");
                break End::Failed(format!("no heartbeat from {} for {:?}", up.name, dead));
            }
        }
    };
    for r in readers {
        r.abort();
    }
    (end, true)
}

/// Sends `msg` as redundant control datagrams if it fits one; `false` if it must go on the
/// control stream instead.
fn send_urgent(conn: &Connection, msg: &Control) -> bool {
    let d = codec::encode_control_datagram(msg);
    conn.max_datagram_size().is_some_and(|max| d.len() <= max)
        && tickcast_transport::send_datagram_copies(conn, d).is_ok()
}

/// Decodes one datagram and passes it on; an `Err` ends the session.
async fn on_datagram(
    feed: usize,
    conn: &Connection,
    d: Result<Bytes, quinn::ConnectionError>,
    tx: &mpsc::Sender<(usize, Inbound)>,
) -> Result<(), End> {
    let raw = d.map_err(|e| End::Failed(format!("connection lost: {e}")))?;
    let msg = match codec::decode_datagram(raw.clone()) {
        Ok(Datagram::Ticks(ticks)) => Inbound::Datagram { raw, ticks },
        Ok(Datagram::Control(Control::Heartbeat { heads })) => Inbound::Heads(heads),
        Ok(Datagram::Control(other)) => {
            conn.close(
                tickcast_transport::CLOSE_PROTOCOL,
                b"unexpected control datagram",
            );
            return Err(End::Failed(format!(
                "protocol violation: unexpected datagram {other:?}"
            )));
        }
        Err(e) => {
            conn.close(tickcast_transport::CLOSE_PROTOCOL, e.to_string().as_bytes());
            return Err(End::Failed(format!("protocol violation: {e}")));
        }
    };
    tx.send((feed, msg)).await.map_err(|_| End::OwnerGone)
}

/// Reads server → subscriber frames on the control stream.
async fn control_reader(
    feed: usize,
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<(usize, Inbound)>,
    end: mpsc::Sender<String>,
) {
    let reason = loop {
        let msg = match read_frame(&mut recv).await {
            Ok(Frame::Tick(t)) => Inbound::StreamTick(t),
            Ok(Frame::Control(Control::Unavailable { channel, range })) => {
                Inbound::Unavailable { channel, range }
            }
            Ok(Frame::Control(Control::Heartbeat { heads })) => Inbound::Heads(heads),
            Ok(Frame::Control(Control::PublishMark {
                publisher,
                id,
                channel,
                seq,
            })) => Inbound::Mark {
                publisher,
                id,
                channel,
                seq,
            },
            Ok(other) => break format!("protocol violation: unexpected frame {other:?}"),
            Err(FrameError::Finished) => break "control stream finished".to_string(),
            Err(e) => break e.to_string(),
        };
        if tx.send((feed, msg)).await.is_err() {
            return;
        }
    };
    let _ = end.send(reason).await;
}

/// Accepts the server's unidirectional streams, each carrying tick frames: one large live
/// tick, or one repair answer.
async fn uni_acceptor(
    feed: usize,
    conn: Connection,
    tx: mpsc::Sender<(usize, Inbound)>,
    end: mpsc::Sender<String>,
) {
    loop {
        let mut recv = match conn.accept_uni().await {
            Ok(r) => r,
            Err(e) => {
                let _ = end.send(format!("connection lost: {e}")).await;
                return;
            }
        };
        let tx = tx.clone();
        let end = end.clone();
        tokio::spawn(async move {
            loop {
                match read_frame(&mut recv).await {
                    Ok(Frame::Tick(t)) => {
                        if tx.send((feed, Inbound::StreamTick(t))).await.is_err() {
                            return;
                        }
                    }
                    Ok(other) => {
                        let _ = end
                            .send(format!(
                                "protocol violation: unexpected uni frame {other:?}"
                            ))
                            .await;
                        return;
                    }
                    Err(FrameError::Finished) => return,
                    // Stream reset or connection gone: what it carried is repaired by NACK.
                    Err(FrameError::Read(_)) => return,
                    Err(e) => {
                        let _ = end.send(e.to_string()).await;
                        return;
                    }
                }
            }
        });
    }
}
