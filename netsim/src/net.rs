//! The simulated network: virtual addresses, links between them, and faults.
//!
//! Owns [`SimNet`]: which [`SimSocket`] listens at which virtual address and for which
//! node, one [`Link`] per directed pair of addresses (created on first use with the
//! profile a [`LinkModel`] gives and an RNG seeded from the net's seed and the two node
//! names, so the order in which links come into use does not matter), an optional uplink
//! per node (the node's own NIC: bandwidth and queue shared by all its destinations),
//! packets in flight, and the fault state (crashed nodes, partitioned node pairs).
//!
//! One driver task delivers packets when they are due, sleeping on a tokio timer until the
//! next arrival, so the same code runs in paused virtual time and in real time. Under
//! paused time tokio timers have 1 ms resolution: a packet due at 10.3 ms arrives at 11 ms.
//! Partitions are checked when a packet is sent (what is already on the wire arrives);
//! crashes when it is sent and when it arrives. It does not know about QUIC or tickcast.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};

use crate::link::{DropReason, Link, LinkProfile, LinkStats, Verdict};
use crate::socket::{SimSocket, SocketCore};

/// Gives the profile of the link between two nodes (by node name), and each node's uplink.
pub trait LinkModel: Send + Sync {
    /// The path from node `from` to node `to`.
    fn path(&self, from: &str, to: &str) -> LinkProfile;
    /// The uplink every packet of `node` crosses first (bandwidth and queue; its delay is
    /// added too). `None`: no uplink limit.
    fn uplink(&self, _node: &str) -> Option<LinkProfile> {
        None
    }
}

/// The same profile between every pair of nodes, no uplinks.
#[derive(Clone, Debug, Default)]
pub struct UniformLinks(pub LinkProfile);

impl LinkModel for UniformLinks {
    fn path(&self, _from: &str, _to: &str) -> LinkProfile {
        self.0.clone()
    }
}

/// Traffic counters of one node (summed over its restarts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostStats {
    /// Packets the node sent.
    pub packets_out: u64,
    /// Bytes the node sent (UDP payload).
    pub bytes_out: u64,
    /// Packets that arrived at the node.
    pub packets_in: u64,
    /// Bytes that arrived at the node.
    pub bytes_in: u64,
    /// Arrivals dropped because its receive queue was full.
    pub recv_overflow: u64,
}

struct Host {
    name: String,
    core: Arc<SocketCore>,
}

