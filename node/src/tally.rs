//! Checking a consumer's event stream the way a user would: every tick once, in order,
//! and how late. Used by `tickcast up`, the benchmark and the end-to-end tests.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;
use tickcast_client::Event;
use tickcast_proto::{ChannelId, Seq, SeqRange};

/// Per-consumer verdict and latency.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Ticks received.
    pub delivered: u64,
    /// Seqs reported lost.
    pub lost: u64,
    /// Lost ranges as reported.
    pub lost_ranges: Vec<(ChannelId, SeqRange)>,
    /// Ticks whose seq was already delivered.
    pub duplicates: u64,
    /// Ticks (or lost ranges) that skipped ahead without a `Lost` in between, or went back.
    pub out_of_order: u64,
    /// Failovers seen (connected events after the first).
    pub connects: u64,
    /// Next expected seq per channel (after the first tick or loss seen).
    pub next: BTreeMap<ChannelId, Seq>,
    /// Latency in µs (receive wall time minus the reference time).
    pub latency: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            delivered: 0,
            lost: 0,
            lost_ranges: Vec::new(),
            duplicates: 0,
            out_of_order: 0,
            connects: 0,
            next: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
        }
    }
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

impl Latency {
    /// Percentiles of a histogram (zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency {
                p50: 0,
                p99: 0,
                p999: 0,
                max: 0,
            };
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

impl Tally {
    /// Takes one event. `latency_ref_us` gives the reference time of a tick (origin stamp
    /// or scheduled time); `now_us` is the receive wall time.
    pub fn on_event(
        &mut self,
        ev: &Event,
        now_us: u64,
        latency_ref_us: impl Fn(&tickcast_proto::Tick) -> u64,
    ) {
        match ev {
            Event::Tick(t) => {
                let next = self.next.entry(t.channel).or_insert(t.seq);
                if t.seq < *next {
                    self.duplicates += 1;
                    return;
                }
                if t.seq > *next {
                    self.out_of_order += 1;
                }
                *next = t.seq + 1;
                self.delivered += 1;
                let lat = now_us.saturating_sub(latency_ref_us(t)).max(1);
                let _ = self.latency.record(lat.min(120_000_000));
            }
            Event::Lost { channel, range } => {
                let next = self.next.entry(*channel).or_insert(range.first);
                if range.first != *next {
                    self.out_of_order += 1;
                }
                *next = (*next).max(range.last + 1);
                self.lost += range.len();
                self.lost_ranges.push((*channel, *range));
            }
            Event::Connected { .. } => self.connects += 1,
            Event::Disconnected { .. } => {}
        }
    }

    /// Whether every seq seen was delivered once and in order, with nothing lost.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.out_of_order == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tickcast_proto::Tick;

    fn t(seq: Seq) -> Event {
        Event::Tick(Tick {
            channel: 1,
            seq,
            epoch: 1,
            origin_us: 10,
            payload: Bytes::new(),
        })
    }

    #[test]
    fn flags_duplicates_gaps_and_losses() {
        let mut y = Tally::default();
        for e in [
            t(1),
            t(2),
            t(2),
            t(4),
            Event::Lost {
                channel: 1,
                range: SeqRange::new(5, 6),
            },
            t(7),
        ] {
            y.on_event(&e, 110, |t| t.origin_us);
        }
        assert_eq!(
            (y.delivered, y.duplicates, y.out_of_order, y.lost),
            (4, 1, 1, 2)
        );
        assert!(!y.clean());
        assert_eq!(Latency::of(&y.latency).p50, 100);
    }
}
