//! From a [`Scenario`] to what runs: the tickcast topology, virtual addresses, link
//! profiles between nodes, and each consumer's path and latency floor.
//!
//! Owns [`Plan`] (built by [`Plan::new`] for a [`Shape`]: the relay tree the scenario
//! describes, or a star with every consumer straight on the origin) and [`ScenarioLinks`],
//! the [`LinkModel`] that gives the simulated network its profiles. Node names are
//! generated: `origin`, `origin-b` (origin standby) and `publisher` (the feed's QUIC
//! publisher, with an origin standby only), `relay-{region}`, `relay-{region}-b`
//! (standby), `c-{region}-{nn}`.
//! The topology goes through tickcast's own TOML parser and validation, so what runs is a
//! topology a user could have written. It does not start anything: see [`crate::runner`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};
use tickcast_proto::topology::Topology;

use crate::link::{GilbertElliott, LinkProfile};
use crate::net::LinkModel;
use crate::scenario::{FaultKind, FaultSpec, ProfileSpec, Scenario};

/// The channel the synthetic feed publishes on.
pub const CHANNEL: u32 = 1;

/// The origin's node name.
pub const ORIGIN: &str = "origin";

/// The origin standby's node name.
pub const ORIGIN_STANDBY: &str = "origin-b";

/// The name of the host that publishes the feed over QUIC when the origin has a standby.
pub const PUBLISHER: &str = "publisher";

/// Which network to build from a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// The relay tree the scenario describes.
    Tree,
    /// No relays: every consumer subscribes to the origin directly.
    Star,
}

/// Name of the primary relay of `region`.
pub fn relay_name(region: &str) -> String {
    format!("relay-{region}")
}

/// Name of the standby relay of `region`.
pub fn standby_name(region: &str) -> String {
    format!("relay-{region}-b")
}

/// Everything needed to run a scenario in one shape.
#[derive(Debug)]
pub struct Plan {
    /// The shape built.
    pub shape: Shape,
    /// The validated tickcast topology.
    pub topology: Topology,
    /// The topology as TOML (as a user would write it).
    pub topology_toml: String,
    /// Region of every node, consumer and publisher.
    pub region_of: BTreeMap<String, String>,
    /// The publisher host feeding the origins over QUIC (with an origin standby); `None`:
    /// the feed goes into the origin's embedded handle.
    pub publisher: Option<String>,
    /// Path of each consumer from where the feed enters (the publisher, if any, then the
    /// origin) through its primary upstreams, ending with it.
    pub paths: BTreeMap<String, Vec<String>>,
    /// Latency floor of each consumer: the one-way delays along its path.
    pub floors: BTreeMap<String, Duration>,
    /// Faults that apply to this shape, in time order.
    pub faults: Vec<FaultSpec>,
    /// Faults left out because they name nodes this shape does not have (star).
    pub skipped_faults: Vec<FaultSpec>,
    /// The link model.
    pub links: ScenarioLinks,
}

