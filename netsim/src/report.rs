//! The report of a run: figures per consumer, per region and overall, as `report.json`.
//!
//! Owns [`Report`] and its parts (all `Serialize`, all ordered: `Vec`s in topology order
//! and `BTreeMap`s, so the same run serializes to the same bytes), and how they are
//! computed from what a run collected (`build`): latency (receive time minus the tick's
//! scheduled send time), latency above the floor (minus the one-way delays along the
//! consumer's path), the simultaneity spread of each tick (last consumer's arrival minus
//! the first's, over ticks every consumer received), delivery stalls around faults,
//! NACK/repair counters, network counters, and a tree-versus-star comparison. Rendering is
//! [`crate::html`]'s; running is [`crate::runner`]'s.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::link::LinkStats;
use crate::net::HostStats;
use crate::plan::{ORIGIN, ORIGIN_STANDBY, Plan, Shape};
use crate::runner::RunData;
use crate::scenario::{FaultKind, Scenario};

/// Percentiles in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pcts {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

impl Pcts {
    /// Percentiles of a histogram (zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Pcts {
        if h.is_empty() {
            return Pcts::default();
        }
        Pcts {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn record(h: &mut Histogram<u64>, v: u64) {
    let _ = h.record(v.clamp(1, 120_000_000));
}

/// Points of a CDF: `[value µs, fraction ≤ value]`, at fixed quantiles.
pub type Cdf = Vec<[f64; 2]>;

fn cdf(h: &Histogram<u64>) -> Cdf {
    if h.is_empty() {
        return Vec::new();
    }
    let mut qs: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
    qs.extend([0.995, 0.999, 0.9995, 0.9999, 1.0]);
    qs.into_iter()
        .map(|q| [h.value_at_quantile(q) as f64, q])
        .collect()
}

/// One consumer.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerReport {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Path from where the feed enters (the publisher, if any, then the origin) through
    /// the primary upstreams to this consumer.
    pub path: Vec<String>,
    /// Sum of one-way delays along the path, µs.
    pub floor_us: u64,
    /// Ticks delivered (in order, once).
    pub delivered: u64,
    /// Seqs reported lost (`Event::Lost`).
    pub lost: u64,
    /// Seqs the feed sent that were neither delivered nor reported lost by the end.
    pub missing: u64,
    /// Ticks delivered twice.
    pub duplicates: u64,
    /// Ticks (or losses) out of order.
    pub out_of_order: u64,
    /// Latency, µs.
    pub latency_us: Pcts,
    /// Latency minus the floor, µs.
    pub above_floor_us: Pcts,
    /// Longest time between two deliveries while the feed ran, µs.
    pub max_gap_us: u64,
    /// NACK ranges the client sent.
    pub nack_ranges: u64,
    /// Ticks that arrived as repairs (on a stream) and were new.
    pub repaired: u64,
    /// Copies the client dropped as duplicates (not delivered).
    pub dup_copies: u64,
    /// Sessions started (1 + failovers).
    pub connects: u64,
    /// Connection events, `[µs since feed start, what]` (negative: before the feed).
    pub events: Vec<(i64, String)>,
}

/// One region's consumers together.
#[derive(Clone, Debug, Serialize)]
pub struct RegionReport {
    /// Region name.
    pub region: String,
    /// Consumers in it.
    pub consumers: usize,
    /// Smallest and largest floor of its consumers, µs.
    pub floor_us: [u64; 2],
    /// Latency over all its consumers' ticks, µs.
    pub latency_us: Pcts,
    /// Latency above floor over all its consumers' ticks, µs.
    pub above_floor_us: Pcts,
    /// Delivered, lost, missing, duplicates, summed.
    pub delivered: u64,
    /// Seqs reported lost, summed.
    pub lost: u64,
    /// Seqs missing, summed.
    pub missing: u64,
    /// Duplicates, summed.
    pub duplicates: u64,
    /// Latency CDF.
    pub cdf: Cdf,
}

/// The simultaneity spread: per tick, last consumer's arrival minus the first's.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpreadReport {
    /// Median, µs.
    pub p50: u64,
    /// 90th percentile, µs.
    pub p90: u64,
    /// 99th percentile, µs.
    pub p99: u64,
    /// 99.9th percentile, µs.
    pub p999: u64,
    /// Maximum, µs.
    pub max: u64,
    /// Ticks measured (received by every consumer).
    pub ticks: u64,
    /// Ticks (after the warm-up) that some but not all consumers received (not measured;
    /// ticks nobody received count as missing).
    pub incomplete: u64,
    /// Spread of the floors (largest floor minus smallest), µs: what physics imposes.
    pub floor_spread_us: u64,
    /// CDF of the spread.
    pub cdf: Cdf,
}

