//! A publisher sends ticks into the origin over QUIC; consumers receive them numbered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tickcast::net::{Certs, bind_at, start_network, upstreams};
use tickcast_client::{Publisher, PublisherConfig};
use tickcast_tests::{
    assert_all_received, drain_all, init_tracing, two_tier, wait_relays_connected,
};
use tickcast_transport::TokioClock;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_ticks_are_numbered_once_and_reach_every_consumer() {
    init_tracing();
    let topo = two_tier(1, 2, 2, 100_000, "");
    let shutdown = CancellationToken::new();
    let certs = Certs::ephemeral().unwrap();
    let net = start_network(&topo, &certs, Arc::new(TokioClock::new()), &shutdown).unwrap();
    wait_relays_connected(&net).await;
    let n = 10_000;
    let drains = drain_all(net.consumers, n).await;

    let ep = bind_at("127.0.0.1:0".parse().unwrap(), "feed", &certs, false).unwrap();
    let origins = upstreams(&topo, &topo.origin_names()).unwrap();
    let mut publisher = Publisher::connect(PublisherConfig::new("feed", origins), ep)
        .await
        .expect("publisher connects");
    for i in 0..n {
        let id = publisher
            .publish(1, Bytes::from(format!("p{i}")))
            .await
            .expect("publish");
        assert_eq!(id, i + 1);
    }
    tokio::time::timeout(Duration::from_secs(60), publisher.flush())
        .await
        .expect("origin acknowledges every record")
        .expect("flush");
    assert_eq!(publisher.unacked(), 0);
    let tallies = assert_all_received(drains, n).await;
    assert!(tallies.iter().all(|t| t.delivered == n));
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), net.tasks.wait()).await;
}