impl Plan {
    /// Builds the plan of `scenario` in `shape`; checks the fault targets.
    pub fn new(scenario: &Scenario, shape: Shape) -> Result<Plan> {
        scenario.validate()?;
        let names = &scenario.regions.names;
        let ridx = |r: &str| scenario.region_index(r).expect("validated region");
        let t = &scenario.topology;
        // Regions that get relays (tree only).
        let mut relay_regions: BTreeSet<String> = BTreeSet::new();
        if shape == Shape::Tree {
            for (r, k) in &t.consumers {
                if *k > 0 {
                    relay_regions.insert(r.clone());
                }
            }
            relay_regions.extend(t.transit.iter().cloned());
            for (child, parent) in &t.parents {
                if child == parent {
                    bail!("topology: field `parents`: region {child:?} is its own parent");
                }
                if relay_regions.contains(child) {
                    relay_regions.insert(parent.clone());
                }
            }
        }
        let parent_of_region = |r: &str| -> String {
            match t.parents.get(r) {
                Some(p) => relay_name(p),
                None => ORIGIN.to_owned(),
            }
        };
        // Depth of each relay region, to write parents before children.
        let depth = |r: &str| -> usize {
            let mut d = 0;
            let mut cur = r.to_owned();
            while let Some(p) = t.parents.get(&cur) {
                d += 1;
                if d > names.len() {
                    break; // a cycle; the topology validation reports it
                }
                cur = p.clone();
            }
            d
        };
        let mut ordered: Vec<&String> = relay_regions.iter().collect();
        ordered.sort_by_key(|r| (depth(r), ridx(r)));

        let mut region_of = BTreeMap::new();
        let mut toml = String::new();
        let s = &scenario.settings;
        writeln!(
            toml,
            "# Generated by tickcast-netsim from scenario {:?} ({shape:?}).",
            scenario.name
        )?;
        toml.push_str("[settings]\n");
        if let Some(v) = s.heartbeat_ms {
            writeln!(toml, "heartbeat_ms = {v}")?;
        }
        if let Some(v) = s.dead_after {
            writeln!(toml, "dead_after = {v}")?;
        }
        if let Some(v) = s.nack_delay_ms {
            writeln!(toml, "nack_delay_ms = {v}")?;
        }
        if let Some(v) = s.nack_after_packets {
            writeln!(toml, "nack_after_packets = {v}")?;
        }
        if let Some(v) = s.max_datagram_batch {
            writeln!(toml, "max_datagram_batch = {v}")?;
        }
        toml.push_str("\n[ring]\n");
        if let Some(v) = s.ring_ticks {
            writeln!(toml, "max_ticks = {v}")?;
        }
        if let Some(v) = s.ring_bytes {
            writeln!(toml, "max_bytes = {v}")?;
        }
        writeln!(toml, "\n[[channel]]\nid = {CHANNEL}\nname = \"feed\"\n")?;
        writeln!(
            toml,
            "[origin]\nname = \"{ORIGIN}\"\nregion = \"{}\"\nlisten = \"{}\"",
            t.origin_region,
            origin_addr(1)
        )?;
        if t.origin_standby {
            writeln!(
                toml,
                "standby = {{ name = \"{ORIGIN_STANDBY}\", listen = \"{}\" }}",
                origin_addr(2)
            )?;
            region_of.insert(ORIGIN_STANDBY.to_owned(), t.origin_region.clone());
            region_of.insert(PUBLISHER.to_owned(), t.origin_region.clone());
        }
        toml.push('\n');
        region_of.insert(ORIGIN.to_owned(), t.origin_region.clone());
        for r in &ordered {
            let i = ridx(r);
            let parent = parent_of_region(r);
            writeln!(
                toml,
                "[[relay]]\nname = \"{}\"\nregion = \"{r}\"\nlisten = \"{}\"\nparent = \"{parent}\"",
                relay_name(r),
                relay_addr(i, 1)
            )?;
            if t.standby {
                writeln!(toml, "standby = \"{}\"", standby_name(r))?;
            }
            toml.push('\n');
            region_of.insert(relay_name(r), (*r).clone());
            if t.standby {
                writeln!(
                    toml,
                    "[[relay]]\nname = \"{}\"\nregion = \"{r}\"\nlisten = \"{}\"\nparent = \"{parent}\"\n",
                    standby_name(r),
                    relay_addr(i, 2)
                )?;
                region_of.insert(standby_name(r), (*r).clone());
            }
        }
        let mut consumers = Vec::new();
        for r in names {
            let k = t.consumers.get(r).copied().unwrap_or(0);
            for c in 1..=k {
                let name = format!("c-{r}-{c:02}");
                let relays = match shape {
                    Shape::Star if t.origin_standby => {
                        format!("[\"{ORIGIN}\", \"{ORIGIN_STANDBY}\"]")
                    }
                    Shape::Star => format!("[\"{ORIGIN}\"]"),
                    Shape::Tree if t.standby => {
                        format!("[\"{}\", \"{}\"]", relay_name(r), standby_name(r))
                    }
                    Shape::Tree => format!("[\"{}\"]", relay_name(r)),
                };
                writeln!(
                    toml,
                    "[[consumer]]\nname = \"{name}\"\nregion = \"{r}\"\nrelays = {relays}\n"
                )?;
                region_of.insert(name.clone(), r.clone());
                consumers.push(name);
            }
        }
        let publisher = t.origin_standby.then(|| PUBLISHER.to_owned());
        if let Some(p) = &publisher {
            writeln!(toml, "[[publisher]]\nname = \"{p}\"")?;
        }
        let topology = Topology::from_toml_str(&toml)
            .map_err(|e| anyhow::anyhow!("generated topology is invalid: {e}"))?;

        let links = ScenarioLinks::new(scenario, region_of.clone(), consumers.iter().cloned());
        let mut paths = BTreeMap::new();
        let mut floors = BTreeMap::new();
        for c in &topology.consumers {
            let mut path = vec![c.name.clone()];
            let mut node = c.relays[0].clone();
            loop {
                path.push(node.clone());
                match topology.relay(&node) {
                    Some(r) => node = r.parent.clone(),
                    None => break,
                }
            }
            path.extend(publisher.clone());
            path.reverse();
            let floor = path
                .windows(2)
                .map(|w| {
                    links.path(&w[0], &w[1]).delay
                        + links.uplink(&w[0]).map_or(Duration::ZERO, |u| u.delay)
                })
                .sum();
            floors.insert(c.name.clone(), floor);
            paths.insert(c.name.clone(), path);
        }

        let mut faults = Vec::new();
        let mut skipped_faults = Vec::new();
        let mut tree_names: BTreeSet<String> = region_of.keys().cloned().collect();
        if shape == Shape::Star {
            // Relay names of the tree, to tell "not in this shape" from "unknown".
            let tree = Plan::new(scenario, Shape::Tree)?;
            tree_names = tree.region_of.keys().cloned().collect();
        }
        for (i, f) in scenario.faults.iter().enumerate() {
            let entry = format!("fault #{} ({})", i + 1, f.describe());
            let targets: Vec<&String> = [&f.node, &f.from, &f.to].into_iter().flatten().collect();
            for n in &targets {
                if !tree_names.contains(*n) {
                    bail!(
                        "{entry}: unknown node {n:?} (known: origin, origin-b with origin_standby, relay-REGION, relay-REGION-b, c-REGION-NN)"
                    );
                }
            }
            if let Some(n) = &f.node {
                if n == ORIGIN || n == ORIGIN_STANDBY {
                    if f.kind == FaultKind::Restart {
                        bail!(
                            "{entry}: field `node`: origins do not restart in netsim (after a takeover the old primary has no place in the topology)"
                        );
                    }
                    if topology.origin_standby.is_none() {
                        bail!(
                            "{entry}: field `node`: the origin can only crash when it has a standby (set `origin_standby = true` in [topology]); without one the feed dies with it"
                        );
                    }
                } else if topology.consumer(n).is_some() || publisher.as_deref() == Some(n) {
                    bail!(
                        "{entry}: field `node`: only relays, and origins with a standby, crash; only relays restart"
                    );
                }
            }
            if targets.iter().all(|n| region_of.contains_key(*n)) {
                faults.push(f.clone());
            } else {
                skipped_faults.push(f.clone());
            }
        }
        faults.sort_by_key(|f| f.at_ms);
        Ok(Plan {
            shape,
            topology,
            topology_toml: toml,
            region_of,
            publisher,
            paths,
            floors,
            faults,
            skipped_faults,
            links,
        })
    }