/// A relay (or the origin), counters summed over its incarnations.
#[derive(Clone, Debug, Serialize)]
pub struct RelayReport {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Times it was started (1 + restarts).
    pub incarnations: u32,
    /// Its counters (`tickcast_node::net::relay_counters`), summed.
    pub counters: BTreeMap<String, u64>,
    /// Its traffic.
    pub traffic: HostStats,
}

/// A fault and what it did to deliveries.
#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    /// When, ms after the feed started.
    pub at_ms: u64,
    /// What.
    pub what: String,
    /// Why it was not applied as written, if so.
    pub note: Option<String>,
    /// Consumers whose deliveries stalled because of this fault, with the stall in µs,
    /// longest first. A stall is a gap between deliveries of at least 5 tick periods and
    /// 20 ms; it is put on the latest crash or partition before the gap ends that the gap
    /// started no more than 1 s after.
    pub stalls: Vec<(String, u64)>,
    /// Longest stall, µs.
    pub max_stall_us: u64,
}

/// Totals over the whole network.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkReport {
    /// Link counters by class (`inter`, `intra`, `consumer`).
    pub links: BTreeMap<String, LinkStats>,
    /// All links together.
    pub total: LinkStats,
}

/// The origin's load (with a standby: both origins together).
#[derive(Clone, Debug, Serialize)]
pub struct OriginReport {
    /// Bytes it sent (UDP payload).
    pub egress_bytes: u64,
    /// Packets it sent.
    pub egress_packets: u64,
    /// Connections (children) the serving origin had at the end of the feed.
    pub connections: u64,
}

/// How the feed entered the network.
#[derive(Clone, Debug, Serialize)]
pub struct FeedReport {
    /// The publisher host it went through (QUIC, failing over between the origins), or
    /// `None`: the origin's embedded handle.
    pub publisher: Option<String>,
    /// Ticks the generator produced.
    pub sent: u64,
    /// Ticks no origin had acknowledged to the publisher by the end of the drain.
    pub unacked: u64,
    /// Why the feed stopped early, if it did (the ticks not produced are not counted).
    pub error: Option<String>,
}

/// Headline figures of one shape, for the tree/star comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ShapeSummary {
    /// Latency over all consumers, µs.
    pub latency_us: Pcts,
    /// Latency above floor over all consumers, µs.
    pub above_floor_us: Pcts,
    /// Spread, µs.
    pub spread_us: SpreadReport,
    /// Origin load.
    pub origin: OriginReport,
    /// Per-region latency, µs.
    pub regions: BTreeMap<String, Pcts>,
    /// Seqs lost + missing over all consumers.
    pub lost: u64,
    /// Duplicates over all consumers.
    pub duplicates: u64,
}

/// The relay tree next to a star (every consumer straight on the origin).
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The scenario's tree.
    pub tree: ShapeSummary,
    /// The star.
    pub star: ShapeSummary,
    /// Faults of the scenario that the star has no node for (not applied there).
    pub star_skipped_faults: Vec<String>,
}

/// Totals over all consumers.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    /// Consumers.
    pub consumers: usize,
    /// Ticks the feed sent (see [`Report::feed`]).
    pub ticks_sent: u64,
    /// Delivered, summed.
    pub delivered: u64,
    /// Reported lost, summed.
    pub lost: u64,
    /// Missing, summed.
    pub missing: u64,
    /// Duplicates, summed.
    pub duplicates: u64,
    /// Out of order, summed.
    pub out_of_order: u64,
    /// NACK ranges sent by consumers, summed.
    pub nack_ranges: u64,
    /// Repaired ticks at consumers, summed.
    pub repaired: u64,
    /// Failovers (sessions after the first), summed.
    pub failovers: u64,
    /// Every consumer got every tick once, in order, and the feed ran to its end with
    /// every tick acknowledged by an origin.
    pub clean: bool,
}

