//! The network model: `topology.toml`, its validation, and queries over the relay tree.
//!
//! This module owns the file format of `topology.toml` (private serde structs with
//! `deny_unknown_fields`), the rules a topology must satisfy (turned into [`Topology`] or a
//! [`TopologyError`] naming the entry and the field), and read-only questions about the
//! validated tree: who is whose parent, standby pairs, upstream candidates, which names
//! need certificates. It must not open sockets, spawn tasks, or read or create
//! certificates: its only I/O is [`Topology::load`] reading the file and
//! [`Topology::check_cert_files`] checking that certificate files exist.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tick::ChannelId;

/// Longest allowed node name (names become TLS DNS names, so one DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// Default certificate directory (`tls.dir`), relative to the current directory.
pub const DEFAULT_TLS_DIR: &str = "certs";

/// Names no node may take because they collide with a file in `tls.dir`.
const RESERVED_NAMES: &[&str] = &["ca"];

/// Why a topology could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Well-formed TOML that breaks a rule, e.g.
    /// `relay "relay-eu": field `parent`: unknown node "relay-xx"`.
    #[error("{entry}: field `{field}`: {problem}")]
    Invalid {
        /// The offending entry: `origin "origin"`, `relay "relay-eu"`, `relay #3` (when it
        /// has no usable name), `consumer "c-01"`, `channel #2`, `settings`, `ring`, `tls`.
        entry: String,
        /// The offending field, e.g. `parent` or `ring.max_ticks`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// TOML syntax, type or unknown-key error; toml's message names the key and line.
    #[error("{0}")]
    Parse(String),
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The path that was read.
        path: String,
        /// The I/O error.
        error: String,
    },
}

fn invalid(entry: &str, field: &str, problem: impl Into<String>) -> TopologyError {
    TopologyError::Invalid {
        entry: entry.to_owned(),
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// The same error, reported against another field (for nested tables).
fn rename_field(e: TopologyError, field: &str) -> TopologyError {
    match e {
        TopologyError::Invalid { entry, problem, .. } => TopologyError::Invalid {
            entry,
            field: field.to_owned(),
            problem,
        },
        other => other,
    }
}

/// What a named peer is in the topology.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerRole {
    /// The origin: sequences ticks, root of the relay tree.
    Origin,
    /// A relay: subscribes to its parent and fans out to its children and consumers.
    Relay,
    /// A consumer: subscribes to one of its candidate relays.
    Consumer,
    /// A publisher allowed to publish into the origin over QUIC.
    Publisher,
}

impl PeerRole {
    /// Lower-case name as used in `topology.toml` and error messages (`"relay"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PeerRole::Origin => "origin",
            PeerRole::Relay => "relay",
            PeerRole::Consumer => "consumer",
            PeerRole::Publisher => "publisher",
        }
    }

    fn with_article(self) -> &'static str {
        match self {
            PeerRole::Origin => "the origin",
            PeerRole::Relay => "a relay",
            PeerRole::Consumer => "a consumer",
            PeerRole::Publisher => "a publisher",
        }
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Link-level timing and batching shared by every node (`[settings]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Heartbeat interval on every link (`heartbeat_ms`, default 30 ms).
    pub heartbeat: Duration,
    /// Missed heartbeats before a peer is declared dead (`dead_after`, default 3).
    pub dead_after: u32,
    /// Reorder delay before a gap is NACKed (`nack_delay_ms`, default 5 ms).
    pub nack_delay: Duration,
    /// A gap is NACKed at once when this many later seqs have arrived, without waiting
    /// out `nack_delay` (`nack_after_packets`, default 3 as in QUIC's loss detection;
    /// 1 on links that never reorder; 0 turns it off).
    pub nack_after_packets: u64,
    /// Most ticks batched into one datagram (`max_datagram_batch`, default 64).
    pub max_datagram_batch: usize,
}

impl Settings {
    /// Default heartbeat interval (30 ms × 3 = 90 ms to detect a dead peer: the reconnect and replay then fit in a
    /// 150 ms failover; heartbeats are one small datagram per link per interval).
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(30);
    /// Default number of missed heartbeats before a peer is dead.
    pub const DEFAULT_DEAD_AFTER: u32 = 3;
    /// Default reorder delay before a NACK.
    pub const DEFAULT_NACK_DELAY: Duration = Duration::from_millis(5);
    /// Default packet threshold for a NACK.
    pub const DEFAULT_NACK_AFTER_PACKETS: u64 = 3;
    /// Default datagram batch size.
    pub const DEFAULT_MAX_DATAGRAM_BATCH: usize = 64;
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat: Self::DEFAULT_HEARTBEAT,
            dead_after: Self::DEFAULT_DEAD_AFTER,
            nack_delay: Self::DEFAULT_NACK_DELAY,
            nack_after_packets: Self::DEFAULT_NACK_AFTER_PACKETS,
            max_datagram_batch: Self::DEFAULT_MAX_DATAGRAM_BATCH,
        }
    }
}

/// Bounds of a node's ring of recent ticks; whichever is hit first evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLimits {
    /// Most ticks kept (> 0).
    pub max_ticks: usize,
    /// Most bytes kept, counted by [`crate::Tick::weight`] (> 0).
    pub max_bytes: usize,
}

impl RingLimits {
    /// Defaults when neither `[ring]` nor the node says otherwise: 200 000 ticks, 64 MiB.
    pub const DEFAULT: RingLimits = RingLimits {
        max_ticks: 200_000,
        max_bytes: 64 * 1024 * 1024,
    };
}

impl Default for RingLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One channel (`[[channel]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    /// Channel id, unique.
    pub id: ChannelId,
    /// Human-readable name, unique and non-empty.
    pub name: String,
}

/// The origin (`[origin]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginSpec {
    /// Node name (also its TLS DNS name).
    pub name: String,
    /// Region label, e.g. `us-east`.
    pub region: String,
    /// Address it listens on.
    pub listen: SocketAddr,
    /// Its ring limits (override or the `[ring]` defaults).
    pub ring: RingLimits,
}

/// One relay (`[[relay]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySpec {
    /// Node name (also its TLS DNS name).
    pub name: String,
    /// Region label, e.g. `eu-west`.
    pub region: String,
    /// Address it listens on.
    pub listen: SocketAddr,
    /// The origin or another relay; the tree is checked to reach the origin.
    pub parent: String,
    /// This relay's standby sibling: a relay with the same parent that names no standby.
    pub standby: Option<String>,
    /// Its ring limits (override or the `[ring]` defaults).
    pub ring: RingLimits,
}

/// One consumer (`[[consumer]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Consumer name (also its TLS DNS name).
    pub name: String,
    /// Region label.
    pub region: String,
    /// Candidate upstreams (relays or the origin) in order of preference; at least one.
    pub relays: Vec<String>,
    /// Channels it subscribes to; all channels when the file omits the field.
    pub channels: Vec<ChannelId>,
    /// A/B mode: receive through its first two relays at once, first copy wins.
    pub dual_feed: bool,
}