    /// Virtual address of `name` (origin, relay, consumer or publisher).
    pub fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        if let Some(a) = self.topology.listen_addr(name) {
            return Some(a);
        }
        if self.publisher.as_deref() == Some(name) {
            return Some(publisher_addr());
        }
        let idx = self
            .topology
            .consumers
            .iter()
            .position(|c| c.name == name)?;
        Some(consumer_addr(idx))
    }

    /// Floor spread: the largest floor minus the smallest.
    pub fn floor_spread(&self) -> Duration {
        let max = self.floors.values().max().copied().unwrap_or_default();
        let min = self.floors.values().min().copied().unwrap_or_default();
        max - min
    }
}

/// The origin (`which` 1) or its standby (2).
fn origin_addr(which: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, which], 4433))
}

fn publisher_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 3], 5000))
}

fn relay_addr(region: usize, which: u8) -> SocketAddr {
    SocketAddr::from(([127, (region + 1) as u8, 0, which], 4433))
}

fn consumer_addr(idx: usize) -> SocketAddr {
    SocketAddr::from(([127, 200, (idx / 200) as u8, (idx % 200 + 1) as u8], 5000))
}

/// The link model of a scenario: classes by region, overrides by region pair, uplinks.
#[derive(Clone, Debug)]
pub struct ScenarioLinks {
    scenario: Scenario,
    region_of: BTreeMap<String, String>,
    consumers: BTreeSet<String>,
}

