//! The scenario file format (`netsim/scenarios/*.toml`) and its validation.
//!
//! Owns [`Scenario`] and its parts as serde types (`deny_unknown_fields`), parsing
//! ([`Scenario::from_toml_str`], [`Scenario::load`]) and the checks that make a scenario
//! runnable ([`Scenario::validate`]), with errors naming the entry and field. Turning a
//! scenario into a tickcast topology, link profiles and path floors is [`crate::plan`]'s.
//!
//! A scenario has: regions with a symmetric round-trip-time matrix (the runner halves it
//! for one-way delays), link classes (`intra`: two nodes of one region; `inter`: across
//! regions; optional `consumer`: a relay and a consumer of the same region) with overrides
//! per region pair, optional uplinks (a node's own bandwidth and queue), the topology
//! (origin region, optionally an origin standby, a relay and optionally a standby per
//! region, consumers per region, optional parent region per relay), the feed, the fault
//! timeline and the duration.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// A whole scenario.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (used in reports).
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// How long the feed runs, seconds of (virtual) time. Fault times count from its start.
    pub duration_s: f64,
    /// Time after the feed ends for repairs to finish before counting what is missing.
    #[serde(default = "default_drain")]
    pub drain_s: f64,
    /// The first seconds of the feed, left out of latency and spread figures (delivery is
    /// still checked): fresh QUIC connections start in slow start, which a long-running
    /// network has long left behind. Failovers during the run are measured in full.
    #[serde(default)]
    pub warmup_s: f64,
    /// The synthetic feed.
    pub feed: FeedSpec,
    /// tickcast `[settings]` and ring size for every node.
    #[serde(default)]
    pub settings: SettingsSpec,
    /// Regions and their round-trip times.
    pub regions: RegionsSpec,
    /// Link classes and overrides.
    pub links: LinksSpec,
    /// Node uplinks.
    #[serde(default)]
    pub uplink: UplinkSpec,
    /// Where the nodes are.
    pub topology: TopologySpec,
    /// The fault timeline.
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
}

fn default_drain() -> f64 {
    5.0
}

/// The synthetic feed (`[feed]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedSpec {
    /// Steady ticks per second.
    pub rate: f64,
    /// Payload bytes per tick (at least 16: the synthetic header).
    pub payload_bytes: usize,
    /// Optional bursts on top of the steady rate.
    pub burst: Option<BurstSpec>,
}

/// Feed bursts: `count` extra ticks at once every `every_ms`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BurstSpec {
    /// Interval between bursts, ms.
    pub every_ms: u64,
    /// Ticks per burst.
    pub count: u64,
}

/// tickcast settings (`[settings]`); unset fields keep tickcast's defaults.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SettingsSpec {
    /// Heartbeat interval, ms.
    pub heartbeat_ms: Option<u64>,
    /// Missed heartbeats before an upstream is dead.
    pub dead_after: Option<u32>,
    /// Reorder delay before a NACK, ms.
    pub nack_delay_ms: Option<u64>,
    /// Later seqs after which a gap is NACKed at once.
    pub nack_after_packets: Option<u64>,
    /// Most ticks per datagram.
    pub max_datagram_batch: Option<usize>,
    /// Ring size of every node, ticks.
    pub ring_ticks: Option<usize>,
    /// Ring size of every node, bytes.
    pub ring_bytes: Option<usize>,
    /// QUIC congestion controller of every node. tickcast uses BBR by default; the others
    /// are there to compare.
    #[serde(default)]
    pub congestion: Congestion,
}

/// A QUIC congestion controller (`settings.congestion`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Congestion {
    /// quinn's Cubic.
    Cubic,
    /// quinn's BBR: what tickcast nodes use by default.
    #[default]
    Bbr,
    /// NewReno.
    NewReno,
}

/// Regions (`[regions]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegionsSpec {
    /// Region names (also used in node names, so DNS-label characters only).
    pub names: Vec<String>,
    /// Round-trip times in ms, `rtt_ms[i][j]` between `names[i]` and `names[j]`; symmetric,
    /// zero diagonal. One-way delay is half.
    pub rtt_ms: Vec<Vec<f64>>,
    /// Continent of each region, for the report (optional, same order as `names`).
    #[serde(default)]
    pub continents: Vec<String>,
}

