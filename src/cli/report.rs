//! What a [`Harness`] saw, as numbers (snapshots, JSON-ready structs) and as text (the
//! live table, the end-of-run summary).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::{IsTerminal, Write as _};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context, Result};
use serde::Serialize;
use tickcast::net::relay_counters;
use tickcast::tally::Latency;
use tickcast_relay::RelayStats;

use super::harness::Harness;

/// One consumer's result.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerReport {
    /// Consumer name.
    pub name: String,
    /// Its region.
    pub region: String,
    /// Ticks delivered (each seq once).
    pub delivered: u64,
    /// Seqs reported lost.
    pub lost: u64,
    /// Ticks delivered again.
    pub duplicates: u64,
    /// Ticks or losses out of sequence.
    pub out_of_order: u64,
    /// Ticks that arrived by repair (or replay) rather than live.
    pub repaired: u64,
    /// Latency against the scheduled send time.
    pub latency_us: Latency,
}

impl ConsumerReport {
    /// Whether this consumer got exactly the `sent` ticks, once each and in order.
    pub fn ok(&self, sent: u64) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0 && self.delivered >= sent
    }

    /// How far from perfect: problems first, then tail latency (for "worst consumer").
    fn badness(&self, sent: u64) -> (u64, u64, u64) {
        let problems =
            self.lost + self.duplicates + self.out_of_order + sent.saturating_sub(self.delivered);
        (problems, self.latency_us.p99, self.latency_us.max)
    }
}

/// A relay's (or the origin's) counters.
#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    /// Node name.
    pub name: String,
    /// Every counter of [`relay_counters`].
    #[serde(flatten)]
    pub counters: BTreeMap<&'static str, u64>,
}

impl RelayReport {
    fn of(name: &str, s: &RelayStats) -> RelayReport {
        RelayReport {
            name: name.to_string(),
            counters: relay_counters(s),
        }
    }

    fn get(&self, k: &str) -> u64 {
        self.counters.get(k).copied().unwrap_or(0)
    }
}

/// Per-consumer results, in topology order.
pub fn consumers(h: &Harness) -> Vec<ConsumerReport> {
    h.probes
        .iter()
        .map(|p| {
            let t = p.tally();
            ConsumerReport {
                name: p.spec.name.clone(),
                region: p.spec.region.clone(),
                delivered: t.delivered,
                lost: t.lost,
                duplicates: t.duplicates,
                out_of_order: t.out_of_order,
                repaired: p.stats.repaired.load(Relaxed),
                latency_us: Latency::of(&t.latency),
            }
        })
        .collect()
}

/// The origin's counters followed by every relay's.
pub fn relays(h: &Harness) -> (RelayReport, Vec<RelayReport>) {
    let (name, stats) = &h.origin_stats;
    (
        RelayReport::of(name, stats),
        h.relays
            .iter()
            .map(|(n, s)| RelayReport::of(n, s))
            .collect(),
    )
}

/// Totals over every consumer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Sum of delivered.
    pub delivered: u64,
    /// Sum of lost.
    pub lost: u64,
    /// Sum of duplicates.
    pub duplicates: u64,
    /// Sum of out-of-order.
    pub out_of_order: u64,
    /// Sum of repaired.
    pub repaired: u64,
}

impl Totals {
    /// Adds up the consumer results.
    pub fn of(cs: &[ConsumerReport]) -> Totals {
        cs.iter().fold(Totals::default(), |mut t, c| {
            t.delivered += c.delivered;
            t.lost += c.lost;
            t.duplicates += c.duplicates;
            t.out_of_order += c.out_of_order;
            t.repaired += c.repaired;
            t
        })
    }
}

/// Latency percentiles per region (and `all` last) from the merged histograms.
pub fn region_latency(h: &Harness) -> Vec<(String, usize, Latency)> {
    let mut regions: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &h.probes {
        *regions.entry(p.spec.region.as_str()).or_default() += 1;
    }
    let mut out: Vec<(String, usize, Latency)> = regions
        .into_iter()
        .map(|(r, n)| {
            let merged = h.merged_latency(|p| p.spec.region == r);
            (r.to_string(), n, Latency::of(&merged))
        })
        .collect();
    out.push((
        "all".into(),
        h.probes.len(),
        Latency::of(&h.merged_latency(|_| true)),
    ));
    out
}

/// Writes `text` to stdout in one go (clearing the screen first when `clear`).
pub fn print_screen(text: &str, clear: bool) {
    let mut out = std::io::stdout().lock();
    let _ = if clear {
        write!(out, "\x1b[2J\x1b[H{text}")
    } else {
        write!(out, "{text}")
    };
    let _ = out.flush();
}

