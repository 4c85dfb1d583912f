//! A lossy UDP socket for tests and simulations.
//!
//! Owns [`LossySocket`], a quinn [`AsyncUdpSocket`] that wraps quinn's real tokio UDP
//! socket and drops each outgoing UDP packet with a fixed probability drawn from a seeded
//! RNG, and [`bind_lossy`], which builds an endpoint on it. Segmentation offload (GSO) is
//! disabled so one drop is exactly one packet. Incoming packets are never dropped; make the
//! other side lossy too for loss in both directions. It is a test aid, not a network model:
//! delay, jitter, bandwidth and partitions belong to netsim.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};
use rand::distr::Bernoulli;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::endpoint::{bind_err, tokio_runtime, udp_socket};
use crate::error::TransportError;

/// Counters and switches of a [`LossySocket`], usable while the endpoint runs. Cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct LossStats {
    dropped: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    silenced: Arc<std::sync::atomic::AtomicBool>,
    blocked: Arc<Mutex<Vec<SocketAddr>>>,
}

impl LossStats {
    /// Drops every outgoing packet from now on (`true`), or stops doing so: a node whose
    /// process was killed sends nothing, not even a goodbye.
    pub fn silence(&self, on: bool) {
        self.silenced.store(on, Ordering::Relaxed);
    }

    /// Drops (`true`) or stops dropping outgoing packets to `peer`: one side of a
    /// partition (block each side's address in the other's socket for both directions).
    pub fn block(&self, peer: SocketAddr, on: bool) {
        let mut b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        b.retain(|a| *a != peer);
        if on {
            b.push(peer);
        }
    }

    fn cuts(&self, to: SocketAddr) -> bool {
        self.silenced.load(Ordering::Relaxed)
            || self
                .blocked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&to)
    }

    /// Outgoing UDP packets dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Outgoing UDP packets handed to the real socket so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// An [`AsyncUdpSocket`] that drops outgoing packets with probability `loss`.
pub struct LossySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    drop_dist: Bernoulli,
    rng: Mutex<SmallRng>,
    stats: LossStats,
}

impl fmt::Debug for LossySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossySocket")
            .field("inner", &self.inner)
            .field("drop_dist", &self.drop_dist)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl LossySocket {
    /// Wraps `inner`, dropping each outgoing packet with probability `loss` (0.0 ..= 1.0)
    /// decided by a `SmallRng` seeded with `seed`. Returns the socket and its counters.
    pub fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        loss: f64,
        seed: u64,
    ) -> Result<(Self, LossStats), TransportError> {
        let drop_dist = Bernoulli::new(loss).map_err(|_| {
            TransportError::InvalidArgument(format!("loss {loss} is not within 0.0 ..= 1.0"))
        })?;
        let stats = LossStats::default();
        let socket = Self {
            inner,
            drop_dist,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            stats: stats.clone(),
        };
        Ok((socket, stats))
    }

    /// Outgoing UDP packets dropped so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped()
    }

    /// The counters handle of this socket.
    pub fn stats(&self) -> LossStats {
        self.stats.clone()
    }

    fn should_drop(&self) -> bool {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rng.sample(self.drop_dist)
    }
}

/// Number of UDP packets a transmit describes.
fn segments(transmit: &Transmit<'_>) -> u64 {
    match transmit.segment_size {
        Some(size) if size > 0 => transmit.contents.len().div_ceil(size) as u64,
        _ => 1,
    }
}

impl AsyncUdpSocket for LossySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // With `max_transmit_segments() == 1` quinn sends one packet per transmit; should a
        // batch arrive anyway, it is kept or dropped as a whole.
        if self.stats.cuts(transmit.destination) || self.should_drop() {
            self.stats
                .dropped
                .fetch_add(segments(transmit), Ordering::Relaxed);
            return Ok(());
        }
        self.inner.try_send(transmit)?;
        self.stats
            .sent
            .fetch_add(segments(transmit), Ordering::Relaxed);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Like [`crate::endpoint::bind`], but every outgoing packet of the endpoint is dropped with
/// probability `loss`, from an RNG seeded with `seed`. Returns the endpoint and the counters.
pub fn bind_lossy(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    client: quinn::ClientConfig,
    loss: f64,
    seed: u64,
) -> Result<(quinn::Endpoint, LossStats), TransportError> {
    let runtime = tokio_runtime(addr)?;
    let socket = udp_socket(addr)?;
    let inner = runtime
        .wrap_udp_socket(socket)
        .map_err(|e| bind_err(addr, e))?;
    let (lossy, stats) = LossySocket::new(inner, loss, seed)?;
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        Arc::new(lossy),
        runtime,
    )
    .map_err(|e| bind_err(addr, e))?;
    endpoint.set_default_client_config(client);
    Ok((endpoint, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Pki;
    use crate::endpoint::tests::{server, within};
    use crate::endpoint::{QuicTuning, client_config};

    #[test]
    fn loss_must_be_a_probability() {
        for loss in [-0.1, 1.5, f64::NAN] {
            let err = Bernoulli::new(loss).map(|_| ()).map_err(|_| ());
            assert!(err.is_err(), "{loss}");
        }
        let pki = Pki::generate().unwrap();
        let id = pki.issue("n").unwrap();
        let c = client_config(&id, &pki.ca_der(), &QuicTuning::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(async { bind_lossy("127.0.0.1:0".parse().unwrap(), None, c, 1.5, 1) })
            .unwrap_err();
        assert!(matches!(err, TransportError::InvalidArgument(_)), "{err}");
    }

    #[tokio::test]
    async fn stream_survives_twenty_percent_loss() {
        let pki = Pki::generate().unwrap();
        let server_ep = server(&pki, "origin");
        let id = pki.issue("relay-a").unwrap();
        let c = client_config(&id, &pki.ca_der(), &QuicTuning::default()).unwrap();
        let (client_ep, stats) =
            bind_lossy("127.0.0.1:0".parse().unwrap(), None, c, 0.2, 42).unwrap();

        let payload: Vec<u8> = (0..1u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
        let addr = server_ep.local_addr().unwrap();
        let sender = async {
            let conn = client_ep.connect(addr, "origin").unwrap().await.unwrap();
            let mut send = conn.open_uni().await.unwrap();
            send.write_all(&payload).await.unwrap();
            send.finish().unwrap();
            // Keep the connection open until the server has read everything.
            conn.closed().await
        };
        let receiver = async {
            let conn = server_ep.accept().await.unwrap().await.unwrap();
            let mut recv = conn.accept_uni().await.unwrap();
            let got = recv.read_to_end(2 << 20).await.unwrap();
            conn.close(crate::endpoint::CLOSE_OK, b"done");
            got
        };
        let (_, got) = within("1 MiB over a 20% lossy link", async {
            tokio::join!(sender, receiver)
        })
        .await;
        assert!(
            got == payload,
            "stream data corrupted ({} bytes)",
            got.len()
        );
        let (dropped, sent) = (stats.dropped(), stats.sent());
        assert!(dropped > 0, "nothing dropped");
        let rate = dropped as f64 / (dropped + sent) as f64;
        assert!(
            (0.12..0.28).contains(&rate),
            "drop rate {rate} ({dropped}/{sent})"
        );
    }
}