struct Packet {
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

#[derive(Default)]
struct State {
    hosts: BTreeMap<SocketAddr, Host>,
    names: BTreeMap<SocketAddr, String>,
    host_stats: BTreeMap<String, HostStats>,
    links: BTreeMap<(SocketAddr, SocketAddr), Link>,
    uplinks: BTreeMap<SocketAddr, Option<Link>>,
    in_flight: BTreeMap<(Instant, u64), Packet>,
    next_id: u64,
    /// Deadline the driver sleeps toward.
    armed: Option<Instant>,
    crashed: BTreeSet<String>,
    blocked: BTreeSet<(String, String)>,
}

/// The shared insides of a [`SimNet`] (sockets hold it to send).
pub(crate) struct NetInner {
    seed: u64,
    model: Arc<dyn LinkModel>,
    state: Mutex<State>,
    notify: Notify,
    closed: AtomicBool,
}

/// 64-bit FNV-1a over several byte strings (separated), for stable seeds from names.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl NetInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn link_seed(&self, from: &str, to: &str) -> u64 {
        stable_hash(&[&self.seed.to_le_bytes(), from.as_bytes(), to.as_bytes()])
    }

    /// Takes a datagram from the socket at `from` (its core `core`) toward `to`.
    pub(crate) fn send(
        &self,
        from: SocketAddr,
        core: &Arc<SocketCore>,
        to: SocketAddr,
        data: &[u8],
    ) {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        let from_name = st
            .names
            .get(&from)
            .cloned()
            .unwrap_or_else(|| from.to_string());
        let to_name = st.names.get(&to).cloned().unwrap_or_else(|| to.to_string());
        let hs = st.host_stats.entry(from_name.clone()).or_default();
        hs.packets_out += 1;
        hs.bytes_out += data.len() as u64;
        let link = st.links.entry((from, to)).or_insert_with(|| {
            Link::new(
                self.model.path(&from_name, &to_name),
                self.link_seed(&from_name, &to_name),
            )
        });
        if core.is_crashed() || st.crashed.contains(&from_name) {
            link.count_external_drop(data.len(), DropReason::Crashed);
            return;
        }
        if st.blocked.contains(&(from_name.clone(), to_name.clone())) {
            link.count_external_drop(data.len(), DropReason::Partition);
            return;
        }
        if !st.hosts.contains_key(&to) {
            link.count_external_drop(data.len(), DropReason::NoRoute);
            return;
        }
        // The sender's uplink first, then the path.
        let uplink = st.uplinks.entry(from).or_insert_with(|| {
            self.model.uplink(&from_name).map(|p| {
                Link::new(
                    p,
                    stable_hash(&[&self.seed.to_le_bytes(), b"uplink", from_name.as_bytes()]),
                )
            })
        });
        let offered = match uplink {
            Some(up) => match up.admit(now, data.len()) {
                Verdict::Deliver(at) => at,
                Verdict::Drop(why) => {
                    link.count_external_drop(data.len(), why);
                    return;
                }
            },
            None => now,
        };
        let Verdict::Deliver(at) = link.admit(offered, data.len()) else {
            return;
        };
        let id = st.next_id;
        st.next_id += 1;
        st.in_flight.insert(
            (at, id),
            Packet {
                from,
                to,
                data: data.to_vec(),
            },
        );
        if st.armed.is_none_or(|a| at < a) {
            st.armed = Some(at);
            self.notify.notify_one();
        }
    }

    /// Delivers every packet due by `now`; returns the wakers to wake and the next deadline.
    fn deliver_due(&self, now: Instant) -> (Vec<Waker>, Option<Instant>) {
        let mut wakers = Vec::new();
        let mut st = self.lock();
        let st = &mut *st;
        while let Some(entry) = st.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            let Some(host) = st.hosts.get(&p.to) else {
                continue;
            };
            if host.core.is_crashed() || st.crashed.contains(&host.name) {
                if let Some(l) = st.links.get_mut(&(p.from, p.to)) {
                    l.arrived_at_crashed_node();
                }
                continue;
            }
            let hs = st.host_stats.entry(host.name.clone()).or_default();
            hs.packets_in += 1;
            hs.bytes_in += p.data.len() as u64;
            if let Some(w) = host.core.push(p.from, p.data) {
                wakers.push(w);
            }
        }
        let next = st.in_flight.first_key_value().map(|(k, _)| k.0);
        st.armed = next;
        (wakers, next)
    }
}

/// A simulated network. Cheap to clone; every clone is the same network.
#[derive(Clone)]
pub struct SimNet {
    inner: Arc<NetInner>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNet")
            .field("seed", &self.inner.seed)
            .finish_non_exhaustive()
    }
}

