//! Turns a validated [`Topology`] into running nodes: certificates, endpoints, per-node
//! configuration, who may connect to whom, and a whole local network in one process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use quinn::Endpoint;
use tickcast_client::{Client, ClientConfig, Subscription, Upstream};
use tickcast_origin::{Origin, OriginConfig, OriginHandle};
use tickcast_proto::Clock;
use tickcast_proto::codec::Role;
use tickcast_proto::gap::GapConfig;
use tickcast_proto::topology::{ConsumerSpec, PeerRole, Topology};
use tickcast_relay::{Authorize, Relay, RelayConfig, RelayStats, Source};
use tickcast_transport::{Identity, Pki, QuicTuning};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where node identities come from.
#[derive(Clone)]
pub enum Certs {
    /// A throwaway in-memory CA (for `up` and tests).
    Ephemeral(Arc<Pki>),
    /// Files written by `tickcast certs` in a directory.
    Dir(std::path::PathBuf),
}

impl Certs {
    /// A fresh throwaway CA.
    pub fn ephemeral() -> Result<Certs> {
        Ok(Certs::Ephemeral(Arc::new(Pki::generate()?)))
    }

    /// The CA certificate.
    pub fn ca(&self) -> Result<rustls_pki_types::CertificateDer<'static>> {
        Ok(match self {
            Certs::Ephemeral(p) => p.ca_der(),
            Certs::Dir(d) => tickcast_transport::load_ca(d)?,
        })
    }

    /// The identity (certificate chain and key) of `name`.
    pub fn identity(&self, name: &str) -> Result<Identity> {
        Ok(match self {
            Certs::Ephemeral(p) => p.issue(name)?,
            Certs::Dir(d) => tickcast_transport::load_identity(d, name)?,
        })
    }
}

/// What kind of UDP sockets nodes get.
#[derive(Clone, Debug, Default)]
pub enum Sockets {
    /// Plain UDP sockets.
    #[default]
    Real,
    /// Test aid: every endpoint drops this fraction of the packets it sends (seeded).
    Lossy {
        /// Drop probability per packet.
        loss: f64,
        /// Base seed; each endpoint derives its own from it and its name.
        seed: u64,
        /// Counters and switches of every lossy endpoint made, by endpoint name.
        stats: Arc<std::sync::Mutex<BTreeMap<String, tickcast_transport::LossStats>>>,
    },
}

impl Sockets {
    /// Packets dropped so far by all lossy endpoints.
    pub fn dropped(&self) -> u64 {
        match self {
            Sockets::Real => 0,
            Sockets::Lossy { stats, .. } => stats
                .lock()
                .expect("stats")
                .values()
                .map(|s| s.dropped())
                .sum(),
        }
    }

    /// Switchable sockets without random loss (for `--kill` and partitions).
    pub fn switchable() -> Sockets {
        Sockets::Lossy {
            loss: 0.0,
            seed: 0,
            stats: Default::default(),
        }
    }

    /// The switches of endpoint `name`, if it was made by these (lossy) sockets.
    pub fn control(&self, name: &str) -> Option<tickcast_transport::LossStats> {
        match self {
            Sockets::Real => None,
            Sockets::Lossy { stats, .. } => stats.lock().expect("stats").get(name).cloned(),
        }
    }
}

/// Binds the serving endpoint of origin or relay `name` at its topology address.
fn bind_node(topo: &Topology, name: &str, certs: &Certs, sockets: &Sockets) -> Result<Endpoint> {
    let addr = topo
        .listen_addr(name)
        .with_context(|| format!("{name:?} is not an origin or relay of the topology"))?;
    bind_with(addr, name, certs, true, sockets)
}

/// Binds an endpoint for `name` at `addr`, serving if `serve`.
pub fn bind_at(addr: SocketAddr, name: &str, certs: &Certs, serve: bool) -> Result<Endpoint> {
    bind_with(addr, name, certs, serve, &Sockets::Real)
}

