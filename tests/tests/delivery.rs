//! End to end over real QUIC on loopback: origin → two tiers of relays → consumers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tickcast::net::{Certs, start_network};
use tickcast::tally::Tally;
use tickcast_client::Event;
use tickcast_tests::{PATIENCE, init_tracing, two_tier};
use tickcast_transport::TokioClock;
use tokio_util::sync::CancellationToken;

/// Publishes `n` ticks into the network while every consumer drains; returns the tallies.
async fn run_feed(net: tickcast::net::Network, n: u64, per_ms: u64) -> Vec<(String, Tally)> {
    let mut handles = Vec::new();
    for (spec, mut sub) in net.consumers {
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            // Wait until subscribed before the feed starts (first Connected event).
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while tally.delivered + tally.lost < n {
                let ev = match tokio::time::timeout_at(deadline, sub.recv()).await {
                    Ok(Some(ev)) => ev,
                    Ok(None) => break,
                    Err(_) => break,
                };
                tally.on_event(&ev, 0, |_| 0);
                if let Event::Connected { .. } = ev {
                    continue;
                }
            }
            (spec.name, tally)
        }));
    }
    // Let every consumer subscribe before publishing: seqs before a consumer's join are
    // not its to receive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..n {
        net.origin
            .publish(1, Bytes::from(format!("tick {i}").into_bytes()))
            .await
            .expect("publish");
        if per_ms > 0 && i % per_ms == per_ms - 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("consumer task"));
    }
    out
}

fn assert_all_clean(tallies: &[(String, Tally)], n: u64) {
    let bad: Vec<String> = tallies
        .iter()
        .filter(|(_, t)| !(t.clean() && t.delivered == n))
        .map(|(name, t)| {
            format!(
                "{name}: delivered {} of {n}, lost {}, dup {}, out-of-order {}, first {:?}",
                t.delivered,
                t.lost,
                t.duplicates,
                t.out_of_order,
                t.lost_ranges.first()
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "consumers missing ticks:\n{}",
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_ticks_reach_ten_consumers_through_two_tiers() {
    init_tracing();
    let topo = two_tier(2, 2, 3, 200_000, ""); // 12 consumers
    let shutdown = CancellationToken::new();
    let net = start_network(
        &topo,
        &Certs::ephemeral().unwrap(),
        Arc::new(TokioClock::new()),
        &shutdown,
    )
    .unwrap();
    let tasks = net.tasks.clone();
    let n = 100_000;
    let tallies = run_feed(net, n, 50).await;
    assert_eq!(tallies.len(), 12);
    assert_all_clean(&tallies, n);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), tasks.wait())
        .await
        .expect("clean shutdown");
}
