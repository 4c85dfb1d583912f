//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing fetched)
//! that opens from disk in any browser.
//!
//! Owns the rendering of a [`Report`]: headline figures, per-region table, a latency CDF
//! per region, latency over time with the faults marked, the spread distribution, faults,
//! the tree/star comparison, per-consumer and per-relay tables, network counters. The SVG
//! charts are drawn here from the report's own numbers; nothing else is read.

use std::fmt::Write;

use crate::report::{Pcts, Report};

const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// A "nice" tick step for a range of `span` with about `n` ticks.
fn nice_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
    /// Draw as a step function (CDFs).
    step: bool,
}

/// A line chart as inline SVG.
struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    x_max: f64,
    y_max: f64,
    series: Vec<Series<'a>>,
    /// Vertical markers: (x, label, color).
    marks: Vec<(f64, String, &'a str)>,
    /// A shaded x range with a label.
    shade: Option<(f64, f64, &'a str)>,
}

impl Chart<'_> {
    fn svg(&self) -> String {
        let (w, h) = (1060.0, 380.0);
        let (l, r, t, b) = (70.0, 190.0, 34.0, 48.0);
        let (pw, ph) = (w - l - r, h - t - b);
        let x_max = if self.x_max > 0.0 { self.x_max } else { 1.0 };
        let y_max = if self.y_max > 0.0 { self.y_max } else { 1.0 };
        let sx = |x: f64| l + (x.clamp(0.0, x_max) / x_max) * pw;
        let sy = |y: f64| t + ph - (y.clamp(0.0, y_max) / y_max) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(
            s,
            r##"<text x="{l}" y="20" font-size="15" font-weight="bold">{}</text>"##,
            esc(self.title)
        );
        if let Some((x0, x1, label)) = self.shade {
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{t}" width="{:.1}" height="{ph}" fill="#eee"/><text x="{:.1}" y="{:.1}" fill="#888">{}</text>"##,
                sx(x0),
                (sx(x1) - sx(x0)).max(0.0),
                sx(x0) + 4.0,
                t + 14.0,
                esc(label)
            );
        }
        // Grid and ticks.
        let xs = nice_step(x_max, 10.0);
        let mut x = 0.0;
        while x <= x_max * 1.0001 {
            let px = sx(x);
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{t}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                t + ph,
                t + ph + 16.0,
                fmt_num(x, xs)
            );
            x += xs;
        }
        let ys = nice_step(y_max, 6.0);
        let mut y = 0.0;
        while y <= y_max * 1.0001 {
            let py = sy(y);
            let _ = write!(
                s,
                r##"<line x1="{l}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                l + pw,
                l - 6.0,
                py + 4.0,
                fmt_num(y, ys)
            );
            y += ys;
        }
        let _ = write!(
            s,
            r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            l + pw / 2.0,
            h - 8.0,
            esc(self.x_label)
        );
        let _ = write!(
            s,
            r##"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"##,
            t + ph / 2.0,
            t + ph / 2.0,
            esc(self.y_label)
        );
        // Series.
        for (i, se) in self.series.iter().enumerate() {
            if se.points.is_empty() {
                continue;
            }
            let mut d = String::new();
            let mut prev: Option<(f64, f64)> = None;
            for &(x, y) in &se.points {
                let (px, py) = (sx(x), sy(y));
                match prev {
                    None => {
                        let _ = write!(d, "M{px:.1},{py:.1}");
                    }
                    Some((_, ppy)) if se.step => {
                        let _ = write!(d, " L{px:.1},{ppy:.1} L{px:.1},{py:.1}");
                    }
                    Some(_) => {
                        let _ = write!(d, " L{px:.1},{py:.1}");
                    }
                }
                prev = Some((px, py));
            }
            let _ = write!(
                s,
                r##"<path d="{d}" fill="none" stroke="{}" stroke-width="1.6"/>"##,
                se.color
            );
            let ly = t + 10.0 + i as f64 * 18.0;
            let _ = write!(
                s,
                r##"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"##,
                l + pw + 12.0,
                l + pw + 32.0,
                se.color,
                l + pw + 38.0,
                ly + 4.0,
                esc(se.name)
            );
        }
        for (i, (x, label, color)) in self.marks.iter().enumerate() {
            let px = sx(*x);
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{t}" x2="{px:.1}" y2="{:.1}" stroke="{color}" stroke-dasharray="5,3" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" fill="{color}" font-size="11">{}</text>"##,
                t + ph,
                px + 3.0,
                t + 28.0 + (i % 4) as f64 * 13.0,
                esc(label)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// A tick label: as many decimals as the tick step needs.
fn fmt_num(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

fn pcts_cells(p: &Pcts) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p999),
        ms(p.max)
    )
}