/// Binds an endpoint for `name` at `addr` on the given kind of socket.
pub fn bind_with(
    addr: SocketAddr,
    name: &str,
    certs: &Certs,
    serve: bool,
    sockets: &Sockets,
) -> Result<Endpoint> {
    let id = certs.identity(name)?;
    let ca = certs.ca()?;
    let tuning = QuicTuning::default();
    let server = if serve {
        Some(tickcast_transport::server_config(&id, &ca, &tuning)?)
    } else {
        None
    };
    let client = tickcast_transport::client_config(&id, &ca, &tuning)?;
    match sockets {
        Sockets::Real => Ok(tickcast_transport::bind(addr, server, client)?),
        Sockets::Lossy { loss, seed, stats } => {
            let seed = name
                .bytes()
                .fold(*seed, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
            let (ep, s) = tickcast_transport::bind_lossy(addr, server, client, *loss, seed)?;
            stats.lock().expect("stats").insert(name.to_string(), s);
            Ok(ep)
        }
    }
}

/// Who may connect to `node`: consumers that list it, relays whose upstream candidates
/// include it, and (at the origin) the topology's publishers.
pub fn authorize(topo: &Topology, node: &str) -> Authorize {
    let topo = topo.clone();
    let node = node.to_string();
    Arc::new(move |peer: &str, role: Role| {
        let known = topo.role_of(peer);
        match (role, known) {
            (Role::Consumer, Some(PeerRole::Consumer)) => {
                let c = topo.consumer(peer).expect("consumer");
                if c.relays.contains(&node) {
                    Ok(())
                } else {
                    Err(format!(
                        "consumer {peer:?} does not list {node:?} among its relays"
                    ))
                }
            }
            // The standby origin follows the primary as a relay-role subscriber.
            (Role::Relay, Some(PeerRole::Origin))
                if node == topo.origin.name && topo.standby_of(&node) == Some(peer) =>
            {
                Ok(())
            }
            (Role::Relay, Some(PeerRole::Relay)) => {
                if feeds_of(&topo, peer).iter().flatten().any(|u| *u == node) {
                    Ok(())
                } else {
                    Err(format!("relay {peer:?} is not a child of {node:?}"))
                }
            }
            (Role::Publisher, Some(PeerRole::Publisher)) if topo.origin_spec(&node).is_some() => {
                Ok(())
            }
            (role, Some(actual)) => Err(format!(
                "{peer:?} is a {actual} in the topology and may not connect to {node:?} as {role:?}"
            )),
            (_, None) => Err(format!("{peer:?} is not in the topology")),
        }
    })
}

/// The upstream feeds of relay `name`, each a candidate list tried in order. A relay has
/// one feed: its parent, then the parent's standby. A standby relay has two at once (first
/// copy wins): its primary, which re-broadcasts to it, and the primary's parent (then that
/// parent's standby) — so its ring holds what the primary's holds, and it keeps receiving
/// when the primary dies.
pub fn feeds_of(topo: &Topology, name: &str) -> Vec<Vec<String>> {
    let parents = topo.upstream_candidates(name);
    match topo.primary_of(name) {
        Some(primary) => vec![vec![primary.to_string()], parents],
        None => vec![parents],
    }
}

/// Gap settings from the topology's `[settings]`.
pub fn gap_config(topo: &Topology) -> GapConfig {
    GapConfig {
        reorder_delay: topo.settings.nack_delay,
        reorder_packets: topo.settings.nack_after_packets,
        ..GapConfig::default()
    }
}

/// The serving configuration of origin or relay `name`.
pub fn relay_config(topo: &Topology, name: &str) -> Result<RelayConfig> {
    let ring = topo
        .ring_of(name)
        .with_context(|| format!("{name:?} is not an origin or relay"))?;
    let mut cfg = RelayConfig::new(
        name,
        topo.channels.iter().map(|c| c.id).collect(),
        ring,
        authorize(topo, name),
    );
    cfg.heartbeat = topo.settings.heartbeat;
    cfg.dead_after = topo.settings.dead_after;
    cfg.gap = gap_config(topo);
    Ok(cfg)
}

/// Upstream candidates (name and address) for a list of node names.
pub fn upstreams(topo: &Topology, names: &[String]) -> Result<Vec<Upstream>> {
    names
        .iter()
        .map(|n| {
            let addr = topo
                .listen_addr(n)
                .with_context(|| format!("{n:?} has no listen address"))?;
            Ok(Upstream {
                name: n.clone(),
                addr,
            })
        })
        .collect()
}

/// The client configuration of consumer `spec`.
pub fn consumer_config(topo: &Topology, spec: &ConsumerSpec) -> Result<ClientConfig> {
    let mut cfg = ClientConfig::new(
        spec.name.clone(),
        upstreams(topo, &spec.relays)?,
        spec.channels.clone(),
    );
    cfg.gap = gap_config(topo);
    cfg.heartbeat = topo.settings.heartbeat;
    cfg.dead_after = topo.settings.dead_after;
    cfg.dual_feed = spec.dual_feed;
    Ok(cfg)
}

/// Origin `name` (the origin, or its standby) on a given endpoint, not yet running.
pub fn origin_on(
    topo: &Topology,
    name: &str,
    endpoint: Endpoint,
    clock: Arc<dyn Clock>,
) -> Result<Origin> {
    anyhow::ensure!(
        topo.origin_spec(name).is_some(),
        "{name:?} is not an origin of the topology"
    );
    Ok(Origin::new(origin_config(topo, name)?, endpoint, clock))
}

/// Relay `name` on a given endpoint, subscribed through its feeds, not yet running.
pub fn relay_on(
    topo: &Topology,
    name: &str,
    endpoint: Endpoint,
    clock: Arc<dyn Clock>,
) -> Result<Relay> {
    let feeds = feeds_of(topo, name)
        .iter()
        .map(|f| upstreams(topo, f))
        .collect::<Result<Vec<_>>>()?;
    Ok(Relay::new(
        relay_config(topo, name)?,
        endpoint,
        clock,
        Source::Parents(feeds),
    ))
}

/// The configuration of origin `name`: the primary gates on its standby's confirmations;
/// the standby follows the primary.
pub fn origin_config(topo: &Topology, name: &str) -> Result<OriginConfig> {
    let primary = &topo.origin.name;
    let mut relay = relay_config(topo, name)?;
    let standby_of = if name == primary {
        relay.standby = topo.origin_standby.as_ref().map(|o| o.name.clone());
        None
    } else {
        Some(
            upstreams(topo, std::slice::from_ref(primary))?
                .pop()
                .expect("one upstream"),
        )
    };
    Ok(OriginConfig {
        relay,
        epoch: 1,
        ingest_capacity: 65_536,
        standby_of,
    })
}

/// Starts nodes in this process: each binds its own endpoint on `sockets` and runs as a
/// task of `tasks` until its shutdown token is cancelled.
pub struct Launcher<'a> {
    /// Where identities come from.
    pub certs: &'a Certs,
    /// The clock every node gets.
    pub clock: Arc<dyn Clock>,
    /// Where node tasks are tracked.
    pub tasks: &'a TaskTracker,
    /// Socket kind.
    pub sockets: &'a Sockets,
}

