//! A standby origin that joins after the feed started still holds the primary's history:
//! after a takeover it is the only source of repairs for anyone behind.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tickcast::net::{Certs, Launcher, Sockets};
use tickcast_proto::topology::Topology;
use tickcast_tests::{free_port, init_tracing, patience, publish_n};
use tickcast_transport::TokioClock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_standby_origin_receives_the_history_before_it_joined() {
    init_tracing();
    let toml = format!(
        "[settings]\nheartbeat_ms = 50\ndead_after = 3\n\
         [ring]\nmax_ticks = 100000\nmax_bytes = 67108864\n\
         [[channel]]\nid = 1\nname = \"test\"\n\
         [origin]\nname = \"origin\"\nregion = \"r\"\nlisten = \"127.0.0.1:{}\"\n\
         standby = {{ name = \"origin-b\", listen = \"127.0.0.1:{}\" }}\n\
         [[relay]]\nname = \"t1\"\nregion = \"r\"\nlisten = \"127.0.0.1:{}\"\nparent = \"origin\"\n\
         [[consumer]]\nname = \"c\"\nregion = \"r\"\nrelays = [\"t1\"]\n",
        free_port(),
        free_port(),
        free_port()
    );
    let topo = Topology::from_toml_str(&toml).unwrap();
    let certs = Certs::ephemeral().unwrap();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let launch = Launcher {
        certs: &certs,
        clock: Arc::new(TokioClock::new()),
        tasks: &tasks,
        sockets: &Sockets::Real,
    };
    // The primary numbers 5,000 ticks with no standby connected (it runs unconfirmed).
    let (origin, _) = launch.origin(&topo, "origin", &shutdown).unwrap();
    let n = 5_000;
    publish_n(&origin, 0, n).await;
    // Then the standby joins, and more ticks follow.
    let (_, standby) = launch.origin(&topo, "origin-b", &shutdown).unwrap();
    publish_n(&origin, n, n).await;
    let deadline = tokio::time::Instant::now() + patience();
    while standby.received.load(Relaxed) < 2 * n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby origin holds {} of {} ticks: it did not get the history before it joined",
            standby.received.load(Relaxed),
            2 * n
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(standby.received.load(Relaxed), 2 * n, "no tick twice");
    shutdown.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), tasks.wait()).await;
}
