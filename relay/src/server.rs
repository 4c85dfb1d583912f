//! Accepting children: TLS identity and role checks, the hello, and the per-child reader
//! and writer tasks. Owns no tick state; everything it learns goes to the hub.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tickcast_client::frames::{FrameError, read_frame, write_chunks};
use tickcast_proto::codec::{self, Control, Frame, Hello, PROTOCOL_VERSION, Role};
use tickcast_proto::{ChannelId, SeqRange};
use tickcast_transport::{CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_VERSION, verify_peer_name};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{RelayConfig, RelayStats};

/// A publisher that connected and identified itself; handed to the origin.
pub struct PublisherSession {
    /// Its topology name (certificate checked).
    pub name: String,
    /// The connection.
    pub conn: Connection,
    /// Origin → publisher half of its stream (acks).
    pub send: SendStream,
    /// Publisher → origin half (publish frames).
    pub recv: RecvStream,
}

/// Something for a child's writer task to put on the wire.
#[derive(Debug)]
pub enum Out {
    /// Pre-encoded frames for the control stream, written in order.
    Frames(Vec<Bytes>),
    /// Tick frames sent on their own unidirectional stream: a live tick too large for a
    /// datagram, or one repair answer. A lost packet then delays only these ticks, never the
    /// control stream or other repairs behind them (no head-of-line blocking on lossy links).
    Uni(Vec<Bytes>),
}

/// Messages from the server side to the hub.
pub enum HubMsg {
    /// A child finished its hello and wants ticks.
    Join(Child),
    /// A child asks for ranges again.
    Nack {
        /// Child id.
        child: u64,
        /// Channel.
        channel: ChannelId,
        /// Ranges.
        ranges: Vec<SeqRange>,
    },
    /// The standby origin confirms holding everything up to these heads.
    Confirm {
        /// Child id.
        child: u64,
        /// Heads per channel.
        heads: Vec<tickcast_proto::codec::ChannelHead>,
    },
    /// A child went away.
    Gone {
        /// Child id.
        child: u64,
    },
}

/// A connected child as the hub sees it.
pub struct Child {
    /// Unique id within this node.
    pub id: u64,
    /// Topology name.
    pub name: String,
    /// Consumer or relay.
    pub role: Role,
    /// The connection (datagrams are sent on it directly).
    pub conn: Connection,
    /// The hello (channels and resume points).
    pub hello: Hello,
    /// Queue to the child's writer task.
    pub writer: mpsc::Sender<Out>,
}

/// Accepts connections until shutdown.
pub async fn accept_loop(
    cfg: RelayConfig,
    endpoint: Endpoint,
    hub: mpsc::Sender<HubMsg>,
    stats: Arc<RelayStats>,
    shutdown: CancellationToken,
) {
    let mut next_id = 1u64;
    loop {
        let incoming = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
        };
        let id = next_id;
        next_id += 1;
        let (cfg, hub, stats, shutdown) =
            (cfg.clone(), hub.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    warn!(node = %cfg.name, peer = %addr, error = %e, "refused connection: TLS handshake failed");
                    return;
                }
            };
            if let Err(e) = admit(id, &cfg, conn.clone(), &hub, &stats, shutdown).await {
                warn!(node = %cfg.name, peer = %addr, reason = %e.1, "refused peer");
                conn.close(e.0, e.1.as_bytes());
            }
        });
    }
}