/// A validated `topology.toml`: the whole network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Link timing and batching.
    pub settings: Settings,
    /// Channels, in file order; at least one.
    pub channels: Vec<ChannelSpec>,
    /// Certificate directory (`tls.dir`), as written (relative to the current directory).
    pub tls_dir: PathBuf,
    /// The origin.
    pub origin: OriginSpec,
    /// The standby origin (`[origin] standby = { name, listen }`): it receives the
    /// origin's stream and takes over the numbering, under a higher epoch, if the origin dies.
    pub origin_standby: Option<OriginSpec>,
    /// Relays, in file order.
    pub relays: Vec<RelaySpec>,
    /// Consumers, in file order.
    pub consumers: Vec<ConsumerSpec>,
    /// Names allowed to publish into the origin over QUIC, in file order.
    pub publishers: Vec<String>,
}

impl Topology {
    /// Parses and validates a topology from TOML text.
    ///
    /// Rules are checked in a fixed order (settings, ring, tls, channels, each node's own
    /// fields, unique names and addresses, parents, standbys, consumers), entries in file
    /// order, and the first broken rule is returned.
    pub fn from_toml_str(text: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology =
            toml::from_str(text).map_err(|e| TopologyError::Parse(e.to_string()))?;
        validate(raw)
    }