impl Launcher<'_> {
    /// Starts origin `name` (the origin, or its standby, which follows the origin and takes
    /// over if it dies); returns its publishing handle and counters.
    pub fn origin(
        &self,
        topo: &Topology,
        name: &str,
        shutdown: &CancellationToken,
    ) -> Result<(OriginHandle, Arc<RelayStats>)> {
        let ep = bind_node(topo, name, self.certs, self.sockets)?;
        let origin = origin_on(topo, name, ep, self.clock.clone())?;
        let (h, s) = (origin.handle(), origin.stats());
        self.tasks.spawn(origin.run(shutdown.clone()));
        Ok((h, s))
    }

    /// Starts relay `name`; returns its counters.
    pub fn relay(
        &self,
        topo: &Topology,
        name: &str,
        shutdown: &CancellationToken,
    ) -> Result<Arc<RelayStats>> {
        let ep = bind_node(topo, name, self.certs, self.sockets)?;
        let relay = relay_on(topo, name, ep, self.clock.clone())?;
        let s = relay.stats();
        self.tasks.spawn(relay.run(shutdown.clone()));
        Ok(s)
    }

    /// Starts a consumer with configuration `cfg` on its own endpoint (127.0.0.1, any port).
    pub fn consumer(
        &self,
        cfg: ClientConfig,
        shutdown: &CancellationToken,
    ) -> Result<Subscription> {
        let ep = bind_with(
            "127.0.0.1:0".parse()?,
            &cfg.name,
            self.certs,
            false,
            self.sockets,
        )?;
        let (client, sub) = Client::new(cfg, ep, self.clock.clone());
        self.tasks.spawn(client.run(shutdown.clone()));
        Ok(sub)
    }
}

/// A whole topology running in this process.
pub struct Network {
    /// Publishing into the origin.
    pub origin: OriginHandle,
    /// Origin counters.
    pub origin_stats: Arc<RelayStats>,
    /// Relay counters by name, in topology order.
    pub relays: Vec<(String, Arc<RelayStats>)>,
    /// Consumer subscriptions, in topology order.
    pub consumers: Vec<(ConsumerSpec, Subscription)>,
    /// Every node task (close and wait on it after cancelling `shutdown` for a clean stop).
    pub tasks: TaskTracker,
    /// Kill switches and partitions.
    pub control: NodeControl,
}

/// Fault injection on a running in-process network.
#[derive(Clone, Debug)]
pub struct NodeControl {
    /// Each origin's and relay's own shutdown (a child of the network's).
    pub node_tokens: BTreeMap<String, CancellationToken>,
    /// The sockets the nodes were bound with (their switches, when switchable).
    pub sockets: Sockets,
}

impl NodeControl {
    /// Kills node `name` the way `kill -9` would, as its peers see it: from this instant
    /// it sends nothing (no goodbye), then its tasks stop. Needs switchable sockets.
    pub fn kill(&self, name: &str) -> Result<()> {
        let ctl = self
            .sockets
            .control(name)
            .with_context(|| format!("cannot kill {name:?}: not started on switchable sockets"))?;
        ctl.silence(true);
        if let Some(t) = self.node_tokens.get(name) {
            t.cancel();
        }
        Ok(())
    }

