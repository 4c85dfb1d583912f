//! End to end over real QUIC on loopback: late joiners, evicted history, and peers that
//! must be refused or cut off without disturbing anyone else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tickcast::net::{Certs, Launcher, NetOptions, consumer_config, start_network_with};
use tickcast_client::Event;
use tickcast_proto::SeqRange;
use tickcast_proto::codec::{self, Control, Hello, PROTOCOL_VERSION, Role, Subscribe};
use tickcast_tests::{
    assert_all_received, drain_all, init_tracing, patience, publish_n, two_tier,
    wait_relays_connected,
};
use tickcast_transport::{CLOSE_PROTOCOL, CLOSE_REFUSED, Pki, QuicTuning, TokioClock};
use tokio_util::sync::CancellationToken;

const LATE: &str = "[[consumer]]\nname = \"late-resume\"\nregion = \"r0\"\nrelays = [\"t2-0-0\"]\n\n[[consumer]]\nname = \"late-evicted\"\nregion = \"r0\"\nrelays = [\"t2-0-0\"]\n";

/// Collects events until `want` seqs have been delivered or reported lost.
async fn collect(mut sub: tickcast_client::Subscription, want: u64) -> Vec<Event> {
    let mut evs = Vec::new();
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + patience();
    while seen < want {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(ev)) => {
                match &ev {
                    Event::Tick(_) => seen += 1,
                    Event::Lost { range, .. } => seen += range.len(),
                    _ => {}
                }
                evs.push(ev);
            }
            _ => panic!(
                "only {seen} of {want} seqs seen; last events: {:?}",
                &evs[evs.len().saturating_sub(3)..]
            ),
        }
    }
    evs
}

fn seqs(evs: &[Event]) -> Vec<u64> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Tick(t) => Some(t.seq),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_resume_from_the_ring_or_get_lost_for_exactly_the_evicted_range() {
    init_tracing();
    // Rings of 1000 ticks at every node: after 5000 ticks, 1..=4000 are gone everywhere.
    let topo = two_tier(1, 1, 2, 1000, LATE);
    let shutdown = CancellationToken::new();
    let certs = Certs::ephemeral().unwrap();
    let clock = Arc::new(TokioClock::new());
    let opts = NetOptions {
        skip_consumers: vec!["late-resume".into(), "late-evicted".into()],
        ..Default::default()
    };
    let net = start_network_with(&topo, &certs, clock.clone(), &shutdown, &opts).unwrap();
    wait_relays_connected(&net).await;
    let drains = drain_all(net.consumers, 6000).await;
    publish_n(&net.origin, 0, 5000).await;

    let start_late = |name: &str, from: u64| {
        let spec = topo.consumer(name).unwrap();
        let mut cfg = consumer_config(&topo, spec).unwrap();
        cfg.resume_from.insert(1, from);
        Launcher {
            certs: &certs,
            clock: clock.clone(),
            tasks: &net.tasks,
            sockets: &Default::default(),
        }
        .consumer(cfg, &shutdown)
        .unwrap()
    };
    // Wait until the regional relay holds tick 5000, so the ring state is known.
    let probe = start_late("late-resume", 4500);
    let resumed = collect(probe, 501).await;
    assert_eq!(
        seqs(&resumed),
        (4500..=5000).collect::<Vec<_>>(),
        "resume from 4500 replays exactly 4500..=5000"
    );
    assert!(!resumed.iter().any(|e| matches!(e, Event::Lost { .. })));

    let mut evicted = start_late("late-evicted", 1);
    // Once it is subscribed (the ring then holds 4001..=5000), more live ticks follow: the
    // late consumer must see the lost range, the ring's ticks, then the live ones.
    let first = tokio::time::timeout(patience(), evicted.recv())
        .await
        .expect("subscribes");
    assert!(matches!(first, Some(Event::Connected { .. })), "{first:?}");
    let waiting = tokio::spawn(collect(evicted, 6000));
    publish_n(&net.origin, 5000, 1000).await;
    let evs = waiting.await.unwrap();
    let lost: Vec<SeqRange> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Lost { range, .. } => Some(*range),
            _ => None,
        })
        .collect();
    assert_eq!(
        lost,
        vec![SeqRange::new(1, 4000)],
        "exactly the evicted range is reported lost"
    );
    assert_eq!(
        seqs(&evs),
        (4001..=6000).collect::<Vec<_>>(),
        "then every later tick, in order"
    );
    assert_all_received(drains, 6000).await;
    shutdown.cancel();
    net.tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), net.tasks.wait()).await;
}

