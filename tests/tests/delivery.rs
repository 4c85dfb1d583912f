//! End to end over real QUIC on loopback: origin → two tiers of relays → consumers.
//! Every consumer must receive every tick exactly once, in order.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tickcast::net::{Certs, NetOptions, Sockets, start_network, start_network_with};
use tickcast_tests::{
    assert_all_received, drain_all, init_tracing, publish_n, two_tier, wait_relays_connected,
};
use tickcast_transport::TokioClock;
use tokio_util::sync::CancellationToken;

async fn stop(shutdown: CancellationToken, net_tasks: tokio_util::task::TaskTracker) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), net_tasks.wait())
        .await
        .expect("every node stops within 30 s of shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_ticks_reach_every_consumer_through_two_tiers() {
    init_tracing();
    let topo = two_tier(2, 2, 3, 200_000, ""); // 4 regional relays, 12 consumers
    let shutdown = CancellationToken::new();
    let net = start_network(
        &topo,
        &Certs::ephemeral().unwrap(),
        Arc::new(TokioClock::new()),
        &shutdown,
    )
    .unwrap();
    wait_relays_connected(&net).await;
    let n = 100_000;
    let drains = drain_all(net.consumers, n).await;
    publish_n(&net.origin, 0, n).await;
    let tallies = assert_all_received(drains, n).await;
    assert_eq!(tallies.len(), 12);
    stop(shutdown, net.tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_at_every_hop_is_repaired_by_nack() {
    init_tracing();
    let topo = two_tier(2, 2, 3, 200_000, "");
    let shutdown = CancellationToken::new();
    let sockets = Sockets::Lossy {
        loss: 0.05,
        seed: 7,
        stats: Default::default(),
    };
    let opts = NetOptions {
        sockets: sockets.clone(),
        ..Default::default()
    };
    let net = start_network_with(
        &topo,
        &Certs::ephemeral().unwrap(),
        Arc::new(TokioClock::new()),
        &shutdown,
        &opts,
    )
    .unwrap();
    wait_relays_connected(&net).await;
    let n = 100_000;
    let drains = drain_all(net.consumers, n).await;
    publish_n(&net.origin, 0, n).await;
    assert_all_received(drains, n).await;
    // The loss was real, and NACK repair is what made up for it at every tier.
    assert!(
        sockets.dropped() > 1000,
        "only {} packets dropped",
        sockets.dropped()
    );
    let repaired_by_relays: u64 = net
        .relays
        .iter()
        .map(|(_, s)| s.repaired_out.load(Relaxed))
        .sum();
    let nacks_up: u64 = net
        .relays
        .iter()
        .map(|(_, s)| s.nacks_up.load(Relaxed))
        .sum();
    assert!(
        net.origin_stats.repaired_out.load(Relaxed) > 0,
        "origin answered no NACK"
    );
    assert!(
        repaired_by_relays > 0 && nacks_up > 0,
        "relays repaired {repaired_by_relays}, nacked {nacks_up}"
    );
    stop(shutdown, net.tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_between_relay_and_parent_that_heals_loses_nothing() {
    init_tracing();
    // No standby for the parent: the relay must ride out the partition and resume.
    let topo = two_tier(1, 1, 3, 200_000, "");
    let shutdown = CancellationToken::new();
    let opts = NetOptions {
        sockets: Sockets::switchable(),
        ..Default::default()
    };
    let mut net = start_network_with(
        &topo,
        &Certs::ephemeral().unwrap(),
        Arc::new(TokioClock::new()),
        &shutdown,
        &opts,
    )
    .unwrap();
    wait_relays_connected(&net).await;
    let n = 30_000;
    let drains = drain_all(std::mem::take(&mut net.consumers), n).await;
    publish_n(&net.origin, 0, 10_000).await;
    net.control
        .partition(&topo, "t2-0-0", "t1-0", true)
        .unwrap();
    // Ticks published during the partition, at a steady pace for about a second.
    for i in 0..10 {
        publish_n(&net.origin, 10_000 + i * 1000, 1000).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    net.control
        .partition(&topo, "t2-0-0", "t1-0", false)
        .unwrap();
    publish_n(&net.origin, 20_000, 10_000).await;
    assert_all_received(drains, n).await;
    let reconnects = net
        .relays
        .iter()
        .find(|(n, _)| n == "t2-0-0")
        .map(|(_, s)| s.upstream_connects.load(Relaxed))
        .unwrap();
    assert!(
        reconnects >= 2,
        "the relay noticed the partition and resubscribed ({reconnects})"
    );
    stop(shutdown, net.tasks).await;
}