impl SimNet {
    /// A network whose links follow `model`, with randomness derived from `seed`. Spawns
    /// its delivery task, so it must be called inside a tokio runtime; the task ends at
    /// [`SimNet::close`] (or with the runtime).
    pub fn new(seed: u64, model: Arc<dyn LinkModel>) -> SimNet {
        let inner = Arc::new(NetInner {
            seed,
            model,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(drive(inner.clone()));
        SimNet { inner }
    }

    /// Binds a socket for node `name` at the virtual address `addr`. Fails if a live socket
    /// is already bound there; a crashed node's address can be bound again (a restart).
    pub fn bind(&self, addr: SocketAddr, name: &str) -> io::Result<Arc<SimSocket>> {
        let mut st = self.inner.lock();
        if let Some(h) = st.hosts.get(&addr)
            && !h.core.is_crashed()
        {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already bound by {:?}", h.name),
            ));
        }
        if let Some(other) = st.names.get(&addr)
            && other != name
        {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} belongs to {other:?}, not {name:?}"),
            ));
        }
        let core = Arc::new(SocketCore::default());
        st.hosts.insert(
            addr,
            Host {
                name: name.to_owned(),
                core: core.clone(),
            },
        );
        st.names.insert(addr, name.to_owned());
        st.crashed.remove(name);
        st.host_stats.entry(name.to_owned()).or_default();
        Ok(Arc::new(SimSocket::new(addr, core, self.inner.clone())))
    }

    /// A quinn endpoint for node `name` on a fresh socket at `addr`, serving if `server` is
    /// given. quinn's randomness is seeded with `rng_seed` (connection ids and packet
    /// numbers then repeat from run to run).
    pub fn endpoint(
        &self,
        addr: SocketAddr,
        name: &str,
        server: Option<quinn::ServerConfig>,
        client: quinn::ClientConfig,
        rng_seed: [u8; 32],
    ) -> io::Result<quinn::Endpoint> {
        let socket = self.bind(addr, name)?;
        let mut cfg = quinn::EndpointConfig::default();
        cfg.rng_seed(Some(rng_seed));
        let mut ep = quinn::Endpoint::new_with_abstract_socket(
            cfg,
            server,
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        ep.set_default_client_config(client);
        Ok(ep)
    }

    /// Crashes node `name`: its socket drops everything in and out from now on (no goodbye
    /// packets reach anyone), and so do packets still in flight to it.
    pub fn crash(&self, name: &str) {
        let mut st = self.inner.lock();
        st.crashed.insert(name.to_owned());
        for h in st.hosts.values() {
            if h.name == name {
                h.core.crash();
            }
        }
    }

    /// Whether node `name` is crashed (and not yet rebound).
    pub fn is_crashed(&self, name: &str) -> bool {
        self.inner.lock().crashed.contains(name)
    }

    /// Blocks packets from node `from` to node `to` (and back unless `oneway`).
    pub fn partition(&self, from: &str, to: &str, oneway: bool) {
        let mut st = self.inner.lock();
        st.blocked.insert((from.to_owned(), to.to_owned()));
        if !oneway {
            st.blocked.insert((to.to_owned(), from.to_owned()));
        }
    }

    /// Lifts a partition from `from` to `to` (and back unless `oneway`).
    pub fn heal(&self, from: &str, to: &str, oneway: bool) {
        let mut st = self.inner.lock();
        st.blocked.remove(&(from.to_owned(), to.to_owned()));
        if !oneway {
            st.blocked.remove(&(to.to_owned(), from.to_owned()));
        }
    }

    /// Lifts every partition.
    pub fn heal_all(&self) {
        self.inner.lock().blocked.clear();
    }

    /// Counters of every directed link that carried a packet, by (from, to) node name.
    pub fn link_stats(&self) -> BTreeMap<(String, String), LinkStats> {
        let st = self.inner.lock();
        let name = |a: &SocketAddr| st.names.get(a).cloned().unwrap_or_else(|| a.to_string());
        let mut out: BTreeMap<(String, String), LinkStats> = BTreeMap::new();
        for ((f, t), l) in &st.links {
            out.entry((name(f), name(t))).or_default().add(l.stats());
        }
        out
    }

    /// Traffic counters per node name.
    pub fn host_stats(&self) -> BTreeMap<String, HostStats> {
        let st = self.inner.lock();
        let mut out = st.host_stats.clone();
        for h in st.hosts.values() {
            out.entry(h.name.clone()).or_default().recv_overflow += h.core.overflow();
        }
        out
    }

    /// Stops the delivery task; packets in flight are dropped.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.notify.notify_one();
    }
}

