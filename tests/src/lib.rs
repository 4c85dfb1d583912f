//! Support for the end-to-end tests: topologies on free loopback ports, and bounded waits
//! that fail with a message saying what was still missing.

use std::fmt::Write;
use std::net::UdpSocket;
use std::time::Duration;

use tickcast_proto::topology::Topology;

/// A free UDP port on 127.0.0.1 (bound and released; the kernel will not hand it out
/// again at once).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a probe socket")
        .port()
}

/// A two-tier test topology: origin → `tier1` relays → `tier1 * per_tier1` regional relays,
/// each regional relay with `consumers_per` consumers. Extra TOML is appended verbatim.
pub fn two_tier(
    tier1: usize,
    per_tier1: usize,
    consumers_per: usize,
    ring_ticks: usize,
    extra: &str,
) -> Topology {
    let mut t = String::new();
    writeln!(
        t,
        "[settings]\nheartbeat_ms = 50\ndead_after = 3\nnack_delay_ms = 3\n"
    )
    .unwrap();
    writeln!(
        t,
        "[ring]\nmax_ticks = {ring_ticks}\nmax_bytes = 268435456\n"
    )
    .unwrap();
    writeln!(t, "[[channel]]\nid = 1\nname = \"test\"\n").unwrap();
    writeln!(
        t,
        "[origin]\nname = \"origin\"\nregion = \"r0\"\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    )
    .unwrap();
    for a in 0..tier1 {
        writeln!(t, "[[relay]]\nname = \"t1-{a}\"\nregion = \"r{a}\"\nlisten = \"127.0.0.1:{}\"\nparent = \"origin\"\n", free_port()).unwrap();
        for b in 0..per_tier1 {
            writeln!(t, "[[relay]]\nname = \"t2-{a}-{b}\"\nregion = \"r{a}\"\nlisten = \"127.0.0.1:{}\"\nparent = \"t1-{a}\"\n", free_port()).unwrap();
            for c in 0..consumers_per {
                writeln!(t, "[[consumer]]\nname = \"c-{a}-{b}-{c}\"\nregion = \"r{a}\"\nrelays = [\"t2-{a}-{b}\"]\n").unwrap();
            }
        }
    }
    t.push_str("[[publisher]]\nname = \"feed\"\n");
    t.push_str(extra);
    Topology::from_toml_str(&t).unwrap_or_else(|e| panic!("test topology invalid: {e}\n{t}"))
}

/// How long the end-to-end tests wait for something before failing. Generous: these run on
/// loaded 2-core machines; a pass is usually much faster.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Installs a tracing subscriber honouring `RUST_LOG` (once per test binary).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