/// A link profile as written in a scenario; unset fields take the defaults listed.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// One-way delay, ms. Required for `intra` (and `consumer`); for `inter` links it comes
    /// from the regions matrix unless an override sets it.
    pub delay_ms: Option<f64>,
    /// Jitter bound, ms (exponential with mean a quarter of it, truncated). Default 0.
    pub jitter_ms: Option<f64>,
    /// Random loss probability per packet. Default 0.
    pub loss: Option<f64>,
    /// Gilbert-Elliott bursts. Default none.
    pub burst: Option<BurstLossSpec>,
    /// Link rate, Mbit/s. Default unlimited.
    pub bandwidth_mbps: Option<f64>,
    /// Queue in front of the link, KiB. Default 1024.
    pub queue_kb: Option<f64>,
    /// Probability a packet is held back and overtaken. Default 0.
    pub reorder: Option<f64>,
    /// Extra delay of a held-back packet, ms. Default 0.
    pub reorder_ms: Option<f64>,
    /// Largest UDP payload, bytes. Default 1472.
    pub mtu: Option<usize>,
}

impl ProfileSpec {
    /// `other`'s set fields over `self`'s.
    pub fn overlay(&self, other: &ProfileSpec) -> ProfileSpec {
        ProfileSpec {
            delay_ms: other.delay_ms.or(self.delay_ms),
            jitter_ms: other.jitter_ms.or(self.jitter_ms),
            loss: other.loss.or(self.loss),
            burst: other.burst.clone().or_else(|| self.burst.clone()),
            bandwidth_mbps: other.bandwidth_mbps.or(self.bandwidth_mbps),
            queue_kb: other.queue_kb.or(self.queue_kb),
            reorder: other.reorder.or(self.reorder),
            reorder_ms: other.reorder_ms.or(self.reorder_ms),
            mtu: other.mtu.or(self.mtu),
        }
    }

    fn check(&self, entry: &str) -> Result<()> {
        let prob = |v: Option<f64>, field: &str| -> Result<()> {
            if let Some(p) = v
                && !(0.0..=1.0).contains(&p)
            {
                bail!("{entry}: field `{field}`: {p} is not a probability (0..=1)");
            }
            Ok(())
        };
        let nonneg = |v: Option<f64>, field: &str| -> Result<()> {
            if let Some(x) = v
                && !(x.is_finite() && x >= 0.0)
            {
                bail!("{entry}: field `{field}`: {x} must be a finite number >= 0");
            }
            Ok(())
        };
        nonneg(self.delay_ms, "delay_ms")?;
        nonneg(self.jitter_ms, "jitter_ms")?;
        prob(self.loss, "loss")?;
        prob(self.reorder, "reorder")?;
        nonneg(self.reorder_ms, "reorder_ms")?;
        nonneg(self.queue_kb, "queue_kb")?;
        if let Some(b) = self.bandwidth_mbps
            && !(b.is_finite() && b > 0.0)
        {
            bail!("{entry}: field `bandwidth_mbps`: {b} must be > 0");
        }
        if let Some(m) = self.mtu
            && m < 1200
        {
            bail!("{entry}: field `mtu`: {m} is below QUIC's minimum of 1200");
        }
        if let Some(b) = &self.burst {
            prob(Some(b.enter), "burst.enter")?;
            prob(Some(b.loss), "burst.loss")?;
            if !(b.mean_len.is_finite() && b.mean_len >= 1.0) {
                bail!(
                    "{entry}: field `burst.mean_len`: {} must be >= 1 packet",
                    b.mean_len
                );
            }
        }
        Ok(())
    }
}

/// Gilbert-Elliott bursty loss as written in a scenario.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BurstLossSpec {
    /// Probability per packet of entering a burst.
    pub enter: f64,
    /// Mean burst length, packets.
    pub mean_len: f64,
    /// Loss probability inside a burst.
    pub loss: f64,
}

/// Link classes (`[links]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinksSpec {
    /// Between two nodes of one region.
    pub intra: ProfileSpec,
    /// Between regions.
    pub inter: ProfileSpec,
    /// Between a consumer and a node of its own region (default: `intra`).
    pub consumer: Option<ProfileSpec>,
    /// Overrides per region pair, applied in file order over the class.
    #[serde(default, rename = "override")]
    pub overrides: Vec<OverrideSpec>,
}

/// `[[links.override]]`: `set` applies from region `from` to region `to` (both ways
/// unless `oneway`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverrideSpec {
    /// Sending region.
    pub from: String,
    /// Receiving region.
    pub to: String,
    /// Only from `from` to `to`.
    #[serde(default)]
    pub oneway: bool,
    /// Fields to change.
    pub set: ProfileSpec,
}

