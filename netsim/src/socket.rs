//! The simulated UDP socket quinn runs on.
//!
//! Owns [`SimSocket`], a quinn [`AsyncUdpSocket`] bound to a virtual address of a
//! [`SimNet`](crate::net::SimNet): sending hands the datagram to the net (which applies the
//! link model and schedules its arrival), receiving drains the socket's own queue, which
//! the net fills when datagrams arrive. No segmentation offload (one datagram per
//! transmit and per receive), no ECN, no fragmentation. The socket never blocks a sender:
//! congestion drops happen in the links' queues, as in a router. A crashed socket drops
//! everything it is given, in and out, and never reports anything again. It does not route,
//! time or drop packets itself: that is [`crate::net`]'s.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use crate::net::NetInner;

/// Datagrams a socket buffers before it drops arrivals (like a kernel receive buffer).
pub const RECV_QUEUE: usize = 16_384;

/// The receiving half shared by a socket and the net that delivers to it.
#[derive(Debug, Default)]
pub(crate) struct SocketCore {
    rx: Mutex<RxState>,
    crashed: AtomicBool,
}

#[derive(Debug, Default)]
struct RxState {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    waker: Option<Waker>,
    overflow: u64,
}

impl SocketCore {
    /// Queues an arrival; returns the waker to wake (outside any lock), if any. Drops the
    /// datagram when the socket is crashed or its queue is full.
    pub(crate) fn push(&self, from: SocketAddr, data: Vec<u8>) -> Option<Waker> {
        if self.is_crashed() {
            return None;
        }
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        if rx.queue.len() >= RECV_QUEUE {
            rx.overflow += 1;
            return None;
        }
        rx.queue.push_back((from, data));
        rx.waker.take()
    }

    /// Marks the socket crashed: it drops everything from now on.
    pub(crate) fn crash(&self) {
        self.crashed.store(true, Ordering::SeqCst);
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        rx.queue.clear();
        rx.waker = None;
    }

    /// Whether the socket is crashed.
    pub(crate) fn is_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Arrivals dropped because the receive queue was full.
    pub(crate) fn overflow(&self) -> u64 {
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).overflow
    }
}

/// A UDP socket on the simulated network; build it with
/// [`SimNet::bind`](crate::net::SimNet::bind).
pub struct SimSocket {
    addr: SocketAddr,
    core: Arc<SocketCore>,
    net: Arc<NetInner>,
}

impl fmt::Debug for SimSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSocket")
            .field("addr", &self.addr)
            .field("crashed", &self.core.is_crashed())
            .finish_non_exhaustive()
    }
}

impl SimSocket {
    pub(crate) fn new(addr: SocketAddr, core: Arc<SocketCore>, net: Arc<NetInner>) -> Self {
        SimSocket { addr, core, net }
    }

    /// Whether this socket's node has crashed (it then drops everything).
    pub fn is_crashed(&self) -> bool {
        self.core.is_crashed()
    }
}

/// Always writable: the simulated socket never pushes back on a sender.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for SimSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // `max_transmit_segments() == 1`, but split a batch anyway should one arrive.
        let seg = transmit
            .segment_size
            .filter(|s| *s > 0)
            .unwrap_or(transmit.contents.len().max(1));
        for chunk in transmit.contents.chunks(seg) {
            self.net
                .send(self.addr, &self.core, transmit.destination, chunk);
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        if self.core.is_crashed() {
            return Poll::Pending;
        }
        let mut rx = self.core.rx.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            let Some((from, data)) = rx.queue.pop_front() else {
                break;
            };
            let len = data.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&data[..len]);
            meta[n] = RecvMeta {
                addr: from,
                len,
                stride: len,
                ecn: None,
                dst_ip: Some(self.addr.ip()),
            };
            n += 1;
        }
        if n == 0 {
            rx.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