/// The delivery task.
async fn drive(inner: Arc<NetInner>) {
    loop {
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let (wakers, next) = inner.deliver_due(Instant::now());
        for w in wakers {
            w.wake();
        }
        match next {
            Some(at) => {
                tokio::select! {
                    biased;
                    _ = inner.notify.notified() => {}
                    _ = sleep_until(at) => {}
                }
            }
            None => inner.notify.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Sends raw datagrams through the net (no QUIC) and records arrival times.
    async fn send_and_time(
        net: &SimNet,
        n: usize,
        every: Duration,
        len: usize,
    ) -> (Vec<(Instant, Instant)>, LinkStats) {
        use quinn::AsyncUdpSocket;
        use std::future::poll_fn;
        let a = net.bind(addr("127.0.0.1:1"), "a").unwrap();
        let b = net.bind(addr("127.0.0.2:1"), "b").unwrap();
        let mut sent_at = Vec::new();
        let recv = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 2000];
            while got.len() < n {
                let mut meta = [quinn::udp::RecvMeta::default()];
                let res = tokio::time::timeout(
                    Duration::from_secs(5),
                    poll_fn(|cx| {
                        let mut bufs = [std::io::IoSliceMut::new(&mut buf)];
                        b.poll_recv(cx, &mut bufs, &mut meta)
                    }),
                )
                .await;
                let Ok(Ok(k)) = res else { break };
                assert_eq!(k, 1);
                let idx = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
                got.push((idx, Instant::now()));
            }
            got
        });
        for i in 0..n {
            let mut data = vec![0u8; len];
            data[..8].copy_from_slice(&(i as u64).to_le_bytes());
            sent_at.push(Instant::now());
            a.try_send(&quinn::udp::Transmit {
                destination: addr("127.0.0.2:1"),
                ecn: None,
                contents: &data,
                segment_size: None,
                src_ip: None,
            })
            .unwrap();
            tokio::time::sleep(every).await;
        }
        let got = recv.await.unwrap();
        let stats = net.link_stats()[&("a".to_owned(), "b".to_owned())].clone();
        (
            got.into_iter().map(|(i, at)| (sent_at[i], at)).collect(),
            stats,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_arrives_before_its_delay() {
        let p = LinkProfile {
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(5),
            ..LinkProfile::default()
        };
        let net = SimNet::new(1, Arc::new(UniformLinks(p)));
        let (times, stats) = send_and_time(&net, 200, Duration::from_micros(700), 100).await;
        assert_eq!(times.len(), 200);
        assert_eq!(stats.delivered, 200);
        let mut late = 0;
        for (sent, got) in &times {
            let d = *got - *sent;
            assert!(d >= Duration::from_millis(30), "arrived after {d:?}");
            // 1 ms timer resolution plus the jitter bound.
            assert!(d <= Duration::from_millis(36), "arrived after {d:?}");
            if d > Duration::from_millis(31) {
                late += 1;
            }
        }
        assert!(late > 0, "no jitter seen");
        net.close();
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_caps_throughput_and_queue_overflows() {
        // 1 Mbit/s: a 1250-byte packet takes 10 ms; offered every 5 ms (twice the rate).
        let p = LinkProfile {
            delay: Duration::from_millis(10),
            bandwidth_bps: Some(1_000_000),
            queue_bytes: 5 * 1250,
            mtu: 1500,
            ..LinkProfile::default()
        };
        let net = SimNet::new(2, Arc::new(UniformLinks(p)));
        let (times, stats) = send_and_time(&net, 100, Duration::from_millis(5), 1250).await;
        assert!(stats.queue_dropped >= 40, "{stats:?}");
        assert_eq!(times.len() as u64, stats.delivered);
        let mut arrivals: Vec<Instant> = times.iter().map(|t| t.1).collect();
        arrivals.sort();
        for w in arrivals.windows(2) {
            // One packet per 10 ms of serialization (timer rounding may bunch by 1 ms).
            assert!(w[1] - w[0] >= Duration::from_millis(9), "{:?}", w[1] - w[0]);
        }
        for (sent, got) in &times {
            assert!(*got - *sent >= Duration::from_millis(20));
        }
        net.close();
    }

    #[tokio::test(start_paused = true)]
    async fn crash_and_partition_drop_everything() {
        let net = SimNet::new(
            3,
            Arc::new(UniformLinks(LinkProfile::with_delay(
                Duration::from_millis(5),
            ))),
        );
        net.partition("a", "b", true);
        let (times, stats) = send_and_time(&net, 10, Duration::from_millis(1), 64).await;
        assert!(times.is_empty());
        assert_eq!(stats.partition_dropped, 10);
        net.heal("a", "b", true);
        net.crash("b");
        assert!(net.is_crashed("b"));
        // Rebinding a crashed node's address is a restart; a live one is in use.
        assert!(net.bind(addr("127.0.0.1:1"), "a").is_err());
        net.bind(addr("127.0.0.2:1"), "b").unwrap();
        assert!(!net.is_crashed("b"));
        assert!(net.bind(addr("127.0.0.2:1"), "c").is_err());
        net.close();
    }
}