/// Reads and checks the hello, then starts the child's tasks. An `Err` carries the close
/// code and reason.
async fn admit(
    id: u64,
    cfg: &RelayConfig,
    conn: Connection,
    hub: &mpsc::Sender<HubMsg>,
    stats: &Arc<RelayStats>,
    shutdown: CancellationToken,
) -> Result<(), (quinn::VarInt, String)> {
    // No deadline for the control stream: a subscriber may hold a connection open as a
    // spare for failover (keep-alives keep it; the idle timeout ends it if the peer dies).
    let (send, mut recv) = match conn.accept_bi().await {
        Ok(s) => s,
        Err(e) => {
            // A spare closed unused (its owner moved on or shut down): nothing to refuse.
            debug!(node = %cfg.name, peer = %conn.remote_address(), error = %e, "connection closed before its control stream");
            return Ok(());
        }
    };
    let hello_wait = Duration::from_secs(5);
    let hello = match timeout(hello_wait, read_frame(&mut recv)).await {
        Err(_) => return Err((CLOSE_PROTOCOL, "no hello within 5 s".into())),
        Ok(Ok(Frame::Control(Control::Hello(h)))) => h,
        Ok(Ok(other)) => {
            return Err((
                CLOSE_PROTOCOL,
                format!("expected hello, got {}", frame_name(&other)),
            ));
        }
        Ok(Err(e)) => return Err((CLOSE_PROTOCOL, format!("reading hello: {e}"))),
    };
    if hello.version != PROTOCOL_VERSION {
        return Err((
            CLOSE_VERSION,
            format!(
                "protocol version {} not supported (want {PROTOCOL_VERSION})",
                hello.version
            ),
        ));
    }
    verify_peer_name(&conn, &hello.name).map_err(|e| {
        (
            CLOSE_REFUSED,
            format!("peer claims name {:?}: {e}", hello.name),
        )
    })?;
    (cfg.authorize)(&hello.name, hello.role).map_err(|e| (CLOSE_REFUSED, e))?;
    // A standby origin not serving yet holds the peer a moment: if the primary has just
    // died, the takeover is imminent and the peer gets its welcome as soon as it happens.
    let hold_until = tokio::time::Instant::now() + Duration::from_secs(1);
    while !cfg.serving.load(std::sync::atomic::Ordering::Relaxed) {
        if tokio::time::Instant::now() >= hold_until {
            return Err((
                CLOSE_REFUSED,
                format!("{} is a standby origin and not serving yet", cfg.name),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if hello.role == Role::Publisher {
        let Some(sink) = &cfg.publishers else {
            return Err((CLOSE_REFUSED, format!("{} accepts no publishers", cfg.name)));
        };
        info!(node = %cfg.name, publisher = %hello.name, "publisher connected");
        let _ = sink
            .send(PublisherSession {
                name: hello.name,
                conn,
                send,
                recv,
            })
            .await;
        return Ok(());
    }
    if let Some(s) = hello
        .subscriptions
        .iter()
        .find(|s| !cfg.channels.contains(&s.channel))
    {
        return Err((CLOSE_REFUSED, format!("unknown channel {}", s.channel)));
    }
    info!(node = %cfg.name, child = %hello.name, role = ?hello.role, "child subscribed");
    let (writer, rx) = mpsc::channel(cfg.child_queue.max(16));
    tokio::spawn(child_writer(conn.clone(), send, rx, shutdown.clone()));
    let child = Child {
        id,
        name: hello.name.clone(),
        role: hello.role,
        conn: conn.clone(),
        hello,
        writer,
    };
    if hub.send(HubMsg::Join(child)).await.is_err() {
        return Ok(());
    }
    stats.children.fetch_add(1, Relaxed);
    tokio::spawn(child_datagrams(
        id,
        cfg.name.clone(),
        conn.clone(),
        hub.clone(),
    ));
    tokio::spawn(child_reader(
        id,
        cfg.name.clone(),
        conn,
        recv,
        hub.clone(),
        stats.clone(),
    ));
    Ok(())
}

/// Ranges must be well formed; a peer sending first > last (or seq 0) is broken.
fn nack_ok(node: &str, id: u64, conn: &Connection, ranges: &[SeqRange]) -> bool {
    if ranges.iter().any(|r| r.first > r.last || r.first == 0) {
        warn!(%node, child = id, "malformed NACK range, closing child");
        conn.close(CLOSE_PROTOCOL, b"malformed NACK range");
        return false;
    }
    true
}

/// Reads a child's datagrams: NACKs, each sent several times (see `tickcast_transport::redundant`).
/// Later copies of one just answered are dropped here so the repair is not sent twice
/// over; anything else in a datagram closes that child only.
async fn child_datagrams(id: u64, node: String, conn: Connection, hub: mpsc::Sender<HubMsg>) {
    // A re-asked NACK comes a retry interval (≥ 20 ms) later; copies within the offsets.
    let copy_window = tickcast_transport::redundant::COPY_SPAN + Duration::from_millis(5);
    let mut recent: std::collections::VecDeque<(Bytes, tokio::time::Instant)> = Default::default();
    while let Ok(d) = conn.read_datagram().await {
        let now = tokio::time::Instant::now();
        while recent
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > copy_window)
        {
            recent.pop_front();
        }
        if recent.iter().any(|(b, _)| *b == d) {
            continue;
        }
        recent.push_back((d.clone(), now));
        if recent.len() > 64 {
            recent.pop_front(); // bounded, whatever a child sends
        }
        match codec::decode_datagram(d) {
            Ok(codec::Datagram::Control(Control::Nack { channel, ranges })) => {
                if !nack_ok(&node, id, &conn, &ranges) {
                    return;
                }
                let msg = HubMsg::Nack {
                    child: id,
                    channel,
                    ranges,
                };
                if hub.send(msg).await.is_err() {
                    return;
                }
            }
            Ok(_) => {
                warn!(%node, child = id, "unexpected datagram from child, closing it");
                conn.close(CLOSE_PROTOCOL, b"unexpected datagram");
                return;
            }
            Err(e) => {
                warn!(%node, child = id, error = %e, "malformed datagram from child, closing it");
                conn.close(CLOSE_PROTOCOL, e.to_string().as_bytes());
                return;
            }
        }
    }
}

fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Tick(_) => "a tick",
        Frame::Publish(_) => "a publish record",
        Frame::Control(_) => "another control message",
    }
}

/// Reads a child's NACKs; a malformed frame closes that child's connection only.
async fn child_reader(
    id: u64,
    node: String,
    conn: Connection,
    mut recv: RecvStream,
    hub: mpsc::Sender<HubMsg>,
    stats: Arc<RelayStats>,
) {
    loop {
        match read_frame(&mut recv).await {
            Ok(Frame::Control(Control::Nack { channel, ranges })) => {
                if !nack_ok(&node, id, &conn, &ranges) {
                    break;
                }
                if hub
                    .send(HubMsg::Nack {
                        child: id,
                        channel,
                        ranges,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(Frame::Control(Control::Confirm { heads })) => {
                if hub
                    .send(HubMsg::Confirm { child: id, heads })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(other) => {
                warn!(%node, child = id, "unexpected {} from child, closing it", frame_name(&other));
                conn.close(CLOSE_PROTOCOL, b"unexpected frame");
                break;
            }
            Err(FrameError::Malformed(e)) => {
                warn!(%node, child = id, error = %e, "malformed frame from child, closing it");
                conn.close(CLOSE_PROTOCOL, e.to_string().as_bytes());
                break;
            }
            Err(e) => {
                debug!(%node, child = id, error = %e, "child gone");
                break;
            }
        }
    }
    stats.children.fetch_sub(1, Relaxed);
    let _ = hub.send(HubMsg::Gone { child: id }).await;
}

/// Writes queued frames to the child's control stream and large ticks to uni streams.
async fn child_writer(
    conn: Connection,
    mut send: SendStream,
    mut rx: mpsc::Receiver<Out>,
    shutdown: CancellationToken,
) {
    loop {
        let out = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            o = rx.recv() => match o { Some(o) => o, None => return },
        };
        let res = match out {
            Out::Frames(mut chunks) => write_chunks(&mut send, &mut chunks)
                .await
                .map_err(|e| e.to_string()),
            Out::Uni(mut chunks) => {
                let conn = conn.clone();
                // Its own task and stream: nothing waits behind it.
                tokio::spawn(async move {
                    if let Ok(mut s) = conn.open_uni().await {
                        let _ = write_chunks(&mut s, &mut chunks).await;
                        let _ = s.finish();
                    }
                });
                Ok(())
            }
        };
        if res.is_err() {
            return;
        }
    }
}
