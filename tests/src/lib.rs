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

/// [`PATIENCE`], or `TICKCAST_TEST_PATIENCE_S` seconds when set (for debugging).
pub fn patience() -> Duration {
    std::env::var("TICKCAST_TEST_PATIENCE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(PATIENCE, Duration::from_secs)
}

/// Installs a tracing subscriber honouring `RUST_LOG` (once per test binary).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Waits (bounded by [`PATIENCE`]) until every relay of the network has an upstream
/// session, so ticks published afterwards flow through the whole tree.
pub async fn wait_relays_connected(net: &tickcast::net::Network) {
    use std::sync::atomic::Ordering::Relaxed;
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let waiting: Vec<&str> = net
            .relays
            .iter()
            .filter(|(_, s)| s.upstream_connects.load(Relaxed) == 0)
            .map(|(n, _)| n.as_str())
            .collect();
        if waiting.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relays never connected upstream: {waiting:?}"
        );
        // Polling a condition with a deadline (not sleeping in place of synchronisation).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drains a subscription into a tally until `want` seqs (delivered + lost) have been seen
/// after it connected, or [`PATIENCE`] runs out. Signals `ready` on the first `Connected`.
pub async fn drain(
    mut sub: tickcast_client::Subscription,
    want: u64,
    ready: tokio::sync::mpsc::Sender<()>,
) -> tickcast::tally::Tally {
    let mut tally = tickcast::tally::Tally::default();
    let deadline = tokio::time::Instant::now() + patience();
    let mut signalled = false;
    while tally.delivered + tally.lost < want {
        let ev = match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(ev)) => ev,
            _ => break,
        };
        if !signalled && matches!(ev, tickcast_client::Event::Connected { .. }) {
            signalled = true;
            let _ = ready.send(()).await;
        }
        tally.on_event(&ev, 0, |_| 0);
    }
    tally
}

/// Spawns a drain task per consumer; returns them once all are subscribed.
pub async fn drain_all(
    consumers: Vec<(
        tickcast_proto::topology::ConsumerSpec,
        tickcast_client::Subscription,
    )>,
    want: u64,
) -> Vec<(String, tokio::task::JoinHandle<tickcast::tally::Tally>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(consumers.len().max(1));
    let n = consumers.len();
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|(spec, sub)| (spec.name, tokio::spawn(drain(sub, want, tx.clone()))))
        .collect();
    for i in 0..n {
        tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {i} of {n} consumers subscribed within {PATIENCE:?}"));
    }
    tasks
}

/// Awaits the drain tasks and fails, naming each consumer, unless every one received
/// exactly `n` ticks once and in order with nothing lost.
pub async fn assert_all_received(
    tasks: Vec<(String, tokio::task::JoinHandle<tickcast::tally::Tally>)>,
    n: u64,
) -> Vec<tickcast::tally::Tally> {
    let mut bad = Vec::new();
    let mut out = Vec::new();
    for (name, h) in tasks {
        let t = h.await.expect("drain task");
        if !(t.clean() && t.delivered == n) {
            bad.push(format!(
                "{name}: delivered {} of {n}, lost {}, dup {}, out-of-order {}, first lost {:?}",
                t.delivered,
                t.lost,
                t.duplicates,
                t.out_of_order,
                t.lost_ranges.first()
            ));
        }
        out.push(t);
    }
    assert!(
        bad.is_empty(),
        "consumers did not get every tick once, in order:\n{}",
        bad.join("\n")
    );
    out
}

/// Publishes `n` small ticks on channel 1, yielding to the runtime every `chunk` ticks.
pub async fn publish_n(origin: &tickcast_origin::OriginHandle, first_index: u64, n: u64) {
    for i in first_index..first_index + n {
        origin
            .publish(1, bytes::Bytes::from(format!("tick {i}").into_bytes()))
            .await
            .expect("publish");
        if i % 64 == 63 {
            tokio::task::yield_now().await;
        }
    }
}

/// The `tickcast` binary of this build, built first if needed (tests that kill real
/// processes run nodes through it).
pub fn tickcast_bin() -> std::path::PathBuf {
    use std::sync::OnceLock;
    static BIN: OnceLock<std::path::PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test-binary> → target/<profile>/tickcast
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target/<profile>");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-q", "-p", "tickcast", "--bin", "tickcast"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the tickcast binary failed");
        let bin = profile_dir.join("tickcast");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// A node running as its own process; killed with SIGKILL when dropped.
pub struct NodeProcess {
    /// Node name.
    pub name: String,
    child: std::process::Child,
}

impl NodeProcess {
    /// Starts `tickcast <kind> --name <name> --topology <path>`.
    pub fn start(kind: &str, name: &str, topology: &std::path::Path) -> NodeProcess {
        let child = std::process::Command::new(tickcast_bin())
            .args([kind, "--name", name, "--topology"])
            .arg(topology)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {kind} {name}: {e}"));
        NodeProcess {
            name: name.to_string(),
            child,
        }
    }

    /// `kill -9`: no goodbye packets, no graceful close.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tickcast-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
