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

/// Binds the endpoint of node `name` (origin or relay) at its topology address.
pub fn bind_node(topo: &Topology, name: &str, certs: &Certs) -> Result<Endpoint> {
    let addr = topo
        .listen_addr(name)
        .with_context(|| format!("{name:?} is not an origin or relay of the topology"))?;
    bind_at(addr, name, certs, true)
}

/// Binds an endpoint for `name` at `addr`, serving if `serve`.
pub fn bind_at(addr: SocketAddr, name: &str, certs: &Certs, serve: bool) -> Result<Endpoint> {
    let id = certs.identity(name)?;
    let ca = certs.ca()?;
    let tuning = QuicTuning::default();
    let server = if serve {
        Some(tickcast_transport::server_config(&id, &ca, &tuning)?)
    } else {
        None
    };
    let client = tickcast_transport::client_config(&id, &ca, &tuning)?;
    Ok(tickcast_transport::bind(addr, server, client)?)
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
                if c.relays.iter().any(|r| *r == node) {
                    Ok(())
                } else {
                    Err(format!(
                        "consumer {peer:?} does not list {node:?} among its relays"
                    ))
                }
            }
            (Role::Relay, Some(PeerRole::Relay)) => {
                if topo.upstream_candidates(peer).iter().any(|u| *u == node) {
                    Ok(())
                } else {
                    Err(format!("relay {peer:?} is not a child of {node:?}"))
                }
            }
            (Role::Publisher, Some(PeerRole::Publisher)) if node == topo.origin.name => Ok(()),
            (role, Some(actual)) => Err(format!(
                "{peer:?} is a {actual} in the topology and may not connect to {node:?} as {role:?}"
            )),
            (_, None) => Err(format!("{peer:?} is not in the topology")),
        }
    })
}

/// Gap settings from the topology's `[settings]`.
pub fn gap_config(topo: &Topology) -> GapConfig {
    GapConfig {
        reorder_delay: topo.settings.nack_delay,
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
    Ok(cfg)
}

/// Starts the origin of the topology; returns its publishing handle and counters.
pub fn start_origin(
    topo: &Topology,
    certs: &Certs,
    clock: Arc<dyn Clock>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(OriginHandle, Arc<RelayStats>)> {
    let name = topo.origin.name.clone();
    let ep = bind_node(topo, &name, certs)?;
    let origin = Origin::new(
        OriginConfig {
            relay: relay_config(topo, &name)?,
            epoch: 1,
            ingest_capacity: 65_536,
        },
        ep,
        clock,
    );
    let (h, s) = (origin.handle(), origin.stats());
    tasks.spawn(origin.run(shutdown.clone()));
    Ok((h, s))
}

/// Starts relay `name` of the topology; returns its counters.
pub fn start_relay(
    topo: &Topology,
    name: &str,
    certs: &Certs,
    clock: Arc<dyn Clock>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Arc<RelayStats>> {
    let ep = bind_node(topo, name, certs)?;
    let ups = upstreams(topo, &topo.upstream_candidates(name))?;
    let relay = Relay::new(relay_config(topo, name)?, ep, clock, Source::Parent(ups));
    let s = relay.stats();
    tasks.spawn(relay.run(shutdown.clone()));
    Ok(s)
}

/// Starts consumer `spec` on its own endpoint (127.0.0.1, any port).
pub fn start_consumer(
    topo: &Topology,
    spec: &ConsumerSpec,
    certs: &Certs,
    clock: Arc<dyn Clock>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<Subscription> {
    let ep = bind_at("127.0.0.1:0".parse()?, &spec.name, certs, false)?;
    let (client, sub) = Client::new(consumer_config(topo, spec)?, ep, clock);
    tasks.spawn(client.run(shutdown.clone()));
    Ok(sub)
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
    /// Every node task (wait on it after cancelling `shutdown` for a clean stop).
    pub tasks: TaskTracker,
}

/// Starts origin, every relay and every consumer of `topo`. Relays start parents-first,
/// but nothing depends on it: links retry until their upstream is there.
pub fn start_network(
    topo: &Topology,
    certs: &Certs,
    clock: Arc<dyn Clock>,
    shutdown: &CancellationToken,
) -> Result<Network> {
    let tasks = TaskTracker::new();
    let (origin, origin_stats) = start_origin(topo, certs, clock.clone(), &tasks, shutdown)?;
    let mut relays = Vec::new();
    for r in &topo.relays {
        relays.push((
            r.name.clone(),
            start_relay(topo, &r.name, certs, clock.clone(), &tasks, shutdown)?,
        ));
    }
    let mut consumers = Vec::new();
    for c in &topo.consumers {
        consumers.push((
            c.clone(),
            start_consumer(topo, c, certs, clock.clone(), &tasks, shutdown)?,
        ));
    }
    tasks.close();
    Ok(Network {
        origin,
        origin_stats,
        relays,
        consumers,
        tasks,
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
