//! Runs a netsim scenario: `cargo run -p tickcast-netsim --release --example sim -- SCENARIO [SEED] [OUT] [--star] [--realtime]`.
//! (`tickcast sim` does the same from the main binary.)

fn main() -> anyhow::Result<()> {
    // RUST_LOG=info shows what the nodes log (failovers, faults).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags: Vec<&String> = args.iter().filter(|a| a.starts_with("--")).collect();
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(scenario) = pos.first() else {
        anyhow::bail!("usage: sim SCENARIO [SEED] [OUT] [--star] [--realtime] [--duration S]");
    };
    let seed = pos.get(1).map_or(Ok(1), |s| s.parse())?;
    let out = pos
        .get(2)
        .map_or("netsim-out".to_string(), |s| s.to_string());
    tickcast_netsim::run_cli(
        std::path::Path::new(scenario.as_str()),
        seed,
        std::path::Path::new(&out),
        flags.iter().any(|f| *f == "--star"),
        flags.iter().any(|f| *f == "--realtime"),
    )
}