    /// Cuts (`on`) or heals the link between nodes `a` and `b`, both directions.
    pub fn partition(&self, topo: &Topology, a: &str, b: &str, on: bool) -> Result<()> {
        for (from, to) in [(a, b), (b, a)] {
            let ctl = self
                .sockets
                .control(from)
                .with_context(|| format!("cannot partition {from:?}: not on switchable sockets"))?;
            let addr = topo
                .listen_addr(to)
                .with_context(|| format!("{to:?} has no listen address"))?;
            ctl.block(addr, on);
        }
        Ok(())
    }
}

/// Options for [`start_network_with`].
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// Socket kind for every node and consumer.
    pub sockets: Sockets,
    /// Consumers of the topology not to start (a test starts them itself, later).
    pub skip_consumers: Vec<String>,
}

/// Starts origin, every relay and every consumer of `topo`. Relays start parents-first,
/// but nothing depends on it: links retry until their upstream is there.
pub fn start_network(
    topo: &Topology,
    certs: &Certs,
    clock: Arc<dyn Clock>,
    shutdown: &CancellationToken,
) -> Result<Network> {
    start_network_with(topo, certs, clock, shutdown, &NetOptions::default())
}

/// [`start_network`] with options.
pub fn start_network_with(
    topo: &Topology,
    certs: &Certs,
    clock: Arc<dyn Clock>,
    shutdown: &CancellationToken,
    opts: &NetOptions,
) -> Result<Network> {
    let tasks = TaskTracker::new();
    let sockets = &opts.sockets;
    let launch = Launcher {
        certs,
        clock,
        tasks: &tasks,
        sockets,
    };
    // Each origin and relay gets its own token (a child of `shutdown`), so it can be killed.
    let mut node_tokens = BTreeMap::new();
    let mut token_for = |name: &str| {
        let t = shutdown.child_token();
        node_tokens.insert(name.to_string(), t.clone());
        t
    };
    let (origin, origin_stats) =
        launch.origin(topo, &topo.origin.name, &token_for(&topo.origin.name))?;
    if let Some(sb) = &topo.origin_standby {
        launch.origin(topo, &sb.name, &token_for(&sb.name))?;
    }
    let mut relays = Vec::new();
    for r in &topo.relays {
        relays.push((
            r.name.clone(),
            launch.relay(topo, &r.name, &token_for(&r.name))?,
        ));
    }
    let mut consumers = Vec::new();
    for c in &topo.consumers {
        if opts.skip_consumers.contains(&c.name) {
            continue;
        }
        consumers.push((
            c.clone(),
            launch.consumer(consumer_config(topo, c)?, shutdown)?,
        ));
    }
    // Closing only lets `wait` finish once tasks end; later spawns (late consumers) still work.
    tasks.close();
    Ok(Network {
        origin,
        origin_stats,
        relays,
        consumers,
        tasks,
        control: NodeControl {
            node_tokens,
            sockets: sockets.clone(),
        },
    })
}

/// Loads a topology file, with the path in any error.
pub fn load_topology(path: &Path) -> Result<Topology> {
    Topology::load(path).with_context(|| format!("{}", path.display()))
}

/// Fails unless every certificate file the node needs exists (naming the missing one).
pub fn check_certs(topo: &Topology, name: &str) -> Result<()> {
    if topo.role_of(name).is_none() {
        bail!("{name:?} is not in the topology");
    }
    topo.check_cert_files(name)?;
    Ok(())
}

/// Relay counters as a name → value map (for tables and JSON).
pub fn relay_counters(s: &RelayStats) -> BTreeMap<&'static str, u64> {
    use std::sync::atomic::Ordering::Relaxed;
    BTreeMap::from([
        ("received", s.received.load(Relaxed)),
        ("duplicates", s.duplicates.load(Relaxed)),
        ("datagrams_out", s.datagrams_out.load(Relaxed)),
        ("forwarded_raw", s.forwarded_raw.load(Relaxed)),
        ("nacks_in", s.nacks_in.load(Relaxed)),
        ("repaired_out", s.repaired_out.load(Relaxed)),
        ("unavailable_out", s.unavailable_out.load(Relaxed)),
        ("nacks_up", s.nacks_up.load(Relaxed)),
        ("lost", s.lost.load(Relaxed)),
        ("child_drops", s.child_drops.load(Relaxed)),
        ("children", s.children.load(Relaxed)),
        ("upstream_connects", s.upstream_connects.load(Relaxed)),
    ])
}