/// Node uplinks (`[uplink]`): every packet a node sends crosses its uplink first.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UplinkSpec {
    /// The uplink of the origin (and of its standby), Mbit/s (none: unlimited).
    pub origin_mbps: Option<f64>,
    /// Each relay's uplink, Mbit/s (none: unlimited).
    pub relay_mbps: Option<f64>,
    /// Uplink queue, KiB (default 1024).
    pub queue_kb: Option<f64>,
}

/// Where the nodes are (`[topology]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Region of the origin.
    pub origin_region: String,
    /// Whether each region's relay has a standby sibling (default true).
    #[serde(default = "yes")]
    pub standby: bool,
    /// Whether the origin has a standby (`origin-b`, in the origin's region, default
    /// false). With one, the feed enters through a QUIC publisher (`publisher`, also in
    /// the origin's region) instead of the origin's embedded handle, so it survives an
    /// origin crash, and the origins may crash.
    #[serde(default)]
    pub origin_standby: bool,
    /// Consumers per region. A region with consumers gets a relay (and standby).
    pub consumers: BTreeMap<String, usize>,
    /// Regions whose relay hangs under another region's relay instead of the origin.
    #[serde(default)]
    pub parents: BTreeMap<String, String>,
    /// Regions that get a relay although they have no consumers (transit relays).
    #[serde(default)]
    pub transit: Vec<String>,
}

fn yes() -> bool {
    true
}

/// What a fault does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The node (a relay, or an origin that has a standby) stops at once: no goodbye
    /// packets; in-flight packets to it are lost.
    Crash,
    /// A crashed relay comes back with empty state at the same address.
    Restart,
    /// Packets from `from` to `to` (and back unless `oneway`) are dropped.
    Partition,
    /// Lifts a partition (all of them without `from`/`to`).
    Heal,
}

/// One `[[fault]]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When, ms after the feed starts.
    pub at_ms: u64,
    /// What.
    pub kind: FaultKind,
    /// The node (crash, restart).
    pub node: Option<String>,
    /// One side (partition, heal).
    pub from: Option<String>,
    /// The other side (partition, heal).
    pub to: Option<String>,
    /// Only the direction `from` → `to`.
    #[serde(default)]
    pub oneway: bool,
}

impl FaultSpec {
    /// A one-line description, e.g. `crash relay-eu-west-1` or `partition a -> b`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            FaultKind::Crash => "crash",
            FaultKind::Restart => "restart",
            FaultKind::Partition => "partition",
            FaultKind::Heal => "heal",
        };
        match self.kind {
            FaultKind::Crash | FaultKind::Restart => {
                format!("{kind} {}", self.node.as_deref().unwrap_or("?"))
            }
            FaultKind::Partition | FaultKind::Heal => match (&self.from, &self.to) {
                (Some(f), Some(t)) => {
                    let arrow = if self.oneway { "->" } else { "<->" };
                    format!("{kind} {f} {arrow} {t}")
                }
                _ => format!("{kind} all"),
            },
        }
    }
}

impl Scenario {
    /// Parses and validates a scenario.
    pub fn from_toml_str(text: &str) -> Result<Scenario> {
        let s: Scenario = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        s.validate()?;
        Ok(s)
    }

    /// Reads, parses and validates a scenario file (the path is in any error).
    pub fn load(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_toml_str(&text).with_context(|| format!("scenario {}", path.display()))
    }

