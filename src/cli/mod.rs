//! The subcommands of the `tickcast` binary and what they share.
//!
//! `harness` runs a whole topology in-process and watches its consumers (used by `up` and
//! `bench`), `report` turns what it saw into tables and JSON, `signal` handles Ctrl-C.
//! Node wiring itself lives in the library (`tickcast::net`); nothing here builds
//! endpoints or configurations by hand except `tail`'s consumer socket.

pub mod bench;
pub mod certs;
pub mod failover;
pub mod harness;
pub mod node;
pub mod report;
pub mod signal;
pub mod sim;
pub mod tail;
pub mod up;

use std::path::PathBuf;

use anyhow::Result;
use tickcast_proto::topology::Topology;

/// The `--topology` argument, flattened into every subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct TopologyArg {
    /// Topology file.
    #[arg(long, value_name = "FILE", default_value = "topology.toml")]
    pub topology: PathBuf,
}

impl TopologyArg {
    /// Loads and validates the topology (errors name the file, the entry and the field).
    pub fn load(&self) -> Result<Topology> {
        tickcast::net::load_topology(&self.topology)
    }
}
