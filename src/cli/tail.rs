//! `tickcast tail`: one consumer of the topology, printing every event it receives.

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use futures::FutureExt;
use tickcast::net::{Certs, bind_at, check_certs, consumer_config};
use tickcast_client::{Client, Event};
use tickcast_proto::Clock;
use tickcast_proto::Seq;
use tickcast_transport::TokioClock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::TopologyArg;
use super::harness::STOP_TIMEOUT;
use super::signal::interrupt_token;

/// Characters of payload shown per tick.
const PREVIEW_CHARS: usize = 40;

/// Flags of `tickcast tail`.
#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// The consumer's name in the topology.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    topology: TopologyArg,
    /// Start every channel at this seq (default: the live head).
    #[arg(long, value_name = "SEQ")]
    from: Option<Seq>,
    /// Stop after this many ticks.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// Runs `tickcast tail`.
pub async fn run(a: TailArgs) -> Result<ExitCode> {
    let topo = a.topology.load()?;
    let Some(spec) = topo.consumer(&a.name) else {
        let names: Vec<&str> = topo.consumers.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "{:?} is not a consumer of {} (consumers: {})",
            a.name,
            a.topology.topology.display(),
            names.join(", ")
        );
    };
    check_certs(&topo, &a.name)?;
    let certs = Certs::Dir(topo.tls_dir.clone());
    let mut cfg = consumer_config(&topo, spec)?;
    if let Some(from) = a.from {
        cfg.resume_from = spec.channels.iter().map(|&c| (c, from)).collect();
    }
    // Any local address of the upstreams' family: loopback-only would not reach remote relays.
    let local = match cfg.upstreams.first().map(|u| u.addr.ip()) {
        Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let ep = bind_at(SocketAddr::new(local, 0), &a.name, &certs, false)?;
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let interrupt = interrupt_token();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (client, mut sub) = Client::new(cfg, ep, clock);
    tasks.spawn(client.run(shutdown.clone()));
    tasks.close();

    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut ticks = 0u64;
    let limit = a.count.unwrap_or(u64::MAX);
    'outer: while ticks < limit {
        let ev = tokio::select! {
            biased;
            _ = interrupt.cancelled() => break,
            ev = sub.recv() => match ev { Some(ev) => ev, None => break },
        };
        // Print what is already queued, then flush once.
        let mut next = Some(ev);
        while let Some(ev) = next.take() {
            if matches!(ev, Event::Tick(_)) {
                ticks += 1;
            }
            if writeln!(out, "{}", line(&ev)).is_err() {
                break 'outer; // stdout closed (e.g. piped into `head`)
            }
            if ticks >= limit {
                break;
            }
            next = sub.recv().now_or_never().flatten();
        }
        if out.flush().is_err() {
            break;
        }
    }
    let _ = out.flush();
    drop(out);
    shutdown.cancel();
    if tokio::time::timeout(STOP_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        warn!("consumer still running {STOP_TIMEOUT:?} after shutdown");
    }
    Ok(ExitCode::SUCCESS)
}

/// One event as a line of text.
fn line(ev: &Event) -> String {
    match ev {
        Event::Tick(t) => format!(
            "tick {} {} {} {} {}",
            t.channel,
            t.seq,
            t.origin_us,
            t.payload.len(),
            preview(&t.payload)
        ),
        Event::Lost { channel, range } => {
            format!("lost {channel} {}..={}", range.first, range.last)
        }
        Event::Connected { upstream } => format!("connected {upstream}"),
        Event::Disconnected { upstream, reason } => format!("disconnected {upstream} {reason}"),
    }
}

/// The payload's first characters (UTF-8, lossy), control characters shown as `.`.
fn preview(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload)
        .chars()
        .take(PREVIEW_CHARS)
        .map(|c| if c.is_control() { '.' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tickcast_proto::{SeqRange, Tick};

    #[test]
    fn event_lines() {
        let t = Event::Tick(Tick {
            channel: 1,
            seq: 7,
            epoch: 1,
            origin_us: 42,
            payload: Bytes::from_static(b"px=1.5\nqty=3"),
        });
        assert_eq!(line(&t), "tick 1 7 42 12 px=1.5.qty=3");
        let l = Event::Lost {
            channel: 2,
            range: SeqRange::new(3, 5),
        };
        assert_eq!(line(&l), "lost 2 3..=5");
        assert_eq!(preview(&[b'a'; 100]).len(), PREVIEW_CHARS);
    }
}
