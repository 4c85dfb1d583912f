//! Failover with real processes and `kill -9`: relays run as `tickcast relay` processes,
//! the origin as `tickcast origin`; this test publishes over QUIC at 20k ticks/s and runs
//! 40 consumers in-process. Every consumer must get every tick once, in order.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tickcast::net::{Certs, Launcher, Sockets, bind_at, consumer_config, upstreams};
use tickcast::tally::Tally;
use tickcast_client::{Event, Publisher, PublisherConfig, Subscription};
use tickcast_proto::topology::Topology;
use tickcast_tests::{NodeProcess, TempDir, free_port, init_tracing, patience, tickcast_bin};
use tickcast_transport::TokioClock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// origin (+ standby origin-b) → t1 (+ standby t1-b) → t2 (+ standby t2-b) → 40 consumers
/// listing [t2, t2-b].
fn topology(dir: &Path, dual_feed: usize) -> (Topology, std::path::PathBuf) {
    let mut t = String::new();
    writeln!(
        t,
        "[settings]\nheartbeat_ms = 50\ndead_after = 3\nnack_delay_ms = 3\n"
    )
    .unwrap();
    writeln!(t, "[ring]\nmax_ticks = 1000000\nmax_bytes = 536870912\n").unwrap();
    writeln!(t, "[tls]\ndir = {:?}\n", dir.join("certs")).unwrap();
    writeln!(t, "[[channel]]\nid = 1\nname = \"test\"\n").unwrap();
    writeln!(
        t,
        "[origin]\nname = \"origin\"\nregion = \"r\"\nlisten = \"127.0.0.1:{}\"\n\
         standby = {{ name = \"origin-b\", listen = \"127.0.0.1:{}\" }}\n",
        free_port(),
        free_port()
    )
    .unwrap();
    for (name, parent, standby) in [
        ("t1", "origin", Some("t1-b")),
        ("t1-b", "origin", None),
        ("t2", "t1", Some("t2-b")),
        ("t2-b", "t1", None),
    ] {
        writeln!(t, "[[relay]]\nname = \"{name}\"\nregion = \"r\"\nlisten = \"127.0.0.1:{}\"\nparent = \"{parent}\"", free_port()).unwrap();
        if let Some(s) = standby {
            writeln!(t, "standby = \"{s}\"").unwrap();
        }
        t.push('\n');
    }
    for i in 0..40 {
        writeln!(t, "[[consumer]]\nname = \"c-{i:02}\"\nregion = \"r\"\nrelays = [\"t2\", \"t2-b\"]\ndual_feed = {}\n", i < dual_feed).unwrap();
    }
    t.push_str("[[publisher]]\nname = \"feed\"\n");
    let path = dir.join("topology.toml");
    std::fs::write(&path, &t).unwrap();
    let status = std::process::Command::new(tickcast_bin())
        .args(["certs", "--topology"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("tickcast certs");
    assert!(status.success(), "tickcast certs failed");
    (Topology::from_toml_str(&t).unwrap(), path)
}

/// What one consumer saw: the tally, plus the longest pause between two deliveries that
/// ends after the kill (start-up lag is not a failover stall).
struct Seen {
    name: String,
    tally: Tally,
    max_gap: Duration,
    failovers: u64,
    /// Ticks whose payload is not the publisher record their seq stands for ("tick {seq-1}"):
    /// a record numbered twice or skipped across an origin switch shows up here.
    wrong_payload: u64,
}

async fn consume(
    name: String,
    mut sub: Subscription,
    want: u64,
    ready: tokio::sync::mpsc::Sender<()>,
    killed_at: Arc<std::sync::OnceLock<tokio::time::Instant>>,
) -> Seen {
    let mut tally = Tally::default();
    let mut last = None::<tokio::time::Instant>;
    let mut max_gap = Duration::ZERO;
    let mut failovers = 0;
    let mut wrong_payload = 0;
    let mut signalled = false;
    let deadline = tokio::time::Instant::now() + patience();
    while tally.delivered + tally.lost < want {
        let Ok(Some(ev)) = tokio::time::timeout_at(deadline, sub.recv()).await else {
            break;
        };
        match &ev {
            Event::Connected { .. } if !signalled => {
                signalled = true;
                let _ = ready.send(()).await;
            }
            Event::Disconnected { .. } => failovers += 1,
            Event::Tick(t) if t.payload != format!("tick {}", t.seq - 1).as_bytes() => {
                wrong_payload += 1;
            }
            Event::Tick(t) if t.seq > 1 => {
                let now = tokio::time::Instant::now();
                if let (Some(l), Some(_)) = (last, killed_at.get()) {
                    max_gap = max_gap.max(now - l);
                }
                last = Some(now);
            }
            _ => {}
        }
        tally.on_event(&ev, 0, |_| 0);
    }
    Seen {
        name,
        tally,
        max_gap,
        failovers,
        wrong_payload,
    }
}

/// Starts every node as a process, the consumers in-process; publishes `n` ticks at
/// `per_ms` per millisecond and kills `victim` with SIGKILL after `kill_after` ticks.
async fn run(victim: &str, n: u64, kill_after: u64, dual_feed: usize) -> Vec<Seen> {
    // One network of processes at a time: these tests measure failover, and four networks
    // of five processes and 40 consumers each would only measure a saturated machine.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    init_tracing();
    let dir = TempDir::new(&format!("failover-{victim}"));
    let (topo, path) = topology(&dir.0, dual_feed);
    let mut procs = vec![
        NodeProcess::start("origin", "origin", &path),
        NodeProcess::start("origin", "origin-b", &path),
    ];
    for r in ["t1", "t1-b", "t2", "t2-b"] {
        procs.push(NodeProcess::start("relay", r, &path));
    }
    let certs = Certs::Dir(dir.0.join("certs"));
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(40);
    let killed_at = Arc::new(std::sync::OnceLock::new());
    let mut consumers = Vec::new();
    let launch = Launcher {
        certs: &certs,
        clock: Arc::new(TokioClock::new()),
        tasks: &tasks,
        sockets: &Sockets::Real,
    };
    for spec in &topo.consumers {
        let sub = launch
            .consumer(consumer_config(&topo, spec).unwrap(), &shutdown)
            .unwrap();
        consumers.push(tokio::spawn(consume(
            spec.name.clone(),
            sub,
            n,
            ready_tx.clone(),
            killed_at.clone(),
        )));
    }
    for i in 0..40 {
        tokio::time::timeout(patience(), ready.recv())
            .await
            .unwrap_or_else(|_| panic!("{i} of 40 consumers subscribed"));
    }
    // The origin process may still be starting: retry the publisher (bounded).
    let origins = upstreams(&topo, &topo.origin_names()).unwrap();
    let deadline = tokio::time::Instant::now() + patience();
    let mut publisher = loop {
        let ep = bind_at("127.0.0.1:0".parse().unwrap(), "feed", &certs, false).unwrap();
        match Publisher::connect(PublisherConfig::new("feed", origins.clone()), ep).await {
            Ok(p) => break p,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "origin never accepted the publisher: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // 20 ticks per millisecond = 20k ticks/s.
    let mut clock = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while sent < n {
        clock.tick().await;
        for _ in 0..20.min(n - sent) {
            publisher
                .publish(1, Bytes::from(format!("tick {sent}")))
                .await
                .expect("publish");
            sent += 1;
            if sent == kill_after {
                let p = procs.iter_mut().find(|p| p.name == victim).expect("victim");
                let _ = killed_at.set(tokio::time::Instant::now());
                p.kill9();
            }
        }
    }
    tokio::time::timeout(patience(), publisher.flush())
        .await
        .expect("acks")
        .expect("flush");
    let mut seen = Vec::new();
    for c in consumers {
        seen.push(c.await.unwrap());
    }
    shutdown.cancel();
    drop(procs);
    seen
}

fn assert_lossless(seen: &[Seen], n: u64) {
    let bad: Vec<String> = seen
        .iter()
        .filter(|s| !(s.tally.clean() && s.tally.delivered == n && s.wrong_payload == 0))
        .map(|s| {
            format!(
                "{}: delivered {} of {n}, lost {}, dup {}, ooo {}, wrong payloads {}",
                s.name,
                s.tally.delivered,
                s.tally.lost,
                s.tally.duplicates,
                s.tally.out_of_order,
                s.wrong_payload
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "ticks lost or repeated across the failover:\n{}",
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_regional_relay_loses_nothing() {
    let n = 60_000;
    let seen = run("t2", n, 20_000, 0).await;
    assert_lossless(&seen, n);
    assert!(
        seen.iter().all(|s| s.failovers >= 1),
        "every consumer failed over"
    );
    let worst = seen.iter().map(|s| s.max_gap).max().unwrap();
    eprintln!("relay kill: worst delivery pause {worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_relays_parent_loses_nothing() {
    let n = 60_000;
    let seen = run("t1", n, 20_000, 0).await;
    assert_lossless(&seen, n);
    let worst = seen.iter().map(|s| s.max_gap).max().unwrap();
    eprintln!("parent kill: worst delivery pause {worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_feed_consumers_do_not_stall_when_a_feed_dies() {
    let n = 50_000;
    // A consumer with one feed waits for failure detection (3 heartbeats, 150 ms) and a
    // reconnect; with two it should not wait at all. On a loaded machine both pauses grow,
    // so the check is relative: well under detection time, or well under the single-feed
    // consumers' pause in the same run. If even the single-feed consumers paused for
    // seconds, the machine stalled for everyone (that run measured the machine, not the
    // failover): measure once more.
    for attempt in 1..=2 {
        let seen = run("t2", n, 30_000, 20).await;
        assert_lossless(&seen, n);
        let dual = seen[..20].iter().map(|s| s.max_gap).max().unwrap();
        let single = seen[20..].iter().map(|s| s.max_gap).max().unwrap();
        eprintln!("dual-feed worst pause {dual:?}, single-feed worst pause {single:?}");
        if dual < Duration::from_millis(100) || dual * 2 < single {
            return;
        }
        assert!(
            attempt == 1 && single >= Duration::from_secs(1),
            "dual-feed consumers stalled {dual:?}, single-feed ones {single:?}"
        );
        eprintln!("every consumer stalled for over a second: measuring again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_origin_hands_numbering_to_its_standby_without_loss_or_repeats() {
    let n = 60_000;
    let seen = run("origin", n, 20_000, 0).await;
    assert_lossless(&seen, n);
    let worst = seen.iter().map(|s| s.max_gap).max().unwrap();
    eprintln!("origin kill: worst delivery pause {worst:?}");
}