/// A raw QUIC connection to `addr` as `name` with an identity from `pki`.
async fn raw_connect(
    pki: &Pki,
    trust: &Pki,
    name: &str,
    server: &str,
    addr: std::net::SocketAddr,
) -> Result<quinn::Connection, String> {
    let id = pki.issue(name).unwrap();
    let client =
        tickcast_transport::client_config(&id, &trust.ca_der(), &QuicTuning::default()).unwrap();
    let ep = tickcast_transport::bind("127.0.0.1:0".parse().unwrap(), None, client).unwrap();
    let conn = ep
        .connect(addr, server)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Sends a hello on a new control stream and waits for the connection's fate (bounded).
async fn hello_and_wait(
    conn: &quinn::Connection,
    hello: Hello,
    then: Option<Bytes>,
) -> quinn::ConnectionError {
    let (mut send, _recv) = conn.open_bi().await.expect("open control stream");
    send.write_all(&codec::encode_control_frame(&Control::Hello(hello)))
        .await
        .expect("send hello");
    if let Some(garbage) = then {
        let _ = send.write_all(&garbage).await;
    }
    tokio::time::timeout(patience(), conn.closed())
        .await
        .expect("server closes the connection")
}

/// A hello for channel 1, live from the head.
fn hello_as(role: Role, name: &str) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        role,
        name: name.into(),
        subscriptions: vec![Subscribe {
            channel: 1,
            resume_from: None,
        }],
    }
}

fn app_code(e: &quinn::ConnectionError) -> Option<quinn::VarInt> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => Some(c.error_code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_refused_or_cut_off_and_others_are_undisturbed() {
    init_tracing();
    let topo = two_tier(1, 1, 3, 100_000, "");
    let shutdown = CancellationToken::new();
    let pki = Arc::new(Pki::generate().unwrap());
    let certs = Certs::Ephemeral(pki.clone());
    let net = start_network_with(
        &topo,
        &certs,
        Arc::new(TokioClock::new()),
        &shutdown,
        &NetOptions::default(),
    )
    .unwrap();
    wait_relays_connected(&net).await;
    let n = 20_000;
    let drains = drain_all(net.consumers, n).await;
    let relay = "t2-0-0";
    let addr = topo.listen_addr(relay).unwrap();

    // 1. A client whose certificate comes from another CA: the TLS handshake fails.
    let other = Pki::generate().unwrap();
    match raw_connect(&other, &pki, "c-0-0-0", relay, addr).await {
        Err(e) => assert!(
            e.contains("certificate") || e.contains("UnknownIssuer"),
            "unexpected error: {e}"
        ),
        Ok(conn) => {
            // TLS 1.3: the client may finish first; the server's verdict arrives as a close.
            let err = tokio::time::timeout(patience(), conn.closed())
                .await
                .expect("refused");
            assert!(
                err.to_string().contains("certificate"),
                "unexpected close: {err}"
            );
        }
    }
    // The same through the client crate: it never connects and says why.
    {
        let spec = topo.consumer("c-0-0-0").unwrap();
        let cfg = consumer_config(&topo, spec).unwrap();
        let ep = {
            let id = other.issue("c-0-0-0").unwrap();
            let client =
                tickcast_transport::client_config(&id, &pki.ca_der(), &QuicTuning::default())
                    .unwrap();
            tickcast_transport::bind("127.0.0.1:0".parse().unwrap(), None, client).unwrap()
        };
        let stop = CancellationToken::new();
        let mut sub =
            tickcast_client::Client::spawn(cfg, ep, Arc::new(TokioClock::new()), stop.clone());
        let ev = tokio::time::timeout(patience(), sub.recv())
            .await
            .expect("an event")
            .expect("open");
        assert!(
            matches!(ev, Event::Disconnected { .. }),
            "foreign-CA client must not connect: {ev:?}"
        );
        stop.cancel();
    }

    // 2. A consumer posing as a relay (its certificate is valid, its role is not).
    let conn = raw_connect(&pki, &pki, "c-0-0-0", relay, addr)
        .await
        .unwrap();
    let hello = hello_as(Role::Relay, "c-0-0-0");
    assert_eq!(
        app_code(&hello_and_wait(&conn, hello, None).await),
        Some(CLOSE_REFUSED)
    );
    // ... or claiming a relay's name with a consumer's certificate.
    let conn = raw_connect(&pki, &pki, "c-0-0-0", relay, addr)
        .await
        .unwrap();
    let hello = hello_as(Role::Relay, "t1-0");
    assert_eq!(
        app_code(&hello_and_wait(&conn, hello, None).await),
        Some(CLOSE_REFUSED)
    );

    // 3. A malformed frame after a valid hello: that connection is closed with a protocol
    //    error while the feed runs; the other consumers get every tick.
    let conn = raw_connect(&pki, &pki, "c-0-0-1", relay, addr)
        .await
        .unwrap();
    let hello = hello_as(Role::Consumer, "c-0-0-1");
    let publishing = {
        let origin = net.origin.clone();
        tokio::spawn(async move { publish_n(&origin, 0, n).await })
    };
    let garbage = Bytes::from_static(&[5, 0, 0, 0, 0x7f, 1, 2, 3, 4]);
    assert_eq!(
        app_code(&hello_and_wait(&conn, hello, Some(garbage)).await),
        Some(CLOSE_PROTOCOL)
    );
    publishing.await.unwrap();
    assert_all_received(drains, n).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), net.tasks.wait()).await;
}