/// Renders the report as a self-contained HTML page.
pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let t = &r.totals;
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tickcast netsim: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: 1300px; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }}
td:first-child, th:first-child {{ text-align: left; }}
td.path {{ text-align: left; white-space: nowrap; font-size: 12px; }}
.ok {{ color: #fff; background: #2a7; padding: 2px 8px; border-radius: 4px; }}
.bad {{ color: #fff; background: #c33; padding: 2px 8px; border-radius: 4px; }}
.note {{ color: #555; font-size: 13px; }}
details {{ margin-bottom: 16px; }}
</style></head><body>
<h1>tickcast netsim: {name}</h1>
<p>{desc}</p>
<p class="note">seed {seed} · {mode} time · {shape:?} · feed {rate} ticks/s of {payload} B for {dur} s (first {warm} s are warm-up, left out of latency and spread figures) · {drain} s drain{via}</p>
<p><span class="{cls}">{verdict}</span> &nbsp; {consumers} consumers · {sent} ticks sent · delivered {delivered} · lost {lost} · missing {missing} · duplicates {dups} · out of order {ooo} · NACK ranges {nacks} · repaired {rep} · failovers {fo}</p>
"#,
        name = esc(&r.scenario),
        desc = esc(&r.description),
        seed = r.seed,
        mode = r.mode,
        shape = r.shape,
        rate = r.rate,
        payload = r.payload_bytes,
        dur = r.duration_ms as f64 / 1000.0,
        warm = r.warmup_ms as f64 / 1000.0,
        drain = r.drain_ms as f64 / 1000.0,
        via = match &r.feed.publisher {
            Some(p) => format!(
                " · fed through publisher {} ({} ticks never acknowledged by an origin{})",
                esc(p),
                r.feed.unacked,
                r.feed
                    .error
                    .as_deref()
                    .map(|e| format!("; stopped early: {}", esc(e)))
                    .unwrap_or_default()
            ),
            None => String::new(),
        },
        cls = if t.clean { "ok" } else { "bad" },
        verdict = if t.clean {
            "every tick delivered once, in order"
        } else {
            "NOT CLEAN"
        },
        consumers = t.consumers,
        sent = t.ticks_sent,
        delivered = t.delivered,
        lost = t.lost,
        missing = t.missing,
        dups = t.duplicates,
        ooo = t.out_of_order,
        nacks = t.nack_ranges,
        rep = t.repaired,
        fo = t.failovers,
    );

    // Headline figures.
    let _ = write!(
        h,
        "<h2>Latency by region (ms)</h2><p class=\"note\">Latency: receive time minus the tick's scheduled send time. Floor: the one-way link delays along the consumer's path (what physics allows). Above floor: latency minus the floor.</p>\
<table><tr><th>region</th><th>consumers</th><th>floor</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>above floor p50</th><th>p99</th><th>p99.9</th><th>lost+missing</th><th>dups</th></tr>"
    );
    for g in &r.regions {
        let floor = if g.floor_us[0] == g.floor_us[1] {
            ms(g.floor_us[0])
        } else {
            format!("{}–{}", ms(g.floor_us[0]), ms(g.floor_us[1]))
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.region),
            g.consumers,
            floor,
            pcts_cells(&g.latency_us),
            ms(g.above_floor_us.p50),
            ms(g.above_floor_us.p99),
            ms(g.above_floor_us.p999),
            g.lost + g.missing,
            g.duplicates
        );
    }
    let _ = write!(
        h,
        "<tr><th>all</th><th>{}</th><th></th>{}<th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></table>",
        t.consumers,
        pcts_cells(&r.latency_us).replace("td>", "th>"),
        ms(r.above_floor_us.p50),
        ms(r.above_floor_us.p99),
        ms(r.above_floor_us.p999),
        t.lost + t.missing,
        t.duplicates
    );
    let sp = &r.spread_us;
    let _ = write!(
        h,
        "<p><b>Simultaneity spread</b> (per tick, last consumer's arrival minus the first's, over {} ticks every consumer received{}): p50 {} ms · p90 {} ms · p99 {} ms · p99.9 {} ms · max {} ms. The floors alone spread {} ms.</p>",
        sp.ticks,
        if sp.incomplete > 0 {
            format!(
                "; {} ticks some consumer missed are left out",
                sp.incomplete
            )
        } else {
            String::new()
        },
        ms(sp.p50),
        ms(sp.p90),
        ms(sp.p99),
        ms(sp.p999),
        ms(sp.max),
        ms(sp.floor_spread_us)
    );

    // Latency CDF per region.
    let x_max = r
        .regions
        .iter()
        .map(|g| g.latency_us.p999)
        .max()
        .unwrap_or(1) as f64
        / 1000.0
        * 1.1;
    let cdf = Chart {
        title: "Latency CDF per region",
        x_label: "latency (ms; clipped at 1.1 × the largest regional p99.9)",
        y_label: "fraction of ticks",
        x_max,
        y_max: 1.0,
        series: r
            .regions
            .iter()
            .enumerate()
            .map(|(i, g)| Series {
                name: &g.region,
                color: PALETTE[i % PALETTE.len()],
                points: g.cdf.iter().map(|p| (p[0] / 1000.0, p[1])).collect(),
                step: true,
            })
            .collect(),
        marks: Vec::new(),
        shade: None,
    };
    h.push_str(&cdf.svg());

    // Latency over time.
    let total_ms = (r.duration_ms + r.drain_ms) as f64;
    let y_max = r
        .timeline
        .regions
        .values()
        .flat_map(|v| v.iter().map(|p| p[2]))
        .max()
        .unwrap_or(1) as f64
        / 1000.0
        * 1.1;
    let regions_order: Vec<&str> = r.regions.iter().map(|g| g.region.as_str()).collect();
    let over_time = Chart {
        title: "Latency over time: p99 per region per time bucket, faults marked",
        x_label: &format!(
            "time since the feed started (s), buckets of {} ms",
            r.timeline.bucket_ms
        ),
        y_label: "p99 latency (ms)",
        x_max: total_ms / 1000.0,
        y_max,
        series: regions_order
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let pts = r.timeline.regions.get(*name)?;
                Some(Series {
                    name,
                    color: PALETTE[i % PALETTE.len()],
                    points: pts
                        .iter()
                        .map(|p| (p[0] as f64 / 1000.0, p[2] as f64 / 1000.0))
                        .collect(),
                    step: false,
                })
            })
            .collect(),
        marks: r
            .faults
            .iter()
            .map(|f| (f.at_ms as f64 / 1000.0, f.what.clone(), "#c00"))
            .chain(std::iter::once((
                r.duration_ms as f64 / 1000.0,
                "feed ends".to_owned(),
                "#555",
            )))
            .collect(),
        shade: (r.warmup_ms > 0).then_some((0.0, r.warmup_ms as f64 / 1000.0, "warm-up")),
    };
    h.push_str(&over_time.svg());

    // Spread.
    let spread = Chart {
        title: "Simultaneity spread: CDF over ticks",
        x_label: "last consumer's arrival minus the first's (ms); dashed: spread of the floors",
        y_label: "fraction of ticks",
        x_max: (sp.max.max(sp.floor_spread_us) as f64 / 1000.0 * 1.1).max(1.0),
        y_max: 1.0,
        series: vec![Series {
            name: "spread",
            color: PALETTE[0],
            points: sp.cdf.iter().map(|p| (p[0] / 1000.0, p[1])).collect(),
            step: true,
        }],
        marks: vec![(
            sp.floor_spread_us as f64 / 1000.0,
            "floor spread".to_owned(),
            "#555",
        )],
        shade: None,
    };
    h.push_str(&spread.svg());

    // Faults.
    if !r.faults.is_empty() {
        h.push_str("<h2>Faults</h2><table><tr><th>at (ms)</th><th>fault</th><th>consumers stalled</th><th>longest stall (ms)</th><th>stalls (consumer: ms)</th><th>note</th></tr>");
        for f in &r.faults {
            let list: Vec<String> = f
                .stalls
                .iter()
                .take(8)
                .map(|(c, us)| format!("{}: {}", esc(c), ms(*us)))
                .collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
                f.at_ms,
                esc(&f.what),
                f.stalls.len(),
                ms(f.max_stall_us),
                list.join(", "),
                if f.stalls.len() > 8 { ", …" } else { "" },
                esc(f.note.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table><p class=\"note\">A stall is a gap between two deliveries to a consumer of at least 5 tick periods and 20 ms; it is put on the latest crash or partition before the gap ends that the gap started no more than 1 s after.</p>");
    }

    // Comparison.
    if let Some(c) = &r.comparison {
        h.push_str("<h2>Relay tree versus star (every consumer on the origin)</h2><table><tr><th></th><th>latency p50</th><th>p99</th><th>p99.9</th><th>above floor p99</th><th>p99.9</th><th>spread p50</th><th>p99</th><th>max</th><th>origin connections</th><th>origin egress (MB)</th><th>lost+missing</th></tr>");
        for (name, x) in [("tree", &c.tree), ("star", &c.star)] {
            let _ = write!(
                h,
                "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
                ms(x.latency_us.p50),
                ms(x.latency_us.p99),
                ms(x.latency_us.p999),
                ms(x.above_floor_us.p99),
                ms(x.above_floor_us.p999),
                ms(x.spread_us.p50),
                ms(x.spread_us.p99),
                ms(x.spread_us.max),
                x.origin.connections,
                x.origin.egress_bytes as f64 / 1e6,
                x.lost
            );
        }
        h.push_str("</table>");
        if !c.star_skipped_faults.is_empty() {
            let _ = write!(
                h,
                "<p class=\"note\">Not applied to the star (no such node there): {}.</p>",
                esc(&c.star_skipped_faults.join(", "))
            );
        }
    }

    // Consumers.
    h.push_str("<h2>Consumers (ms)</h2><table><tr><th>consumer</th><th>path</th><th>floor</th><th>p50</th><th>p99</th><th>p99.9</th><th>max</th><th>above floor p99.9</th><th>delivered</th><th>lost</th><th>missing</th><th>dups</th><th>NACK ranges</th><th>repaired</th><th>sessions</th><th>longest gap</th></tr>");
    for c in &r.consumers {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"path\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&c.path[..c.path.len().saturating_sub(1)].join(" → ")),
            ms(c.floor_us),
            ms(c.latency_us.p50),
            ms(c.latency_us.p99),
            ms(c.latency_us.p999),
            ms(c.latency_us.max),
            ms(c.above_floor_us.p999),
            c.delivered,
            c.lost,
            c.missing,
            c.duplicates,
            c.nack_ranges,
            c.repaired,
            c.connects,
            ms(c.max_gap_us)
        );
    }
    h.push_str("</table>");

    // Relays.
    if let Some(first) = r.relays.first() {
        let keys: Vec<&String> = first.counters.keys().collect();
        h.push_str("<h2>Origin and relays</h2><table><tr><th>node</th><th>region</th><th>starts</th><th>MB out</th>");
        for k in &keys {
            let _ = write!(h, "<th>{}</th>", esc(k));
        }
        h.push_str("</tr>");
        for x in &r.relays {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td>",
                esc(&x.name),
                esc(&x.region),
                x.incarnations,
                x.traffic.bytes_out as f64 / 1e6
            );
            for k in &keys {
                let _ = write!(h, "<td>{}</td>", x.counters.get(*k).copied().unwrap_or(0));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }

    // Network.
    h.push_str("<h2>Network</h2><table><tr><th>links</th><th>packets</th><th>MB</th><th>random loss</th><th>burst loss</th><th>queue drops</th><th>partition drops</th><th>crash drops</th><th>no route</th><th>reordered</th><th>longest queueing (ms)</th></tr>");
    let total = ("all".to_owned(), r.network.total.clone());
    for (class, s) in r
        .network
        .links
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain([total])
    {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&class),
            s.packets,
            s.bytes as f64 / 1e6,
            s.lost,
            s.burst_lost,
            s.queue_dropped,
            s.partition_dropped,
            s.crash_dropped,
            s.no_route,
            s.reordered,
            ms(s.max_queue_us)
        );
    }
    h.push_str("</table>");
    h.push_str("<p class=\"note\">Made by tickcast-netsim: the real origin, relay and client code over simulated links. In virtual time tokio timers have 1 ms resolution and CPU time is free; see <code>--realtime</code> for per-hop processing cost.</p></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_and_escaping() {
        assert_eq!(nice_step(100.0, 10.0), 10.0);
        assert_eq!(nice_step(1.0, 4.0), 0.2);
        assert_eq!(nice_step(245.0, 10.0), 20.0);
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
        assert_eq!(fmt_num(2.0, 1.0), "2");
        assert_eq!(fmt_num(0.6000000001, 0.2), "0.6");
        assert_eq!(fmt_num(0.05, 0.05), "0.05");
    }
}
