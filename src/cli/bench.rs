//! `tickcast bench`: the topology at several feed rates, one fresh network per rate;
//! delivery, end-to-end latency and CPU cost per delivered tick.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;
use tickcast::net::Certs;
use tickcast::tally::Latency;
use tickcast_proto::Clock;
use tickcast_transport::TokioClock;

use super::TopologyArg;
use super::harness::{DRAIN_TIMEOUT, Harness, READY_TIMEOUT, STOP_TIMEOUT};
use super::report::{self, Totals};
use super::signal::interrupt_token;
use super::up::{feed_config, seconds};

/// Flags of `tickcast bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    topology: TopologyArg,
    /// Feed rates to measure, ticks per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,50000,100000",
        value_name = "N,N,.."
    )]
    rates: Vec<f64>,
    /// Seconds of feed per rate.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Payload bytes per tick (at least 16: the synthetic header).
    #[arg(long, value_name = "B", default_value_t = 100)]
    size: usize,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// The result at one rate.
#[derive(Debug, Clone, Serialize)]
struct BenchRow {
    /// Requested rate, ticks per second.
    rate: f64,
    /// Ticks the origin sent.
    sent: u64,
    /// Seconds the feed ran.
    feed_s: f64,
    /// Consumers in the network.
    consumers: usize,
    /// Ticks delivered, summed over consumers.
    delivered: u64,
    /// `delivered / (sent × consumers)` in percent.
    delivered_pct: f64,
    /// Latency over all consumers against the scheduled send time.
    latency_us: Latency,
    /// Process CPU (user + system, every node and consumer) per delivered tick, µs.
    cpu_us_per_tick: f64,
    /// Process CPU over the feed and drain, seconds.
    cpu_s: f64,
    /// Seqs reported lost, summed over consumers.
    lost: u64,
    /// Duplicate deliveries, summed.
    duplicates: u64,
    /// Out-of-order deliveries, summed.
    out_of_order: u64,
    /// Whether every consumer got every tick once and in order.
    ok: bool,
}

/// The JSON file `bench --json` writes.
#[derive(Serialize)]
struct BenchJson<'a> {
    seconds: f64,
    size: usize,
    rows: &'a [BenchRow],
}

/// Runs `tickcast bench`.
pub async fn run(a: BenchArgs) -> Result<ExitCode> {
    let topo = a.topology.load()?;
    if a.rates.is_empty() {
        bail!("--rates needs at least one rate");
    }
    let secs = seconds("--seconds", a.seconds)?;
    // Check every rate before starting anything.
    let cfgs = a
        .rates
        .iter()
        .map(|&r| feed_config(&topo, r, a.size, None, Some(secs)))
        .collect::<Result<Vec<_>>>()?;
    let interrupt = interrupt_token();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let certs = Certs::ephemeral()?;
    let mut rows = Vec::new();
    for cfg in cfgs {
        let rate = cfg.rate;
        eprintln!("bench: {rate} ticks/s for {secs:?}: starting the network");
        let h = Harness::start(&topo, &certs, clock.clone(), &Default::default()).await?;
        if let Err(e) = h.wait_ready(READY_TIMEOUT, &interrupt).await {
            h.stop(STOP_TIMEOUT).await;
            return Err(e);
        }
        let cpu0 = process_cpu()?;
        let (sent, ran) = h.feed(cfg, &interrupt, secs, |_| {}).await?;
        let caught_up = h.drain(sent, DRAIN_TIMEOUT, DRAIN_TIMEOUT, |_| {}).await;
        let cpu = process_cpu()?.saturating_sub(cpu0);
        h.stop(STOP_TIMEOUT).await;
        let row = measure(&h, rate, sent, ran, cpu);
        eprintln!(
            "bench: {rate} ticks/s: sent {sent}, delivered {:.3}%, p99 {} µs{}",
            row.delivered_pct,
            row.latency_us.p99,
            if caught_up { "" } else { " (drain incomplete)" }
        );
        rows.push(row);
        if interrupt.is_cancelled() {
            eprintln!("bench: interrupted; reporting the rates measured so far");
            break;
        }
    }
    print!("{}", markdown(&rows, &topo.origin.name, a.size, secs));
    if let Some(path) = &a.json {
        report::write_json(
            path,
            &BenchJson {
                seconds: a.seconds,
                size: a.size,
                rows: &rows,
            },
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(if rows.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The row of one run, from the stopped harness.
fn measure(h: &Harness, rate: f64, sent: u64, ran: Duration, cpu: Duration) -> BenchRow {
    let cs = report::consumers(h);
    let t = Totals::of(&cs);
    let consumers = cs.len();
    BenchRow {
        rate,
        sent,
        feed_s: ran.as_secs_f64(),
        consumers,
        delivered: t.delivered,
        delivered_pct: report::percent(t.delivered, sent * consumers as u64),
        latency_us: Latency::of(&h.merged_latency(|_| true)),
        cpu_us_per_tick: if t.delivered == 0 {
            0.0
        } else {
            cpu.as_secs_f64() * 1e6 / t.delivered as f64
        },
        cpu_s: cpu.as_secs_f64(),
        lost: t.lost,
        duplicates: t.duplicates,
        out_of_order: t.out_of_order,
        ok: cs.iter().all(|c| c.ok(sent)),
    }
}

/// The results as a Markdown table.
fn markdown(rows: &[BenchRow], origin: &str, size: usize, secs: Duration) -> String {
    let mut s = String::new();
    let consumers = rows.first().map_or(0, |r| r.consumers);
    let _ = writeln!(
        s,
        "\n{consumers} consumers fed by {origin:?}, {size} B ticks, {secs:?} per rate; \
         latency in µs from scheduled send time; CPU is the whole process (all nodes and \
         consumers)\n"
    );
    let _ = writeln!(
        s,
        "| rate | delivered % | p50 | p99 | p99.9 | max | CPU µs/tick | lost | dup |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {} | {} | {} | {} | {:.2} | {} | {} |",
            r.rate,
            r.delivered_pct,
            r.latency_us.p50,
            r.latency_us.p99,
            r.latency_us.p999,
            r.latency_us.max,
            r.cpu_us_per_tick,
            r.lost,
            r.duplicates
        );
    }
    s
}

/// CPU time (user + system) this process has used so far.
#[allow(unsafe_code)] // getrusage is the one way to read it; the call is self-contained.
fn process_cpu() -> Result<Duration> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` points to writable memory the size of `rusage`, which getrusage fills
    // on success; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        bail!("getrusage: {}", std::io::Error::last_os_error());
    }
    // SAFETY: getrusage succeeded, so it initialised the struct (it was zeroed anyway).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}