/// Latency over time: per region, `[bucket start ms since feed start, p50, p99, max]` µs.
#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    /// Bucket width, ms.
    pub bucket_ms: u64,
    /// Points per region (buckets without deliveries are left out).
    pub regions: BTreeMap<String, Vec<[u64; 4]>>,
}

/// The report of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Scenario description.
    pub description: String,
    /// Seed.
    pub seed: u64,
    /// `virtual` or `realtime`.
    pub mode: String,
    /// Tree or star.
    pub shape: Shape,
    /// Feed duration, ms.
    pub duration_ms: u64,
    /// Warm-up left out of latency and spread figures, ms.
    pub warmup_ms: u64,
    /// Drain time after the feed, ms.
    pub drain_ms: u64,
    /// Feed rate, ticks/s.
    pub rate: f64,
    /// Payload bytes per tick.
    pub payload_bytes: usize,
    /// Totals over all consumers.
    pub totals: Totals,
    /// How the feed entered.
    pub feed: FeedReport,
    /// Latency over all consumers' ticks, µs.
    pub latency_us: Pcts,
    /// Latency above floor over all consumers' ticks, µs.
    pub above_floor_us: Pcts,
    /// Simultaneity spread.
    pub spread_us: SpreadReport,
    /// Per region, in scenario order.
    pub regions: Vec<RegionReport>,
    /// Per consumer, in topology order.
    pub consumers: Vec<ConsumerReport>,
    /// Origin and relays, by name.
    pub relays: Vec<RelayReport>,
    /// Faults, in time order.
    pub faults: Vec<FaultReport>,
    /// The origin's load.
    pub origin: OriginReport,
    /// Network counters.
    pub network: NetworkReport,
    /// Latency over time.
    pub timeline: Timeline,
    /// Tree versus star, when asked for.
    pub comparison: Option<Comparison>,
}