    /// Reads `path` and parses it with [`Topology::from_toml_str`].
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Self::from_toml_str(&text)
    }

    /// The role of `name`, or `None` if no entry has that name.
    pub fn role_of(&self, name: &str) -> Option<PeerRole> {
        if self.origin_spec(name).is_some() {
            Some(PeerRole::Origin)
        } else if self.relay(name).is_some() {
            Some(PeerRole::Relay)
        } else if self.consumer(name).is_some() {
            Some(PeerRole::Consumer)
        } else if self.publishers.iter().any(|p| p == name) {
            Some(PeerRole::Publisher)
        } else {
            None
        }
    }

    /// The relay called `name`.
    pub fn relay(&self, name: &str) -> Option<&RelaySpec> {
        self.relays.iter().find(|r| r.name == name)
    }

    /// The consumer called `name`.
    pub fn consumer(&self, name: &str) -> Option<&ConsumerSpec> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// Listen address of the origin or relay called `name`.
    pub fn listen_addr(&self, name: &str) -> Option<SocketAddr> {
        if let Some(o) = self.origin_spec(name) {
            Some(o.listen)
        } else {
            self.relay(name).map(|r| r.listen)
        }
    }

    /// Ring limits of the origin or relay called `name`.
    pub fn ring_of(&self, name: &str) -> Option<RingLimits> {
        if let Some(o) = self.origin_spec(name) {
            Some(o.ring)
        } else {
            self.relay(name).map(|r| r.ring)
        }
    }

    /// The origin or the standby origin called `name`.
    pub fn origin_spec(&self, name: &str) -> Option<&OriginSpec> {
        std::iter::once(&self.origin)
            .chain(self.origin_standby.as_ref())
            .find(|o| o.name == name)
    }

    /// Names of the origins in takeover order: the origin, then its standby if any.
    pub fn origin_names(&self) -> Vec<String> {
        std::iter::once(&self.origin)
            .chain(self.origin_standby.as_ref())
            .map(|o| o.name.clone())
            .collect()
    }

    /// Upstreams a relay may subscribe to, in order: its parent, then the parent's standby
    /// if it has one. Empty for the origin and for names that are not relays.
    pub fn upstream_candidates(&self, relay: &str) -> Vec<String> {
        let Some(spec) = self.relay(relay) else {
            return Vec::new();
        };
        let mut candidates = vec![spec.parent.clone()];
        if let Some(standby) = self.standby_of(&spec.parent) {
            candidates.push(standby.to_owned());
        }
        candidates
    }

    /// Relays whose parent is `node`, in file order.
    pub fn children_of(&self, node: &str) -> Vec<&RelaySpec> {
        self.relays.iter().filter(|r| r.parent == node).collect()
    }

    /// The standby sibling named by the relay `primary`.
    pub fn standby_of(&self, primary: &str) -> Option<&str> {
        if primary == self.origin.name {
            return self.origin_standby.as_ref().map(|o| o.name.as_str());
        }
        self.relay(primary)?.standby.as_deref()
    }

    /// The relay that names `standby` as its standby.
    pub fn primary_of(&self, standby: &str) -> Option<&str> {
        self.relays
            .iter()
            .find(|r| r.standby.as_deref() == Some(standby))
            .map(|r| r.name.as_str())
    }

    /// Names of the nodes that listen: the origin, then the relays in file order.
    pub fn node_names(&self) -> Vec<&str> {
        std::iter::once(self.origin.name.as_str())
            .chain(self.origin_standby.iter().map(|o| o.name.as_str()))
            .chain(self.relays.iter().map(|r| r.name.as_str()))
            .collect()
    }

    /// Every name that needs a certificate: origin, relays, consumers, publishers.
    pub fn cert_names(&self) -> Vec<&str> {
        let mut names = self.node_names();
        names.extend(self.consumers.iter().map(|c| c.name.as_str()));
        names.extend(self.publishers.iter().map(String::as_str));
        names
    }

    /// Paths of the CA certificate and of `name`'s certificate and key in [`Self::tls_dir`].
    pub fn cert_paths(&self, name: &str) -> [PathBuf; 3] {
        [
            self.tls_dir.join("ca.pem"),
            self.tls_dir.join(format!("{name}.pem")),
            self.tls_dir.join(format!("{name}.key")),
        ]
    }

    /// Checks that `tls_dir/ca.pem`, `tls_dir/{name}.pem` and `tls_dir/{name}.key` exist.
    ///
    /// The error names `name`'s entry, the field `tls.dir` and the first missing path.
    pub fn check_cert_files(&self, name: &str) -> Result<(), TopologyError> {
        let Some(role) = self.role_of(name) else {
            return Err(invalid(
                &format!("node {name:?}"),
                "name",
                "not defined in the topology",
            ));
        };
        let entry = format!("{role} \"{name}\"");
        for path in self.cert_paths(name) {
            if !path.is_file() {
                return Err(invalid(
                    &entry,
                    "tls.dir",
                    format!(
                        "missing {} (run `tickcast certs` to create certificates)",
                        path.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The file format, as serde sees it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    settings: RawSettings,
    #[serde(default)]
    ring: RawRing,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    channel: Vec<RawChannel>,
    origin: RawOrigin,
    #[serde(default)]
    relay: Vec<RawRelay>,
    #[serde(default)]
    consumer: Vec<RawConsumer>,
    #[serde(default)]
    publisher: Vec<RawPublisher>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    heartbeat_ms: Option<u64>,
    dead_after: Option<u32>,
    nack_delay_ms: Option<u64>,
    nack_after_packets: Option<u64>,
    max_datagram_batch: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRing {
    max_ticks: Option<usize>,
    max_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    id: ChannelId,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    name: String,
    region: String,
    listen: String,
    ring: Option<RawRing>,
    standby: Option<RawOriginStandby>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOriginStandby {
    name: String,
    listen: String,
    region: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    name: String,
    region: String,
    listen: String,
    parent: String,
    standby: Option<String>,
    ring: Option<RawRing>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumer {
    name: String,
    region: String,
    relays: Vec<String>,
    channels: Option<Vec<ChannelId>>,
    #[serde(default)]
    dual_feed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublisher {
    name: String,
}

// ---------------------------------------------------------------------------------------
// Validation.

/// Why `name` cannot be a node name, if it cannot.
fn name_problem(name: &str) -> Option<String> {
    const WHY: &str = "names become TLS DNS names";
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        return Some(format!(
            "{name:?} contains {c:?}; only a-z, 0-9 and '-' are allowed ({WHY})"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "{name:?} is {} characters long; at most {MAX_NAME_LEN} are allowed ({WHY})",
            name.len()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some(format!("{name:?} must not start or end with '-' ({WHY})"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Some(format!(
            "{name:?} is reserved (tls.dir/{name}.pem is the CA certificate)"
        ));
    }
    None
}

/// How errors refer to an entry: by name when it has a usable one, else by position.
fn label(role: PeerRole, index: usize, name: &str) -> String {
    match (name_problem(name), role) {
        (None, _) => format!("{role} \"{name}\""),
        (Some(_), PeerRole::Origin) => "origin".to_owned(),
        (Some(_), _) => format!("{role} #{}", index + 1),
    }
}

fn check_name(entry: &str, name: &str) -> Result<(), TopologyError> {
    match name_problem(name) {
        Some(problem) => Err(invalid(entry, "name", problem)),
        None => Ok(()),
    }
}

fn check_region(entry: &str, region: &str) -> Result<(), TopologyError> {
    if region.is_empty() {
        return Err(invalid(entry, "region", "must not be empty"));
    }
    Ok(())
}

fn parse_listen(entry: &str, listen: &str) -> Result<SocketAddr, TopologyError> {
    listen.parse().map_err(|e| {
        invalid(
            entry,
            "listen",
            format!("{listen:?} is not an IP socket address like \"127.0.0.1:7000\" ({e})"),
        )
    })
}

/// `raw` applied over `base`, checked; `prefix` is `""` for `[ring]`, `"ring."` for nodes.
fn ring_limits(
    base: RingLimits,
    raw: &RawRing,
    entry: &str,
    prefix: &str,
) -> Result<RingLimits, TopologyError> {
    let limits = RingLimits {
        max_ticks: raw.max_ticks.unwrap_or(base.max_ticks),
        max_bytes: raw.max_bytes.unwrap_or(base.max_bytes),
    };
    if limits.max_ticks == 0 {
        return Err(invalid(
            entry,
            &format!("{prefix}max_ticks"),
            "must be greater than 0",
        ));
    }
    if limits.max_bytes == 0 {
        return Err(invalid(
            entry,
            &format!("{prefix}max_bytes"),
            "must be greater than 0",
        ));
    }
    Ok(limits)
}

fn node_ring(
    base: RingLimits,
    raw: Option<&RawRing>,
    entry: &str,
) -> Result<RingLimits, TopologyError> {
    match raw {
        Some(raw) => ring_limits(base, raw, entry, "ring."),
        None => Ok(base),
    }
}

fn validate_settings(raw: &RawSettings) -> Result<Settings, TopologyError> {
    let d = Settings::default();
    let heartbeat_ms = raw.heartbeat_ms.unwrap_or(d.heartbeat.as_millis() as u64);
    if heartbeat_ms == 0 {
        return Err(invalid(
            "settings",
            "heartbeat_ms",
            "must be greater than 0",
        ));
    }
    let dead_after = raw.dead_after.unwrap_or(d.dead_after);
    if dead_after == 0 {
        return Err(invalid("settings", "dead_after", "must be at least 1"));
    }
    let max_datagram_batch = raw.max_datagram_batch.unwrap_or(d.max_datagram_batch);
    if max_datagram_batch == 0 {
        return Err(invalid(
            "settings",
            "max_datagram_batch",
            "must be at least 1",
        ));
    }
    Ok(Settings {
        heartbeat: Duration::from_millis(heartbeat_ms),
        dead_after,
        nack_delay: raw
            .nack_delay_ms
            .map_or(d.nack_delay, Duration::from_millis),
        nack_after_packets: raw.nack_after_packets.unwrap_or(d.nack_after_packets),
        max_datagram_batch,
    })
}

fn validate_channels(raw: &[RawChannel]) -> Result<Vec<ChannelSpec>, TopologyError> {
    if raw.is_empty() {
        return Err(invalid(
            "channel",
            "id",
            "at least one [[channel]] is required",
        ));
    }
    let mut by_id: BTreeMap<ChannelId, usize> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, c) in raw.iter().enumerate() {
        let entry = format!("channel #{}", i + 1);
        if let Some(first) = by_id.insert(c.id, i) {
            return Err(invalid(
                &entry,
                "id",
                format!("id {} is also used by channel #{}", c.id, first + 1),
            ));
        }
        if c.name.is_empty() {
            return Err(invalid(&entry, "name", "must not be empty"));
        }
        if let Some(first) = by_name.insert(&c.name, i) {
            return Err(invalid(
                &entry,
                "name",
                format!("{:?} is also the name of channel #{}", c.name, first + 1),
            ));
        }
    }
    Ok(raw
        .iter()
        .map(|c| ChannelSpec {
            id: c.id,
            name: c.name.clone(),
        })
        .collect())
}

fn validate(raw: RawTopology) -> Result<Topology, TopologyError> {
    let settings = validate_settings(&raw.settings)?;
    let default_ring = ring_limits(RingLimits::DEFAULT, &raw.ring, "ring", "")?;
    let tls_dir = raw.tls.dir.as_deref().unwrap_or(DEFAULT_TLS_DIR);
    if tls_dir.is_empty() {
        return Err(invalid("tls", "dir", "must not be empty"));
    }
    let channels = validate_channels(&raw.channel)?;

    // Each entry's own fields.
    let o = &raw.origin;
    let origin_entry = label(PeerRole::Origin, 0, &o.name);
    check_name(&origin_entry, &o.name)?;
    check_region(&origin_entry, &o.region)?;
    let origin = OriginSpec {
        name: o.name.clone(),
        region: o.region.clone(),
        listen: parse_listen(&origin_entry, &o.listen)?,
        ring: node_ring(default_ring, o.ring.as_ref(), &origin_entry)?,
    };
    // The standby origin takes the primary's ring and (unless given) its region.
    let origin_standby = match &o.standby {
        None => None,
        Some(sb) => {
            let entry = format!("origin standby {:?}", sb.name);
            check_name(&entry, &sb.name).map_err(|e| rename_field(e, "standby.name"))?;
            Some(OriginSpec {
                name: sb.name.clone(),
                region: sb.region.clone().unwrap_or_else(|| o.region.clone()),
                listen: parse_listen(&entry, &sb.listen)
                    .map_err(|e| rename_field(e, "standby.listen"))?,
                ring: origin.ring,
            })
        }
    };
    let mut relays = Vec::with_capacity(raw.relay.len());
    let mut relay_entries = Vec::with_capacity(raw.relay.len());
    for (i, r) in raw.relay.iter().enumerate() {
        let entry = label(PeerRole::Relay, i, &r.name);
        check_name(&entry, &r.name)?;
        check_region(&entry, &r.region)?;
        relays.push(RelaySpec {
            name: r.name.clone(),
            region: r.region.clone(),
            listen: parse_listen(&entry, &r.listen)?,
            parent: r.parent.clone(),
            standby: r.standby.clone(),
            ring: node_ring(default_ring, r.ring.as_ref(), &entry)?,
        });
        relay_entries.push(entry);
    }
    let mut consumer_entries = Vec::with_capacity(raw.consumer.len());
    for (i, c) in raw.consumer.iter().enumerate() {
        let entry = label(PeerRole::Consumer, i, &c.name);
        check_name(&entry, &c.name)?;
        check_region(&entry, &c.region)?;
        consumer_entries.push(entry);
    }
    for (i, p) in raw.publisher.iter().enumerate() {
        check_name(&label(PeerRole::Publisher, i, &p.name), &p.name)?;
    }

    // Names are unique across all entries; listen addresses across listening nodes.
    let all_names = std::iter::once((PeerRole::Origin, 0, o.name.as_str()))
        .chain(
            o.standby
                .iter()
                .map(|sb| (PeerRole::Origin, 1, sb.name.as_str())),
        )
        .chain(
            raw.relay
                .iter()
                .enumerate()
                .map(|(i, r)| (PeerRole::Relay, i, r.name.as_str())),
        )
        .chain(
            raw.consumer
                .iter()
                .enumerate()
                .map(|(i, c)| (PeerRole::Consumer, i, c.name.as_str())),
        )
        .chain(
            raw.publisher
                .iter()
                .enumerate()
                .map(|(i, p)| (PeerRole::Publisher, i, p.name.as_str())),
        );
    let mut roles: BTreeMap<&str, (PeerRole, usize)> = BTreeMap::new();
    for (role, i, name) in all_names {
        if let Some((first_role, first_i)) = roles.insert(name, (role, i)) {
            let first = match first_role {
                PeerRole::Origin => "the origin".to_owned(),
                _ => format!("{first_role} #{}", first_i + 1),
            };
            let this = match role {
                PeerRole::Origin => "the origin".to_owned(),
                _ => format!("{role} #{}", i + 1),
            };
            return Err(invalid(
                &label(role, i, name),
                "name",
                format!(
                    "{name:?} is used twice, by {first} and {this} (names must be unique \
                     across origin, relays, consumers and publishers)"
                ),
            ));
        }
    }
    let standby_entry = origin_standby
        .as_ref()
        .map(|sb| format!("origin standby {:?}", sb.name));
    let listeners = std::iter::once((origin_entry.as_str(), origin.listen))
        .chain(
            standby_entry
                .as_deref()
                .zip(origin_standby.as_ref().map(|sb| sb.listen)),
        )
        .chain(
            relay_entries
                .iter()
                .map(String::as_str)
                .zip(relays.iter().map(|r| r.listen)),
        );
    let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
    for (entry, addr) in listeners {
        if let Some((other, _)) = bound.iter().find(|(_, a)| addrs_clash(*a, addr)) {
            return Err(invalid(
                entry,
                "listen",
                format!("{addr} clashes with the listen address of {other}"),
            ));
        }
        bound.push((entry, addr));
    }
    let role = |name: &str| roles.get(name).map(|(r, _)| *r);

    // Parents: known, not a consumer or publisher, not itself, and reaching the origin.
    for (r, entry) in relays.iter().zip(&relay_entries) {
        if r.parent == r.name {
            return Err(invalid(entry, "parent", "a relay cannot be its own parent"));
        }
        match role(&r.parent) {
            None => {
                return Err(invalid(
                    entry,
                    "parent",
                    format!("unknown node {:?}", r.parent),
                ));
            }
            Some(other @ (PeerRole::Consumer | PeerRole::Publisher)) => {
                return Err(invalid(
                    entry,
                    "parent",
                    format!(
                        "{:?} is {}; a parent must be the origin or a relay",
                        r.parent,
                        other.with_article()
                    ),
                ));
            }
            Some(PeerRole::Origin | PeerRole::Relay) => {}
        }
    }
    check_reachable(&origin.name, &relays, &relay_entries)?;

    // Standbys: a relay with the same parent, not itself, named once, naming no standby.
    let mut primaries: BTreeMap<&str, &str> = BTreeMap::new();
    for (r, entry) in relays.iter().zip(&relay_entries) {
        let Some(standby) = r.standby.as_deref() else {
            continue;
        };
        if standby == r.name {
            return Err(invalid(
                entry,
                "standby",
                "a relay cannot be its own standby",
            ));
        }
        let Some(spec) = relays.iter().find(|s| s.name == standby) else {
            let problem = match role(standby) {
                None => format!("unknown node {standby:?}"),
                Some(other) => format!(
                    "{standby:?} is {}; a standby must be a relay",
                    other.with_article()
                ),
            };
            return Err(invalid(entry, "standby", problem));
        };
        if let Some(next) = spec.standby.as_deref() {
            return Err(invalid(
                entry,
                "standby",
                format!(
                    "{standby:?} itself names a standby ({next:?}); standby chains are not \
                     allowed"
                ),
            ));
        }
        if spec.parent != r.parent {
            return Err(invalid(
                entry,
                "standby",
                format!(
                    "{standby:?} has parent {:?} but this relay has parent {:?}; a standby \
                     must subscribe to the same parent as its primary",
                    spec.parent, r.parent
                ),
            ));
        }
        if let Some(first) = primaries.insert(standby, &r.name) {
            return Err(invalid(
                entry,
                "standby",
                format!("{standby:?} is already the standby of relay {first:?}"),
            ));
        }
    }

    // Consumers: candidate upstreams and channels.
    let mut consumers = Vec::with_capacity(raw.consumer.len());
    for (c, entry) in raw.consumer.iter().zip(&consumer_entries) {
        if c.relays.is_empty() {
            return Err(invalid(
                entry,
                "relays",
                "must list at least one relay (or the origin)",
            ));
        }
        if c.dual_feed && c.relays.len() < 2 {
            return Err(invalid(
                entry,
                "dual_feed",
                "needs at least two relays to receive from at once",
            ));
        }
        for (i, upstream) in c.relays.iter().enumerate() {
            if c.relays[..i].contains(upstream) {
                return Err(invalid(
                    entry,
                    "relays",
                    format!("{upstream:?} is listed twice"),
                ));
            }
            match role(upstream) {
                None => {
                    return Err(invalid(
                        entry,
                        "relays",
                        format!("unknown node {upstream:?}"),
                    ));
                }
                Some(other @ (PeerRole::Consumer | PeerRole::Publisher)) => {
                    return Err(invalid(
                        entry,
                        "relays",
                        format!(
                            "{upstream:?} is {}; consumers subscribe to relays or the origin",
                            other.with_article()
                        ),
                    ));
                }
                Some(PeerRole::Origin | PeerRole::Relay) => {}
            }
        }
        let subscribed = match &c.channels {
            None => channels.iter().map(|ch| ch.id).collect(),
            Some(ids) => {
                if ids.is_empty() {
                    return Err(invalid(
                        entry,
                        "channels",
                        "must not be empty (omit it to subscribe to all channels)",
                    ));
                }
                for (i, id) in ids.iter().enumerate() {
                    if !channels.iter().any(|ch| ch.id == *id) {
                        return Err(invalid(
                            entry,
                            "channels",
                            format!("unknown channel id {id}"),
                        ));
                    }
                    if ids[..i].contains(id) {
                        return Err(invalid(
                            entry,
                            "channels",
                            format!("channel id {id} is listed twice"),
                        ));
                    }
                }
                ids.clone()
            }
        };
        consumers.push(ConsumerSpec {
            name: c.name.clone(),
            region: c.region.clone(),
            relays: c.relays.clone(),
            channels: subscribed,
            dual_feed: c.dual_feed,
        });
    }

    Ok(Topology {
        settings,
        channels,
        tls_dir: PathBuf::from(tls_dir),
        origin,
        origin_standby,
        relays,
        consumers,
        publishers: raw.publisher.into_iter().map(|p| p.name).collect(),
    })
}

/// Whether two listen addresses would fight over one port (same port, and the same IP or
/// either one unspecified, e.g. `0.0.0.0`).
fn addrs_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && (a.ip() == b.ip()
            || (a.is_ipv4() == b.is_ipv4() && (a.ip().is_unspecified() || b.ip().is_unspecified())))
}

/// Every relay's parent chain reaches the origin. Assumes every parent is the origin or a
/// relay other than itself (checked before).
fn check_reachable(
    origin: &str,
    relays: &[RelaySpec],
    entries: &[String],
) -> Result<(), TopologyError> {
    let parent_of: BTreeMap<&str, &str> = relays
        .iter()
        .map(|r| (r.name.as_str(), r.parent.as_str()))
        .collect();
    for (r, entry) in relays.iter().zip(entries) {
        let mut chain = vec![r.name.as_str()];
        let mut current = r.parent.as_str();
        while current != origin {
            if let Some(pos) = chain.iter().position(|n| *n == current) {
                let path = format!("{} -> {current}", chain.join(" -> "));
                let problem = if pos == 0 {
                    format!("parent cycle {path}: never reaches origin {origin:?}")
                } else {
                    format!("not reachable from origin {origin:?}: parent chain {path} loops")
                };
                return Err(invalid(entry, "parent", problem));
            }
            chain.push(current);
            match parent_of.get(current) {
                Some(next) => current = next,
                None => break,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[[channel]]
id = 1
name = "equities"

[[channel]]
id = 2
name = "futures"

[origin]
name = "origin"
region = "us-east"
listen = "127.0.0.1:7000"

[[relay]]
name = "r1"
region = "us-east"
listen = "127.0.0.1:7101"
parent = "origin"
standby = "r1-b"

[[relay]]
name = "r1-b"
region = "us-east"
listen = "127.0.0.1:7102"
parent = "origin"

[[relay]]
name = "r2"
region = "eu-west"
listen = "127.0.0.1:7201"
parent = "r1"

[[consumer]]
name = "c1"
region = "us-east"
relays = ["r2", "r1"]

[[consumer]]
name = "c2"
region = "eu-west"
relays = ["origin"]
channels = [2]

[[publisher]]
name = "feed"
"#;

    /// BASE with each `(from, to)` applied to the first occurrence of `from`.
    fn edit(edits: &[(&str, &str)]) -> String {
        let mut text = BASE.to_owned();
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?} not in the test topology");
            text = text.replacen(from, to, 1);
        }
        text
    }

    /// The (entry, field) of the validation error `text` produces.
    fn invalid_at(text: &str) -> (String, String) {
        match Topology::from_toml_str(text) {
            Err(TopologyError::Invalid { entry, field, .. }) => (entry, field),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn assert_invalid(text: &str, entry: &str, field: &str) {
        assert_eq!(invalid_at(text), (entry.to_owned(), field.to_owned()));
    }

    fn problem(text: &str) -> String {
        match Topology::from_toml_str(text) {
            Err(TopologyError::Invalid { problem, .. }) => problem,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn parse_error(text: &str) -> String {
        match Topology::from_toml_str(text) {
            Err(TopologyError::Parse(message)) => message,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn base_parses_with_defaults() {
        let t = Topology::from_toml_str(BASE).unwrap();
        assert_eq!(t.settings, Settings::default());
        assert_eq!(t.settings.heartbeat, Duration::from_millis(30));
        assert_eq!(t.settings.dead_after, 3);
        assert_eq!(t.settings.nack_delay, Duration::from_millis(5));
        assert_eq!(t.settings.max_datagram_batch, 64);
        assert_eq!(t.tls_dir, PathBuf::from("certs"));
        assert_eq!(t.origin.ring, RingLimits::DEFAULT);
        assert_eq!(t.origin.ring.max_bytes, 67_108_864);
        assert_eq!(t.origin.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(t.channels.len(), 2);
        assert_eq!(t.relays.len(), 3);
        assert_eq!(t.consumer("c1").unwrap().channels, vec![1, 2]);
        assert_eq!(t.consumer("c2").unwrap().channels, vec![2]);
        assert_eq!(t.publishers, vec!["feed".to_owned()]);
    }

    #[test]
    fn explicit_settings_ring_and_tls() {
        let text = format!(
            "[settings]\nheartbeat_ms = 20\ndead_after = 5\nnack_delay_ms = 0\n\
             nack_after_packets = 1\nmax_datagram_batch = 8\n[ring]\nmax_ticks = 1000\n[tls]\ndir = \"/tmp/x\"\n{}",
            BASE.replacen(
                "listen = \"127.0.0.1:7000\"",
                "listen = \"127.0.0.1:7000\"\nring = { max_bytes = 4096 }",
                1
            )
        );
        let t = Topology::from_toml_str(&text).unwrap();
        assert_eq!(t.settings.heartbeat, Duration::from_millis(20));
        assert_eq!(t.settings.dead_after, 5);
        assert_eq!(t.settings.nack_delay, Duration::ZERO);
        assert_eq!(t.settings.nack_after_packets, 1);
        assert_eq!(t.settings.max_datagram_batch, 8);
        assert_eq!(t.tls_dir, PathBuf::from("/tmp/x"));
        let default = RingLimits {
            max_ticks: 1000,
            max_bytes: RingLimits::DEFAULT.max_bytes,
        };
        assert_eq!(t.ring_of("r1"), Some(default));
        assert_eq!(
            t.ring_of("origin"),
            Some(RingLimits {
                max_ticks: 1000,
                max_bytes: 4096
            })
        );
    }

    #[test]
    fn queries() {
        let t = Topology::from_toml_str(BASE).unwrap();
        assert_eq!(t.role_of("origin"), Some(PeerRole::Origin));
        assert_eq!(t.role_of("r1-b"), Some(PeerRole::Relay));
        assert_eq!(t.role_of("c2"), Some(PeerRole::Consumer));
        assert_eq!(t.role_of("feed"), Some(PeerRole::Publisher));
        assert_eq!(t.role_of("nope"), None);
        assert_eq!(t.relay("r2").unwrap().parent, "r1");
        assert!(t.relay("c1").is_none());
        assert_eq!(t.consumer("c1").unwrap().relays, vec!["r2", "r1"]);
        assert!(t.consumer("r1").is_none());
        assert_eq!(t.listen_addr("r2"), Some("127.0.0.1:7201".parse().unwrap()));
        assert_eq!(
            t.listen_addr("origin"),
            Some("127.0.0.1:7000".parse().unwrap())
        );
        assert_eq!(t.listen_addr("c1"), None);
        assert_eq!(t.ring_of("c1"), None);
        assert_eq!(t.upstream_candidates("r2"), vec!["r1", "r1-b"]);
        assert_eq!(t.upstream_candidates("r1"), vec!["origin"]);
        assert_eq!(t.upstream_candidates("r1-b"), vec!["origin"]);
        assert!(t.upstream_candidates("origin").is_empty());
        assert!(t.upstream_candidates("c1").is_empty());
        let names = |v: Vec<&RelaySpec>| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(t.children_of("origin")), vec!["r1", "r1-b"]);
        assert_eq!(names(t.children_of("r1")), vec!["r2"]);
        assert!(t.children_of("r2").is_empty());
        assert_eq!(t.standby_of("r1"), Some("r1-b"));
        assert_eq!(t.standby_of("r2"), None);
        assert_eq!(t.primary_of("r1-b"), Some("r1"));
        assert_eq!(t.primary_of("r1"), None);
        assert_eq!(t.node_names(), vec!["origin", "r1", "r1-b", "r2"]);
        assert_eq!(
            t.cert_names(),
            vec!["origin", "r1", "r1-b", "r2", "c1", "c2", "feed"]
        );
        assert_eq!(PeerRole::Consumer.to_string(), "consumer");
    }

    #[test]
    fn error_display_names_entry_and_field() {
        let text = edit(&[("parent = \"r1\"", "parent = \"relay-xx\"")]);
        let err = Topology::from_toml_str(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "relay \"r2\": field `parent`: unknown node \"relay-xx\""
        );
    }

    #[test]
    fn names_must_be_dns_labels() {
        assert_invalid(
            &edit(&[("name = \"r2\"", "name = \"\"")]),
            "relay #3",
            "name",
        );
        assert_invalid(
            &edit(&[("name = \"r2\"", "name = \"R2\"")]),
            "relay #3",
            "name",
        );
        assert_invalid(
            &edit(&[("name = \"r2\"", "name = \"r_2\"")]),
            "relay #3",
            "name",
        );
        assert_invalid(
            &edit(&[("name = \"r2\"", "name = \"-r2\"")]),
            "relay #3",
            "name",
        );
        assert_invalid(
            &edit(&[("name = \"c1\"", "name = \"c1-\"")]),
            "consumer #1",
            "name",
        );
        assert_invalid(
            &edit(&[("name = \"feed\"", "name = \"fé\"")]),
            "publisher #1",
            "name",
        );
        assert_invalid(
            &edit(&[("name = \"origin\"", "name = \"Origin\"")]),
            "origin",
            "name",
        );
        // "ca" would overwrite the CA certificate in tls.dir.
        assert_invalid(
            &edit(&[("name = \"c2\"", "name = \"ca\"")]),
            "consumer #2",
            "name",
        );
        let long = "a".repeat(64);
        let text = edit(&[("name = \"c2\"", &format!("name = \"{long}\""))]);
        assert_invalid(&text, "consumer #2", "name");
        assert!(problem(&text).contains("64 characters"));
        let ok = "a".repeat(63);
        let text = edit(&[("name = \"c2\"", &format!("name = \"{ok}\""))]);
        assert!(Topology::from_toml_str(&text).is_ok());
    }

    #[test]
    fn names_are_unique_across_roles() {
        let text = edit(&[("name = \"c1\"", "name = \"r2\"")]);
        assert_invalid(&text, "consumer \"r2\"", "name");
        assert!(problem(&text).contains("relay #3 and consumer #1"));
        assert_invalid(
            &edit(&[("name = \"feed\"", "name = \"origin\"")]),
            "publisher \"origin\"",
            "name",
        );
        let text = edit(&[("name = \"r2\"", "name = \"r1\"")]);
        assert_invalid(&text, "relay \"r1\"", "name");
        assert!(problem(&text).contains("relay #1 and relay #3"));
    }

    #[test]
    fn listen_addresses() {
        assert_invalid(
            &edit(&[("127.0.0.1:7201", "127.0.0.1:7101")]),
            "relay \"r2\"",
            "listen",
        );
        assert_invalid(
            &edit(&[("127.0.0.1:7201", "0.0.0.0:7000")]),
            "relay \"r2\"",
            "listen",
        );
        assert_invalid(
            &edit(&[("127.0.0.1:7201", "localhost:7201")]),
            "relay \"r2\"",
            "listen",
        );
        assert_invalid(
            &edit(&[("127.0.0.1:7000", "127.0.0.1")]),
            "origin \"origin\"",
            "listen",
        );
        // Same port on different IPs is fine.
        assert!(Topology::from_toml_str(&edit(&[("127.0.0.1:7201", "127.0.0.2:7101")])).is_ok());
    }

    #[test]
    fn region_must_not_be_empty() {
        assert_invalid(
            &edit(&[("region = \"eu-west\"", "region = \"\"")]),
            "relay \"r2\"",
            "region",
        );
    }

    #[test]
    fn parent_must_be_origin_or_relay() {
        let unknown = edit(&[("parent = \"r1\"", "parent = \"relay-xx\"")]);
        assert_invalid(&unknown, "relay \"r2\"", "parent");
        let consumer = edit(&[("parent = \"r1\"", "parent = \"c1\"")]);
        assert_invalid(&consumer, "relay \"r2\"", "parent");
        assert!(problem(&consumer).contains("a consumer"));
        let publisher = edit(&[("parent = \"r1\"", "parent = \"feed\"")]);
        assert_invalid(&publisher, "relay \"r2\"", "parent");
        let own = edit(&[("parent = \"r1\"", "parent = \"r2\"")]);
        assert_invalid(&own, "relay \"r2\"", "parent");
        assert!(problem(&own).contains("own parent"));
    }

    #[test]
    fn parent_cycles_and_unreachable_relays() {
        let cycle = format!(
            "{BASE}
[[relay]]
name = \"a\"
region = \"x\"
listen = \"127.0.0.1:7301\"
parent = \"b\"

[[relay]]
name = \"b\"
region = \"x\"
listen = \"127.0.0.1:7302\"
parent = \"a\"
"
        );
        assert_invalid(&cycle, "relay \"a\"", "parent");
        assert_eq!(
            problem(&cycle),
            "parent cycle a -> b -> a: never reaches origin \"origin\""
        );
        // A relay hanging off a cycle, listed before it, is unreachable.
        let tail = cycle.replacen("parent = \"r1\"", "parent = \"a\"", 1);
        assert_invalid(&tail, "relay \"r2\"", "parent");
        assert!(problem(&tail).contains("not reachable"));
        assert!(problem(&tail).contains("r2 -> a -> b -> a"));
    }

    #[test]
    fn standby_rules() {
        let check = |from: &str, to: &str, entry: &str| {
            let text = edit(&[(from, to)]);
            assert_invalid(&text, entry, "standby");
            problem(&text)
        };
        let p = check("standby = \"r1-b\"", "standby = \"nope\"", "relay \"r1\"");
        assert!(p.contains("unknown node"));
        let p = check("standby = \"r1-b\"", "standby = \"origin\"", "relay \"r1\"");
        assert!(p.contains("the origin"));
        let p = check("standby = \"r1-b\"", "standby = \"c1\"", "relay \"r1\"");
        assert!(p.contains("a consumer"));
        let p = check("standby = \"r1-b\"", "standby = \"r1\"", "relay \"r1\"");
        assert!(p.contains("own standby"));
        // r2's parent is r1, not origin.
        let p = check("standby = \"r1-b\"", "standby = \"r2\"", "relay \"r1\"");
        assert!(p.contains("same parent"));
        // A chain: r1 -> r1-b -> r3.
        let chain = format!(
            "{}
[[relay]]
name = \"r3\"
region = \"x\"
listen = \"127.0.0.1:7301\"
parent = \"origin\"
",
            edit(&[(
                "listen = \"127.0.0.1:7102\"",
                "listen = \"127.0.0.1:7102\"\nstandby = \"r3\""
            )])
        );
        assert_invalid(&chain, "relay \"r1\"", "standby");
        assert!(problem(&chain).contains("chains"));
        // Two primaries naming the same standby.
        let twice = format!(
            "{BASE}
[[relay]]
name = \"r3\"
region = \"x\"
listen = \"127.0.0.1:7301\"
parent = \"origin\"
standby = \"r1-b\"
"
        );
        assert_invalid(&twice, "relay \"r3\"", "standby");
        assert!(problem(&twice).contains("already the standby of relay \"r1\""));
    }

    #[test]
    fn origin_standby() {
        let text = BASE.replace(
            "listen = \"127.0.0.1:7000\"",
            "listen = \"127.0.0.1:7000\"\nstandby = { name = \"origin-b\", listen = \"127.0.0.1:7001\" }",
        );
        assert_ne!(text, BASE, "BASE has the origin at 127.0.0.1:7000");
        let t = Topology::from_toml_str(&text).unwrap();
        assert_eq!(t.role_of("origin-b"), Some(PeerRole::Origin));
        assert_eq!(t.origin_names(), vec!["origin", "origin-b"]);
        assert_eq!(t.standby_of("origin"), Some("origin-b"));
        assert!(t.node_names().contains(&"origin-b"));
        let clash = text.replace("127.0.0.1:7001", "127.0.0.1:7000");
        assert_invalid(&clash, "origin standby \"origin-b\"", "listen");
        let bad = text.replace("name = \"origin-b\"", "name = \"Origin B\"");
        assert_invalid(&bad, "origin standby \"Origin B\"", "standby.name");
    }

    #[test]
    fn dual_feed_needs_two_relays() {
        let text = edit(&[(
            "relays = [\"r2\", \"r1\"]",
            "dual_feed = true\nrelays = [\"r2\"]",
        )]);
        assert_invalid(&text, "consumer \"c1\"", "dual_feed");
        let ok = edit(&[(
            "relays = [\"r2\", \"r1\"]",
            "dual_feed = true\nrelays = [\"r2\", \"r1\"]",
        )]);
        assert!(Topology::from_toml_str(&ok).unwrap().consumers[0].dual_feed);
    }

    #[test]
    fn consumer_relays() {
        let check = |to: &str| {
            let text = edit(&[("relays = [\"r2\", \"r1\"]", to)]);
            assert_invalid(&text, "consumer \"c1\"", "relays");
            problem(&text)
        };
        assert!(check("relays = []").contains("at least one"));
        assert!(check("relays = [\"r2\", \"nope\"]").contains("unknown node"));
        assert!(check("relays = [\"c2\"]").contains("a consumer"));
        assert!(check("relays = [\"feed\"]").contains("a publisher"));
        assert!(check("relays = [\"r2\", \"r1\", \"r2\"]").contains("twice"));
        // The origin is a valid upstream.
        let text = edit(&[("relays = [\"r2\", \"r1\"]", "relays = [\"r2\", \"origin\"]")]);
        assert!(Topology::from_toml_str(&text).is_ok());
    }

    #[test]
    fn consumer_channels() {
        let check = |to: &str| {
            let text = edit(&[("channels = [2]", to)]);
            assert_invalid(&text, "consumer \"c2\"", "channels");
            problem(&text)
        };
        assert!(check("channels = [3]").contains("unknown channel id 3"));
        assert!(check("channels = [1, 1]").contains("twice"));
        assert!(check("channels = []").contains("empty"));
    }

    #[test]
    fn channel_rules() {
        let none = BASE
            .replacen("[[channel]]\nid = 1\nname = \"equities\"\n", "", 1)
            .replacen("[[channel]]\nid = 2\nname = \"futures\"\n", "", 1)
            .replace("channels = [2]\n", "");
        assert_invalid(&none, "channel", "id");
        assert_invalid(&edit(&[("id = 2", "id = 1")]), "channel #2", "id");
        assert_invalid(
            &edit(&[("name = \"futures\"", "name = \"equities\"")]),
            "channel #2",
            "name",
        );
        assert_invalid(
            &edit(&[("name = \"futures\"", "name = \"\"")]),
            "channel #2",
            "name",
        );
    }

    #[test]
    fn ring_limits_must_be_positive() {
        let node = |ring: &str| {
            edit(&[(
                "parent = \"r1\"",
                &format!("parent = \"r1\"\nring = {ring}"),
            )])
        };
        assert_invalid(&node("{ max_ticks = 0 }"), "relay \"r2\"", "ring.max_ticks");
        assert_invalid(
            &node("{ max_ticks = 10, max_bytes = 0 }"),
            "relay \"r2\"",
            "ring.max_bytes",
        );
        assert_invalid(
            &format!("[ring]\nmax_ticks = 0\n{BASE}"),
            "ring",
            "max_ticks",
        );
        assert_invalid(
            &format!("[ring]\nmax_bytes = 0\n{BASE}"),
            "ring",
            "max_bytes",
        );
    }

    #[test]
    fn settings_rules() {
        let with = |s: &str| format!("[settings]\n{s}\n{BASE}");
        assert_invalid(&with("heartbeat_ms = 0"), "settings", "heartbeat_ms");
        assert_invalid(&with("dead_after = 0"), "settings", "dead_after");
        assert_invalid(
            &with("max_datagram_batch = 0"),
            "settings",
            "max_datagram_batch",
        );
    }

    #[test]
    fn tls_dir_must_not_be_empty() {
        assert_invalid(&format!("[tls]\ndir = \"\"\n{BASE}"), "tls", "dir");
    }

    #[test]
    fn unknown_keys_are_parse_errors() {
        let msg = parse_error(&edit(&[(
            "parent = \"r1\"",
            "parent = \"r1\"\nprent = \"x\"",
        )]));
        assert!(msg.contains("prent"), "{msg}");
        let msg = parse_error(&format!("[settings]\nheartbeat = 5\n{BASE}"));
        assert!(msg.contains("heartbeat"), "{msg}");
        let msg = parse_error(&format!("[links]\nx = 1\n{BASE}"));
        assert!(msg.contains("links"), "{msg}");
        let msg = parse_error(&edit(&[(
            "parent = \"r1\"",
            "parent = \"r1\"\nring = { max_tick = 5 }",
        )]));
        assert!(msg.contains("max_tick"), "{msg}");
        let msg = parse_error(&format!("[tls]\ncert_dir = \"x\"\n{BASE}"));
        assert!(msg.contains("cert_dir"), "{msg}");
        // Wrong types and syntax errors are parse errors too.
        parse_error(&format!("[settings]\ndead_after = -1\n{BASE}"));
        parse_error("[origin\n");
    }

    #[test]
    fn first_error_in_file_order_wins() {
        // Both r1-b and r2 have unknown parents; r1-b comes first.
        let text = edit(&[
            ("parent = \"r1\"", "parent = \"x2\""),
            (
                "listen = \"127.0.0.1:7102\"\nparent = \"origin\"",
                "listen = \"127.0.0.1:7102\"\nparent = \"x1\"",
            ),
        ]);
        assert_invalid(&text, "relay \"r1-b\"", "parent");
        assert!(problem(&text).contains("x1"));
    }

    fn scratch_dir(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tickcast-topology-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn load_reads_file_and_names_path_on_error() {
        let dir = scratch_dir("load");
        let path = dir.join("topology.toml");
        std::fs::write(&path, BASE).unwrap();
        assert_eq!(
            Topology::load(&path).unwrap(),
            Topology::from_toml_str(BASE).unwrap()
        );
        let missing = dir.join("missing.toml");
        match Topology::load(&missing) {
            Err(TopologyError::Io { path, .. }) => {
                assert_eq!(path, missing.display().to_string())
            }
            other => panic!("expected an io error, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_cert_files_names_entry_field_and_path() {
        let dir = scratch_dir("certs");
        let text = format!("[tls]\ndir = {:?}\n{BASE}", dir.display().to_string());
        let t = Topology::from_toml_str(&text).unwrap();
        let expect_missing = |file: &str| match t.check_cert_files("r2") {
            Err(TopologyError::Invalid {
                entry,
                field,
                problem,
            }) => {
                assert_eq!(entry, "relay \"r2\"");
                assert_eq!(field, "tls.dir");
                assert!(
                    problem.contains(&dir.join(file).display().to_string()),
                    "{problem}"
                );
            }
            other => panic!("expected a missing-file error, got {other:?}"),
        };
        expect_missing("ca.pem");
        std::fs::write(dir.join("ca.pem"), "").unwrap();
        expect_missing("r2.pem");
        std::fs::write(dir.join("r2.pem"), "").unwrap();
        expect_missing("r2.key");
        std::fs::write(dir.join("r2.key"), "").unwrap();
        assert_eq!(t.check_cert_files("r2"), Ok(()));
        assert_invalid_err(t.check_cert_files("nope"), "node \"nope\"", "name");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn assert_invalid_err(result: Result<(), TopologyError>, want_entry: &str, want_field: &str) {
        match result {
            Err(TopologyError::Invalid { entry, field, .. }) => {
                assert_eq!((entry.as_str(), field.as_str()), (want_entry, want_field))
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn repo_topology_is_valid() {
        let t = Topology::from_toml_str(include_str!("../../topology.toml")).unwrap();
        assert_eq!(t.consumers.len(), 40);
        assert_eq!(t.relays.len(), 12);
        assert_eq!(t.publishers, vec!["feed".to_owned()]);
        assert_eq!(t.channels.len(), 1);
        let depth = |relay: &str| {
            let mut depth = 0;
            let mut node = relay;
            while let Some(r) = t.relay(node) {
                depth += 1;
                node = &r.parent;
            }
            assert_eq!(node, t.origin.name);
            depth
        };
        for c in &t.consumers {
            assert_eq!(depth(&c.relays[0]), 2, "consumer {}", c.name);
            assert_eq!(c.relays.len(), 2);
            assert_eq!(t.primary_of(&c.relays[1]), Some(c.relays[0].as_str()));
        }
        for r in &t.relays {
            if let Some(standby) = &r.standby {
                assert_eq!(t.relay(standby).unwrap().region, r.region);
            }
        }
        assert_eq!(t.children_of("origin").len(), 4);
        assert_eq!(
            t.upstream_candidates("relay-euc"),
            vec!["relay-emea", "relay-emea-b"]
        );
        assert_eq!(t.cert_names().len(), 1 + 12 + 40 + 1);
    }
}