/// Whether the live table should redraw in place.
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// The live table: consumers two to a line, then the origin and relays one per line.
pub fn live_table(h: &Harness, title: &str) -> String {
    let cs = consumers(h);
    let (origin, rs) = relays(h);
    let w = cs.iter().map(|c| c.name.len()).max().unwrap_or(4).max(8);
    let mut s = String::new();
    let _ = writeln!(s, "{title}");
    let head = format!(
        "{:<w$} {:>9} {:>6} {:>5} {:>4} {:>4} {:>7} {:>7}",
        "consumer", "delivered", "repair", "lost", "dup", "ooo", "p50µs", "p99µs"
    );
    let _ = writeln!(s, "{head}   {head}");
    for pair in cs.chunks(2) {
        let cells: Vec<String> = pair
            .iter()
            .map(|c| {
                format!(
                    "{:<w$} {:>9} {:>6} {:>5} {:>4} {:>4} {:>7} {:>7}",
                    c.name,
                    c.delivered,
                    c.repaired,
                    c.lost,
                    c.duplicates,
                    c.out_of_order,
                    c.latency_us.p50,
                    c.latency_us.p99
                )
            })
            .collect();
        let _ = writeln!(s, "{}", cells.join("   "));
    }
    let rw = rs
        .iter()
        .map(|r| r.name.len())
        .chain([origin.name.len(), 5])
        .max()
        .unwrap_or(5);
    let _ = writeln!(
        s,
        "\n{:<rw$} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "relay", "received", "dgrams_out", "fwd_raw", "repaired", "nacks_in", "drops", "children"
    );
    for r in std::iter::once(&origin).chain(rs.iter()) {
        let _ = writeln!(
            s,
            "{:<rw$} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}",
            r.name,
            r.get("received"),
            r.get("datagrams_out"),
            r.get("forwarded_raw"),
            r.get("repaired_out"),
            r.get("nacks_in"),
            r.get("child_drops"),
            r.get("children"),
        );
    }
    s
}

/// The end-of-run summary: totals, latency per region, the worst consumer and the verdict.
/// Returns the text and whether every consumer got every tick once and in order.
pub fn summary(h: &Harness, sent: u64) -> (String, bool) {
    let cs = consumers(h);
    let t = Totals::of(&cs);
    let expected = sent * cs.len() as u64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "delivered {} of {} ({:.3}%), lost {}, duplicates {}, out of order {}, repaired {}",
        t.delivered,
        expected,
        percent(t.delivered, expected),
        t.lost,
        t.duplicates,
        t.out_of_order,
        t.repaired
    );
    let _ = writeln!(s, "\nlatency from scheduled send time (µs):");
    let _ = writeln!(
        s,
        "{:<12} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "region", "consumers", "p50", "p99", "p99.9", "max"
    );
    for (region, n, l) in region_latency(h) {
        let _ = writeln!(
            s,
            "{:<12} {:>9} {:>8} {:>8} {:>8} {:>8}",
            region, n, l.p50, l.p99, l.p999, l.max
        );
    }
    if let Some(w) = cs.iter().max_by_key(|c| c.badness(sent)) {
        let _ = writeln!(
            s,
            "\nworst consumer: {} ({}): delivered {}/{sent}, lost {}, dup {}, ooo {}, \
             p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            w.name,
            w.region,
            w.delivered,
            w.lost,
            w.duplicates,
            w.out_of_order,
            w.latency_us.p50,
            w.latency_us.p99,
            w.latency_us.p999,
            w.latency_us.max
        );
    }
    let bad: Vec<&ConsumerReport> = cs.iter().filter(|c| !c.ok(sent)).collect();
    if bad.is_empty() {
        let _ = writeln!(
            s,
            "OK: all {} consumers got all {sent} ticks, once each, in order",
            cs.len()
        );
    } else {
        let _ = writeln!(
            s,
            "FAILED: {} of {} consumers did not get all {sent} ticks once each in order:",
            bad.len(),
            cs.len()
        );
        for c in bad {
            let _ = writeln!(
                s,
                "  {}: delivered {}, lost {}, dup {}, ooo {}",
                c.name, c.delivered, c.lost, c.duplicates, c.out_of_order
            );
        }
    }
    let ok = cs.iter().all(|c| c.ok(sent));
    (s, ok)
}

/// `part` as a percentage of `whole` (100 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