impl Report {
    /// The headline figures, for a comparison.
    pub fn summary(&self) -> ShapeSummary {
        ShapeSummary {
            latency_us: self.latency_us,
            above_floor_us: self.above_floor_us,
            spread_us: SpreadReport {
                cdf: Vec::new(),
                ..self.spread_us.clone()
            },
            origin: self.origin.clone(),
            regions: self
                .regions
                .iter()
                .map(|r| (r.region.clone(), r.latency_us))
                .collect(),
            lost: self.totals.lost + self.totals.missing,
            duplicates: self.totals.duplicates,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }
}

/// Computes the report of a run.
pub(crate) fn build(scenario: &Scenario, plan: &Plan, data: RunData) -> Report {
    let n = plan.topology.consumers.len();
    let period_us = (1e6 / scenario.feed.rate) as u64;
    // A stall is a gap of at least 5 tick periods and 20 ms.
    let stall_threshold = (5 * period_us).max(20_000);
    let feed_end_us = (scenario.duration_s * 1e6) as u64;
    let warmup_us = (scenario.warmup_s * 1e6) as u64;
    let start = data.feed_start_us;
    let total_ms = ((scenario.duration_s + scenario.drain_s) * 1000.0) as u64;
    let bucket_ms = (total_ms / 240).max(10);

    let mut all = histogram();
    let mut all_above = histogram();
    let mut by_region: BTreeMap<&str, (Histogram<u64>, Histogram<u64>)> = BTreeMap::new();
    let mut region_buckets: BTreeMap<&str, BTreeMap<u64, Vec<u64>>> = BTreeMap::new();
    let mut arrivals: BTreeMap<u64, (u64, u64, usize)> = BTreeMap::new();
    let mut consumers = Vec::new();
    let mut gaps: Vec<Vec<(u64, u64)>> = Vec::new();
    let mut totals = Totals {
        consumers: n,
        ticks_sent: data.feed.sent,
        delivered: 0,
        lost: 0,
        missing: 0,
        duplicates: 0,
        out_of_order: 0,
        nack_ranges: 0,
        repaired: 0,
        failovers: 0,
        clean: true,
    };
    for (spec, (c, counters)) in plan.topology.consumers.iter().zip(&data.consumers) {
        let region = plan.region_of[&spec.name].as_str();
        let floor_us = plan.floors[&spec.name].as_micros() as u64;
        let (rh, rah) = by_region
            .entry(region)
            .or_insert_with(|| (histogram(), histogram()));
        let buckets = region_buckets.entry(region).or_default();
        let mut lat = histogram();
        let mut above_floor = histogram();
        let mut my_gaps = Vec::new();
        let mut prev_rx: Option<u64> = None;
        let mut max_gap = 0;
        for s in &c.samples {
            let rx = s.rx_us.saturating_sub(start);
            buckets
                .entry(rx / 1000 / bucket_ms)
                .or_default()
                .push(s.lat_us);
            if let Some(p) = prev_rx {
                let gap = rx.saturating_sub(p);
                if p < feed_end_us {
                    max_gap = max_gap.max(gap);
                }
                if gap >= stall_threshold {
                    my_gaps.push((p, rx));
                }
            }
            prev_rx = Some(rx);
            if rx.saturating_sub(s.lat_us) < warmup_us {
                continue;
            }
            let above = s.lat_us.saturating_sub(floor_us);
            for (h, v) in [
                (&mut lat, s.lat_us),
                (&mut all, s.lat_us),
                (&mut *rh, s.lat_us),
                (&mut above_floor, above),
                (&mut all_above, above),
                (&mut *rah, above),
            ] {
                record(h, v);
            }
            let e = arrivals.entry(s.seq).or_insert((rx, rx, 0));
            e.0 = e.0.min(rx);
            e.1 = e.1.max(rx);
            e.2 += 1;
        }
        gaps.push(my_gaps);
        let t = &c.tally;
        let missing = data.feed.sent.saturating_sub(t.delivered + t.lost);
        totals.delivered += t.delivered;
        totals.lost += t.lost;
        totals.missing += missing;
        totals.duplicates += t.duplicates;
        totals.out_of_order += t.out_of_order;
        totals.nack_ranges += counters.nack_ranges;
        totals.repaired += counters.repaired;
        totals.failovers += counters.connects.saturating_sub(1);
        consumers.push(ConsumerReport {
            name: spec.name.clone(),
            region: region.to_owned(),
            path: plan.paths[&spec.name].clone(),
            floor_us,
            delivered: t.delivered,
            lost: t.lost,
            missing,
            duplicates: t.duplicates,
            out_of_order: t.out_of_order,
            latency_us: Pcts::of(&lat),
            above_floor_us: Pcts::of(&above_floor),
            max_gap_us: max_gap,
            nack_ranges: counters.nack_ranges,
            repaired: counters.repaired,
            dup_copies: counters.duplicates,
            connects: counters.connects,
            events: c
                .events
                .iter()
                .map(|(at, what)| (*at as i64 - start as i64, what.clone()))
                .collect(),
        });
    }
    totals.clean = totals.lost == 0
        && totals.missing == 0
        && totals.duplicates == 0
        && totals.out_of_order == 0
        && data.feed.unacked == 0
        && data.feed.error.is_none();

    let mut spread = histogram();
    let mut incomplete = 0;
    for (first, last, count) in arrivals.values() {
        if *count == n {
            record(&mut spread, last - first);
        } else {
            incomplete += 1;
        }
    }
    let sp = Pcts::of(&spread);
    let spread_us = SpreadReport {
        p50: sp.p50,
        p90: sp.p90,
        p99: sp.p99,
        p999: sp.p999,
        max: sp.max,
        ticks: spread.len(),
        incomplete,
        floor_spread_us: plan.floor_spread().as_micros() as u64,
        cdf: cdf(&spread),
    };

    let mut regions = Vec::new();
    for r in &scenario.regions.names {
        let Some((h, ah)) = by_region.get(r.as_str()) else {
            continue;
        };
        let mine: Vec<&ConsumerReport> = consumers.iter().filter(|c| &c.region == r).collect();
        regions.push(RegionReport {
            region: r.clone(),
            consumers: mine.len(),
            floor_us: [
                mine.iter().map(|c| c.floor_us).min().unwrap_or(0),
                mine.iter().map(|c| c.floor_us).max().unwrap_or(0),
            ],
            latency_us: Pcts::of(h),
            above_floor_us: Pcts::of(ah),
            delivered: mine.iter().map(|c| c.delivered).sum(),
            lost: mine.iter().map(|c| c.lost).sum(),
            missing: mine.iter().map(|c| c.missing).sum(),
            duplicates: mine.iter().map(|c| c.duplicates).sum(),
            cdf: cdf(h),
        });
    }

    let timeline = Timeline {
        bucket_ms,
        regions: region_buckets
            .into_iter()
            .map(|(r, buckets)| {
                let pts = buckets
                    .into_iter()
                    .map(|(b, mut v)| {
                        v.sort_unstable();
                        let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
                        [
                            b * bucket_ms,
                            q(0.5),
                            q(0.99),
                            *v.last().expect("non-empty"),
                        ]
                    })
                    .collect();
                (r.to_owned(), pts)
            })
            .collect(),
    };

    // Each stall goes to the latest crash or partition before its end that it started no
    // later than 1 s after.
    let causes: Vec<(usize, u64)> = data
        .faults
        .iter()
        .enumerate()
        .filter(|(_, f)| matches!(f.spec.kind, FaultKind::Crash | FaultKind::Partition))
        .map(|(i, f)| (i, f.spec.at_ms * 1000))
        .collect();
    let mut stalls: Vec<Vec<(String, u64)>> = vec![Vec::new(); data.faults.len()];
    for (c, g) in consumers.iter().zip(&gaps) {
        let mut worst: BTreeMap<usize, u64> = BTreeMap::new();
        for (from, to) in g {
            let cause = causes
                .iter()
                .filter(|(_, at)| at < to && *from <= at + 1_000_000)
                .map(|(i, _)| *i)
                .next_back();
            if let Some(i) = cause {
                let w = worst.entry(i).or_default();
                *w = (*w).max(to - from);
            }
        }
        for (i, w) in worst {
            stalls[i].push((c.name.clone(), w));
        }
    }
    let mut faults = Vec::new();
    for (f, mut stalls) in data.faults.iter().zip(stalls) {
        stalls.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        faults.push(FaultReport {
            at_ms: f.spec.at_ms,
            what: f.spec.describe(),
            note: f.note.clone(),
            max_stall_us: stalls.first().map_or(0, |s| s.1),
            stalls,
        });
    }

    let hosts = data.net.host_stats();
    let mut relays = Vec::new();
    for (name, incarnations) in &data.relays {
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        for inc in incarnations {
            for (k, v) in inc {
                // Gauges are taken from the last incarnation, counts are summed.
                if *k == "children" {
                    counters.insert((*k).to_owned(), *v);
                } else {
                    *counters.entry((*k).to_owned()).or_default() += v;
                }
            }
        }
        relays.push(RelayReport {
            name: name.clone(),
            region: plan.region_of.get(name).cloned().unwrap_or_default(),
            incarnations: incarnations.len() as u32,
            counters,
            traffic: hosts.get(name).cloned().unwrap_or_default(),
        });
    }
    let origins = [ORIGIN, ORIGIN_STANDBY].map(|n| hosts.get(n).cloned().unwrap_or_default());
    let origin = OriginReport {
        egress_bytes: origins.iter().map(|o| o.bytes_out).sum(),
        egress_packets: origins.iter().map(|o| o.packets_out).sum(),
        connections: data.origin_children,
    };

    let mut links: BTreeMap<String, LinkStats> = BTreeMap::new();
    let mut total = LinkStats::default();
    for ((from, to), s) in data.net.link_stats() {
        links
            .entry(plan.links.class(&from, &to).to_owned())
            .or_default()
            .add(&s);
        total.add(&s);
    }

    Report {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        seed: data.seed,
        mode: if data.realtime { "realtime" } else { "virtual" }.to_owned(),
        shape: plan.shape,
        duration_ms: (scenario.duration_s * 1000.0) as u64,
        warmup_ms: (scenario.warmup_s * 1000.0) as u64,
        drain_ms: (scenario.drain_s * 1000.0) as u64,
        rate: scenario.feed.rate,
        payload_bytes: scenario.feed.payload_bytes,
        totals,
        feed: data.feed,
        latency_us: Pcts::of(&all),
        above_floor_us: Pcts::of(&all_above),
        spread_us,
        regions,
        consumers,
        relays,
        faults,
        origin,
        network: NetworkReport { links, total },
        timeline,
        comparison: None,
    }
}

/// A short plain-text summary (what `tickcast sim` prints).
pub fn summary_text(r: &Report) -> String {
    use std::fmt::Write;
    let ms = |us: u64| us as f64 / 1000.0;
    let mut s = String::new();
    let t = &r.totals;
    let _ = writeln!(
        s,
        "scenario {} ({:?}, {}, seed {}): {} consumers, {} ticks sent over {} s",
        r.scenario,
        r.shape,
        r.mode,
        r.seed,
        t.consumers,
        t.ticks_sent,
        r.duration_ms as f64 / 1000.0
    );
    let _ = writeln!(
        s,
        "delivered {}  lost {}  missing {}  duplicates {}  out-of-order {}  nack ranges {}  repaired {}  failovers {}  => {}",
        t.delivered,
        t.lost,
        t.missing,
        t.duplicates,
        t.out_of_order,
        t.nack_ranges,
        t.repaired,
        t.failovers,
        if t.clean { "CLEAN" } else { "NOT CLEAN" }
    );
    if let Some(p) = &r.feed.publisher {
        let _ = writeln!(
            s,
            "feed via publisher {p}: {} ticks, {} never acknowledged by an origin{}",
            r.feed.sent,
            r.feed.unacked,
            r.feed
                .error
                .as_deref()
                .map(|e| format!("; stopped early: {e}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        s,
        "{:<16} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "region", "n", "floor ms", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "+floor p99.9"
    );
    for g in &r.regions {
        let _ = writeln!(
            s,
            "{:<16} {:>4} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>12.1}",
            g.region,
            g.consumers,
            ms(g.floor_us[1]),
            ms(g.latency_us.p50),
            ms(g.latency_us.p99),
            ms(g.latency_us.p999),
            ms(g.latency_us.max),
            ms(g.above_floor_us.p999)
        );
    }
    let _ = writeln!(
        s,
        "above floor (all): p50 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms",
        ms(r.above_floor_us.p50),
        ms(r.above_floor_us.p99),
        ms(r.above_floor_us.p999),
        ms(r.above_floor_us.max)
    );
    let _ = writeln!(
        s,
        "spread: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (floor spread {:.1} ms, {} ticks measured)",
        ms(r.spread_us.p50),
        ms(r.spread_us.p99),
        ms(r.spread_us.max),
        ms(r.spread_us.floor_spread_us),
        r.spread_us.ticks
    );
    let _ = writeln!(
        s,
        "origin: {} connections, {:.1} MB out; network: {} packets, {} dropped",
        r.origin.connections,
        r.origin.egress_bytes as f64 / 1e6,
        r.network.total.packets,
        r.network.total.dropped()
    );
    for f in &r.faults {
        let _ = writeln!(
            s,
            "fault @{} ms {}: {} consumers stalled, longest {:.1} ms{}",
            f.at_ms,
            f.what,
            f.stalls.len(),
            ms(f.max_stall_us),
            f.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    if let Some(c) = &r.comparison {
        let _ = writeln!(s, "tree vs star:");
        for (name, x) in [("tree", &c.tree), ("star", &c.star)] {
            let _ = writeln!(
                s,
                "  {name}: latency p50 {:.1} p99 {:.1} p99.9 {:.1} ms, above floor p99.9 {:.1} ms, spread p99 {:.1} ms, origin {} conns {:.1} MB out, lost {}",
                ms(x.latency_us.p50),
                ms(x.latency_us.p99),
                ms(x.latency_us.p999),
                ms(x.above_floor_us.p999),
                ms(x.spread_us.p99),
                x.origin.connections,
                x.origin.egress_bytes as f64 / 1e6,
                x.lost
            );
        }
    }
    s
}