impl ScenarioLinks {
    fn new(
        scenario: &Scenario,
        region_of: BTreeMap<String, String>,
        consumers: impl IntoIterator<Item = String>,
    ) -> Self {
        ScenarioLinks {
            scenario: scenario.clone(),
            region_of,
            consumers: consumers.into_iter().collect(),
        }
    }

    /// The class of the link from `from` to `to`: `inter`, `consumer` or `intra`.
    pub fn class(&self, from: &str, to: &str) -> &'static str {
        match (self.region_of.get(from), self.region_of.get(to)) {
            (Some(a), Some(b)) if a != b => "inter",
            _ if self.consumers.contains(from) || self.consumers.contains(to) => "consumer",
            _ => "intra",
        }
    }

    /// The profile spec (before defaults) from node `from` to node `to`.
    pub fn spec(&self, from: &str, to: &str) -> ProfileSpec {
        let s = &self.scenario;
        let (Some(rf), Some(rt)) = (self.region_of.get(from), self.region_of.get(to)) else {
            return s.links.intra.clone();
        };
        let mut spec = if rf != rt {
            let (i, j) = (
                s.region_index(rf).expect("region"),
                s.region_index(rt).expect("region"),
            );
            ProfileSpec {
                delay_ms: Some(s.regions.rtt_ms[i][j] / 2.0),
                ..s.links.inter.clone()
            }
        } else if self.consumers.contains(from) || self.consumers.contains(to) {
            s.links
                .consumer
                .clone()
                .unwrap_or_else(|| s.links.intra.clone())
        } else {
            s.links.intra.clone()
        };
        for o in &s.links.overrides {
            let forward = &o.from == rf && &o.to == rt;
            let backward = !o.oneway && &o.from == rt && &o.to == rf;
            if forward || backward {
                spec = spec.overlay(&o.set);
            }
        }
        spec
    }
}

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1000.0)
}

/// A profile spec with defaults filled in.
pub fn resolve(spec: &ProfileSpec) -> LinkProfile {
    LinkProfile {
        delay: ms(spec.delay_ms.unwrap_or(0.0)),
        jitter: ms(spec.jitter_ms.unwrap_or(0.0)),
        loss: spec.loss.unwrap_or(0.0),
        burst: spec.burst.as_ref().map(|b| GilbertElliott {
            enter: b.enter,
            exit: 1.0 / b.mean_len,
            loss: b.loss,
        }),
        bandwidth_bps: spec.bandwidth_mbps.map(|m| (m * 1e6) as u64),
        queue_bytes: (spec.queue_kb.unwrap_or(1024.0) * 1024.0) as usize,
        reorder: spec.reorder.unwrap_or(0.0),
        reorder_delay: ms(spec.reorder_ms.unwrap_or(0.0)),
        mtu: spec.mtu.unwrap_or(1472),
    }
}

impl LinkModel for ScenarioLinks {
    fn path(&self, from: &str, to: &str) -> LinkProfile {
        resolve(&self.spec(from, to))
    }

