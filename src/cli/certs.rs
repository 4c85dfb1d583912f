//! `tickcast certs`: a fresh CA and one certificate per topology name.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::TopologyArg;

/// Flags of `tickcast certs`.
#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    #[command(flatten)]
    topology: TopologyArg,
    /// Directory to write to (default: the topology's `tls.dir`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Runs `tickcast certs`.
pub fn run(a: CertsArgs) -> Result<ExitCode> {
    let topo = a.topology.load()?;
    let dir = a.out.clone().unwrap_or_else(|| topo.tls_dir.clone());
    let names = topo.cert_names();
    tickcast_transport::write_certs(&dir, &names)
        .with_context(|| format!("writing certificates to {}", dir.display()))?;
    println!(
        "wrote a new CA and {} certificates to {}:",
        names.len(),
        dir.display()
    );
    println!(
        "  {}  {}  (CA; keep the key private)",
        dir.join("ca.pem").display(),
        dir.join("ca.key").display()
    );
    for n in &names {
        println!(
            "  {}  {}",
            dir.join(format!("{n}.pem")).display(),
            dir.join(format!("{n}.key")).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