    /// The index of region `name`.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.names.iter().position(|r| r == name)
    }

    /// Checks everything but the fault targets' existence (that needs the generated node
    /// names; [`crate::plan::Plan::new`] checks it).
    pub fn validate(&self) -> Result<()> {
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            bail!("field `duration_s`: must be > 0");
        }
        if !(self.drain_s.is_finite() && self.drain_s >= 0.0) {
            bail!("field `drain_s`: must be >= 0");
        }
        if !(self.warmup_s.is_finite() && self.warmup_s >= 0.0 && self.warmup_s < self.duration_s) {
            bail!("field `warmup_s`: must be >= 0 and shorter than duration_s");
        }
        if !(self.feed.rate.is_finite() && self.feed.rate > 0.0) {
            bail!("feed: field `rate`: must be > 0");
        }
        if self.feed.payload_bytes < tickcast_origin::synthetic::HEADER {
            bail!(
                "feed: field `payload_bytes`: at least {} (the synthetic header)",
                tickcast_origin::synthetic::HEADER
            );
        }
        if let Some(b) = &self.feed.burst
            && b.every_ms == 0
        {
            bail!("feed: field `burst.every_ms`: must be > 0");
        }
        let n = self.regions.names.len();
        if n == 0 {
            bail!("regions: field `names`: at least one region");
        }
        for (i, name) in self.regions.names.iter().enumerate() {
            if name.is_empty()
                || name.len() > 40
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                bail!(
                    "regions: field `names`: {name:?} must be 1-40 characters of a-z, 0-9 and '-'"
                );
            }
            if self.regions.names[..i].contains(name) {
                bail!("regions: field `names`: {name:?} appears twice");
            }
        }
        if !self.regions.continents.is_empty() && self.regions.continents.len() != n {
            bail!("regions: field `continents`: one per region ({n}) or none");
        }
        if self.regions.rtt_ms.len() != n || self.regions.rtt_ms.iter().any(|r| r.len() != n) {
            bail!("regions: field `rtt_ms`: must be a {n}x{n} matrix");
        }
        for i in 0..n {
            for j in 0..n {
                let v = self.regions.rtt_ms[i][j];
                if !(v.is_finite() && v >= 0.0) {
                    bail!("regions: field `rtt_ms[{i}][{j}]`: {v} must be >= 0");
                }
                if (v - self.regions.rtt_ms[j][i]).abs() > 1e-9 {
                    bail!(
                        "regions: field `rtt_ms[{i}][{j}]`: {v} differs from rtt_ms[{j}][{i}] (the matrix must be symmetric)"
                    );
                }
                if i == j && v != 0.0 {
                    bail!(
                        "regions: field `rtt_ms[{i}][{i}]`: the diagonal must be 0 (intra-region delay is links.intra.delay_ms)"
                    );
                }
            }
        }
        self.links.intra.check("links.intra")?;
        self.links.inter.check("links.inter")?;
        if self.links.intra.delay_ms.is_none() {
            bail!("links.intra: field `delay_ms`: required");
        }
        if self.links.inter.delay_ms.is_some() {
            bail!(
                "links.inter: field `delay_ms`: inter-region delays come from regions.rtt_ms (set one pair with [[links.override]])"
            );
        }
        if let Some(c) = &self.links.consumer {
            c.check("links.consumer")?;
        }
        for (i, o) in self.links.overrides.iter().enumerate() {
            let entry = format!("links.override #{}", i + 1);
            for (field, r) in [("from", &o.from), ("to", &o.to)] {
                if self.region_index(r).is_none() {
                    bail!("{entry}: field `{field}`: unknown region {r:?}");
                }
            }
            o.set.check(&format!("{entry}: set"))?;
        }
        for (field, v) in [
            ("origin_mbps", self.uplink.origin_mbps),
            ("relay_mbps", self.uplink.relay_mbps),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                bail!("uplink: field `{field}`: must be > 0");
            }
        }
        let t = &self.topology;
        if self.region_index(&t.origin_region).is_none() {
            bail!(
                "topology: field `origin_region`: unknown region {:?}",
                t.origin_region
            );
        }
        if t.consumers.values().sum::<usize>() == 0 {
            bail!("topology: field `consumers`: at least one consumer");
        }
        for (r, k) in &t.consumers {
            if self.region_index(r).is_none() {
                bail!("topology: field `consumers`: unknown region {r:?}");
            }
            if *k > 999 {
                bail!("topology: field `consumers`: {k} consumers in {r:?} (at most 999)");
            }
        }
        for r in &t.transit {
            if self.region_index(r).is_none() {
                bail!("topology: field `transit`: unknown region {r:?}");
            }
        }
        for (child, parent) in &t.parents {
            for r in [child, parent] {
                if self.region_index(r).is_none() {
                    bail!("topology: field `parents`: unknown region {r:?}");
                }
            }
        }
        for (i, f) in self.faults.iter().enumerate() {
            let entry = format!("fault #{} ({})", i + 1, f.describe());
            match f.kind {
                FaultKind::Crash | FaultKind::Restart => {
                    if f.node.is_none() {
                        bail!("{entry}: field `node`: required");
                    }
                    if f.from.is_some() || f.to.is_some() {
                        bail!("{entry}: fields `from`/`to`: not used by {:?}", f.kind);
                    }
                }
                FaultKind::Partition => {
                    if f.from.is_none() || f.to.is_none() {
                        bail!("{entry}: fields `from` and `to`: required");
                    }
                }
                FaultKind::Heal => {
                    if f.from.is_some() != f.to.is_some() {
                        bail!("{entry}: fields `from` and `to`: both or neither");
                    }
                }
            }
            if f.kind != FaultKind::Crash && f.kind != FaultKind::Restart && f.node.is_some() {
                bail!("{entry}: field `node`: only for crash and restart");
            }
        }
        Ok(())
    }
}