    fn uplink(&self, node: &str) -> Option<LinkProfile> {
        let u = &self.scenario.uplink;
        let mbps = if node == ORIGIN || node == ORIGIN_STANDBY {
            u.origin_mbps
        } else if node == PUBLISHER {
            None
        } else if self.region_of.contains_key(node) && !self.consumers.contains(node) {
            u.relay_mbps
        } else {
            None
        }?;
        Some(LinkProfile {
            bandwidth_bps: Some((mbps * 1e6) as u64),
            queue_bytes: (u.queue_kb.unwrap_or(1024.0) * 1024.0) as usize,
            mtu: usize::MAX,
            ..LinkProfile::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo40(origin_standby: bool, faults: &[(FaultKind, &str)]) -> Scenario {
        let mut s = Scenario::from_toml_str(include_str!("../scenarios/geo40.toml")).unwrap();
        s.topology.origin_standby = origin_standby;
        s.faults = faults
            .iter()
            .map(|(kind, node)| FaultSpec {
                at_ms: 1000,
                kind: *kind,
                node: Some((*node).to_owned()),
                from: None,
                to: None,
                oneway: false,
            })
            .collect();
        s
    }

    fn error(s: &Scenario) -> String {
        format!("{:#}", Plan::new(s, Shape::Tree).unwrap_err())
    }

    #[test]
    fn origin_crash_needs_a_standby() {
        let e = error(&geo40(false, &[(FaultKind::Crash, ORIGIN)]));
        assert!(
            e.contains("fault #1 (crash origin)") && e.contains("origin_standby"),
            "{e}"
        );
        let e = error(&geo40(false, &[(FaultKind::Crash, ORIGIN_STANDBY)]));
        assert!(e.contains("unknown node \"origin-b\""), "{e}");

        let both = [
            (FaultKind::Crash, ORIGIN),
            (FaultKind::Crash, ORIGIN_STANDBY),
        ];
        let plan = Plan::new(&geo40(true, &both), Shape::Tree).unwrap();
        assert_eq!(plan.faults.len(), 2);
        let e = error(&geo40(true, &[(FaultKind::Restart, ORIGIN)]));
        assert!(e.contains("fault #1 (restart origin)"), "{e}");
        let e = error(&geo40(true, &[(FaultKind::Crash, PUBLISHER)]));
        assert!(e.contains("fault #1 (crash publisher)"), "{e}");
    }

    #[test]
    fn origin_standby_adds_origin_b_and_a_publisher() {
        let s = geo40(true, &[]);
        let plan = Plan::new(&s, Shape::Tree).unwrap();
        let sb = plan
            .topology
            .origin_standby
            .as_ref()
            .expect("origin standby");
        assert_eq!(sb.name, ORIGIN_STANDBY);
        assert_eq!(plan.region_of[ORIGIN_STANDBY], s.topology.origin_region);
        assert_eq!(plan.topology.publishers, [PUBLISHER]);
        assert_eq!(plan.region_of[PUBLISHER], s.topology.origin_region);
        let addrs: BTreeSet<SocketAddr> = [ORIGIN, ORIGIN_STANDBY, PUBLISHER]
            .iter()
            .map(|n| plan.addr_of(n).unwrap())
            .collect();
        assert_eq!(addrs.len(), 3, "one host each");
        // Relays under the origin fall back to its standby.
        let relay = relay_name(&s.topology.origin_region);
        assert_eq!(
            plan.topology.upstream_candidates(&relay),
            [ORIGIN, ORIGIN_STANDBY]
        );
        // The floor starts at the publisher: the feed's first hop is real.
        for path in plan.paths.values() {
            assert_eq!(path[..2], [PUBLISHER, ORIGIN]);
        }
        let star = Plan::new(&s, Shape::Star).unwrap();
        assert!(
            star.topology
                .consumers
                .iter()
                .all(|c| c.relays == [ORIGIN, ORIGIN_STANDBY])
        );
        let plain = Plan::new(&geo40(false, &[]), Shape::Tree).unwrap();
        assert!(plain.publisher.is_none() && plain.topology.origin_standby.is_none());
        assert!(plain.paths.values().all(|p| p[0] == ORIGIN));
    }
}
