//! One directed link of the simulated network, as a sans-IO model.
//!
//! Owns [`LinkProfile`] (what a link is: delay, jitter, loss, bursts, bandwidth, queue,
//! reordering, MTU) and [`Link`], which decides for each packet offered at `now` whether it
//! is dropped and, if not, when it arrives ([`Verdict`]). It keeps the link's state (the
//! seeded RNG, the Gilbert-Elliott state, when the transmitter is next free) and counters
//! ([`LinkStats`]). It knows nothing about sockets, timers, addresses, partitions or
//! crashes: those are [`crate::net`]'s.
//!
//! The order of events for a packet: the drop-tail queue in front of the transmitter
//! (bounded in bytes; a packet that does not fit is dropped), serialization at the link
//! rate (`bytes * 8 / bps`, one packet after another, so nothing leaves faster than the
//! rate), then the path: random or burst loss, the one-way delay plus jitter, and
//! optionally a reordering hold-back. Without reordering a link is FIFO: jitter delays a
//! packet and everything behind it, but never lets a later packet overtake it.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

/// Gilbert-Elliott bursty loss: a two-state Markov chain stepped once per packet.
#[derive(Clone, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability, per packet, of moving from the good state into a burst.
    pub enter: f64,
    /// Probability, per packet, of leaving a burst (mean burst length is `1 / exit` packets).
    pub exit: f64,
    /// Loss probability while in a burst (the link's `loss` applies in the good state).
    pub loss: f64,
}

/// What a directed link does to the packets sent over it.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkProfile {
    /// One-way propagation delay (the floor: no packet arrives sooner after serialization).
    pub delay: Duration,
    /// Bound of the extra per-packet delay. Drawn from an exponential distribution with
    /// mean `jitter / 4`, truncated at `jitter`.
    pub jitter: Duration,
    /// Random loss probability per packet (outside bursts).
    pub loss: f64,
    /// Optional bursty loss on top of `loss`.
    pub burst: Option<GilbertElliott>,
    /// Link rate in bits per second; `None` is infinitely fast.
    pub bandwidth_bps: Option<u64>,
    /// Bytes the queue in front of the transmitter holds (including the packet being sent);
    /// a packet that does not fit is dropped. Ignored without a bandwidth.
    pub queue_bytes: usize,
    /// Probability that a packet is held back by `reorder_delay` and may be overtaken.
    pub reorder: f64,
    /// Extra delay of a reordered packet.
    pub reorder_delay: Duration,
    /// Largest UDP payload carried; larger packets are dropped.
    pub mtu: usize,
}

impl Default for LinkProfile {
    /// An ideal link: no delay, no loss, infinitely fast, 1472-byte MTU.
    fn default() -> Self {
        LinkProfile {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            bandwidth_bps: None,
            queue_bytes: 1 << 20,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            mtu: 1472,
        }
    }
}

impl LinkProfile {
    /// An ideal link with a fixed one-way delay.
    pub fn with_delay(delay: Duration) -> Self {
        LinkProfile {
            delay,
            ..LinkProfile::default()
        }
    }

    /// Serialization time of `len` bytes at the link rate (zero without a bandwidth).
    pub fn serialization(&self, len: usize) -> Duration {
        match self.bandwidth_bps {
            Some(bps) if bps > 0 => {
                Duration::from_nanos(((len as u128 * 8 * 1_000_000_000) / bps as u128) as u64)
            }
            _ => Duration::ZERO,
        }
    }
}

/// Why a packet did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Random loss.
    Loss,
    /// Loss inside a Gilbert-Elliott burst.
    Burst,
    /// The queue in front of the transmitter was full.
    Queue,
    /// Larger than the link MTU.
    Mtu,
    /// The link was partitioned when the packet was sent.
    Partition,
    /// Sender or receiver was crashed.
    Crashed,
    /// Nobody listens at the destination address.
    NoRoute,
}

/// What happens to one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It arrives at this instant.
    Deliver(Instant),
    /// It is dropped.
    Drop(DropReason),
}

/// Counters of one link (or a sum of links).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Packets offered to the link.
    pub packets: u64,
    /// Bytes offered to the link.
    pub bytes: u64,
    /// Packets that arrived (or are in flight).
    pub delivered: u64,
    /// Packets lost at random.
    pub lost: u64,
    /// Packets lost in bursts.
    pub burst_lost: u64,
    /// Packets dropped by a full queue.
    pub queue_dropped: u64,
    /// Packets over the MTU.
    pub mtu_dropped: u64,
    /// Packets dropped by a partition.
    pub partition_dropped: u64,
    /// Packets dropped because sender or receiver was crashed.
    pub crash_dropped: u64,
    /// Packets sent to an address nobody listens on.
    pub no_route: u64,
    /// Packets held back for reordering.
    pub reordered: u64,
    /// Longest time a packet waited in the queue, µs.
    pub max_queue_us: u64,
}

impl LinkStats {
    /// Counts one dropped packet.
    pub fn count_drop(&mut self, why: DropReason) {
        match why {
            DropReason::Loss => self.lost += 1,
            DropReason::Burst => self.burst_lost += 1,
            DropReason::Queue => self.queue_dropped += 1,
            DropReason::Mtu => self.mtu_dropped += 1,
            DropReason::Partition => self.partition_dropped += 1,
            DropReason::Crashed => self.crash_dropped += 1,
            DropReason::NoRoute => self.no_route += 1,
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &LinkStats) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.burst_lost += other.burst_lost;
        self.queue_dropped += other.queue_dropped;
        self.mtu_dropped += other.mtu_dropped;
        self.partition_dropped += other.partition_dropped;
        self.crash_dropped += other.crash_dropped;
        self.no_route += other.no_route;
        self.reordered += other.reordered;
        self.max_queue_us = self.max_queue_us.max(other.max_queue_us);
    }

    /// Packets dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.lost
            + self.burst_lost
            + self.queue_dropped
            + self.mtu_dropped
            + self.partition_dropped
            + self.crash_dropped
            + self.no_route
    }
}

/// The state of one directed link.
#[derive(Debug)]
pub struct Link {
    profile: LinkProfile,
    rng: SmallRng,
    in_burst: bool,
    /// When the transmitter finishes the last accepted packet.
    busy_until: Option<Instant>,
    /// Arrival of the last in-order packet (FIFO floor for the next one).
    last_arrival: Option<Instant>,
    stats: LinkStats,
}

impl Link {
    /// A link with `profile` whose randomness comes from a `SmallRng` seeded with `seed`.
    pub fn new(profile: LinkProfile, seed: u64) -> Self {
        Link {
            profile,
            rng: SmallRng::seed_from_u64(seed),
            in_burst: false,
            busy_until: None,
            last_arrival: None,
            stats: LinkStats::default(),
        }
    }

    /// The link's profile.
    pub fn profile(&self) -> &LinkProfile {
        &self.profile
    }

    /// The link's counters.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Counts a packet dropped outside the link model (partition, crash, no route).
    pub fn count_external_drop(&mut self, len: usize, why: DropReason) {
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        self.stats.count_drop(why);
    }

    /// Moves a packet counted as delivered over to the crash drops: it reached a node that
    /// had crashed while it was in flight.
    pub fn arrived_at_crashed_node(&mut self) {
        self.stats.delivered = self.stats.delivered.saturating_sub(1);
        self.stats.crash_dropped += 1;
    }

    /// Bytes waiting in (or being sent from) the queue at `now`.
    pub fn backlog_bytes(&self, now: Instant) -> usize {
        match (self.busy_until, self.profile.bandwidth_bps) {
            (Some(busy), Some(bps)) if busy > now => {
                let ns = (busy - now).as_nanos();
                (ns * bps as u128 / 8 / 1_000_000_000) as usize
            }
            _ => 0,
        }
    }

    /// Offers a packet of `len` bytes at `now`: dropped, or delivered at some instant.
    ///
    /// Every call draws the same four numbers from the RNG, whatever the outcome, so the
    /// random stream of a link depends only on how many packets it carried.
    pub fn admit(&mut self, now: Instant, len: usize) -> Verdict {
        let u_state: f64 = self.rng.random();
        let u_loss: f64 = self.rng.random();
        let u_jitter: f64 = self.rng.random();
        let u_reorder: f64 = self.rng.random();
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        let verdict = self.decide(now, len, u_state, u_loss, u_jitter, u_reorder);
        match verdict {
            Verdict::Deliver(_) => self.stats.delivered += 1,
            Verdict::Drop(why) => self.stats.count_drop(why),
        }
        verdict
    }

    fn decide(
        &mut self,
        now: Instant,
        len: usize,
        u_state: f64,
        u_loss: f64,
        u_jitter: f64,
        u_reorder: f64,
    ) -> Verdict {
        let p = &self.profile;
        if len > p.mtu {
            return Verdict::Drop(DropReason::Mtu);
        }
        // The queue and the transmitter.
        let sent_at = if p.bandwidth_bps.is_some() {
            if self.backlog_bytes(now) + len > p.queue_bytes {
                return Verdict::Drop(DropReason::Queue);
            }
            let start = self.busy_until.map_or(now, |b| b.max(now));
            let done = start + p.serialization(len);
            self.busy_until = Some(done);
            let waited = (start - now).as_micros() as u64;
            self.stats.max_queue_us = self.stats.max_queue_us.max(waited);
            done
        } else {
            now
        };
        // The path: loss.
        if let Some(ge) = &p.burst {
            self.in_burst = if self.in_burst {
                u_state >= ge.exit
            } else {
                u_state < ge.enter
            };
            if self.in_burst && u_loss < ge.loss {
                return Verdict::Drop(DropReason::Burst);
            }
        }
        if !self.in_burst && u_loss < p.loss {
            return Verdict::Drop(DropReason::Loss);
        }
        // Delay and jitter.
        let mut arrival = sent_at + p.delay + jitter(p.jitter, u_jitter);
        if p.reorder > 0.0 && u_reorder < p.reorder {
            self.stats.reordered += 1;
            return Verdict::Deliver(arrival + p.reorder_delay);
        }
        if let Some(last) = self.last_arrival {
            arrival = arrival.max(last);
        }
        self.last_arrival = Some(arrival);
        Verdict::Deliver(arrival)
    }
}

/// Jitter for a uniform draw `u` in [0, 1): exponential with mean `bound / 4`, truncated.
fn jitter(bound: Duration, u: f64) -> Duration {
    if bound.is_zero() {
        return Duration::ZERO;
    }
    let mean = bound.as_secs_f64() / 4.0;
    let x = -(1.0 - u).ln() * mean;
    Duration::from_secs_f64(x.min(bound.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn delay_and_jitter_are_bounded_below_and_above() {
        let p = LinkProfile {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(8),
            ..LinkProfile::default()
        };
        let mut l = Link::new(p, 7);
        let start = t0();
        let mut prev = start;
        let mut jittered = 0;
        for i in 0..10_000u64 {
            let now = start + Duration::from_micros(i * 500);
            let Verdict::Deliver(at) = l.admit(now, 1200) else {
                panic!("ideal link dropped a packet")
            };
            let d = at - now;
            assert!(d >= Duration::from_millis(40), "packet {i} early: {d:?}");
            // FIFO: a packet may wait behind a jittered predecessor, never overtake it.
            assert!(at >= prev, "packet {i} overtook its predecessor");
            assert!(
                d <= Duration::from_millis(48) + Duration::from_micros(500),
                "packet {i} too late: {d:?}"
            );
            if d > Duration::from_millis(41) {
                jittered += 1;
            }
            prev = at;
        }
        assert!(jittered > 100, "jitter barely applied ({jittered})");
    }

    #[test]
    fn bandwidth_is_never_exceeded_and_full_queue_drops() {
        // 8 Mbit/s = 1 byte/µs; 1000-byte packets take 1 ms each; queue holds 10 packets.
        let p = LinkProfile {
            delay: Duration::from_millis(5),
            bandwidth_bps: Some(8_000_000),
            queue_bytes: 10_000,
            ..LinkProfile::default()
        };
        let mut l = Link::new(p, 1);
        let start = t0();
        // A burst of 30 packets at once: 10 fit, 20 are dropped.
        let mut arrivals = Vec::new();
        for _ in 0..30 {
            if let Verdict::Deliver(at) = l.admit(start, 1000) {
                arrivals.push(at);
            }
        }
        assert_eq!(arrivals.len(), 10);
        assert_eq!(l.stats().queue_dropped, 20);
        for (i, at) in arrivals.iter().enumerate() {
            // The i-th packet finishes serialization after (i+1) ms, then 5 ms of delay.
            assert_eq!(*at - start, Duration::from_millis(5 + i as u64 + 1));
        }
        // Offered at twice the rate for a second: delivered bytes never exceed the rate.
        let mut l = Link::new(l.profile().clone(), 2);
        let mut delivered = Vec::new();
        for i in 0..2000u64 {
            let now = start + Duration::from_micros(i * 500);
            if let Verdict::Deliver(at) = l.admit(now, 1000) {
                delivered.push(at);
            }
        }
        assert!(l.stats().queue_dropped >= 900, "{:?}", l.stats());
        // In any window of w ms, at most w + 1 packets arrive (1000 B per ms at 8 Mbit/s).
        for (i, a) in delivered.iter().enumerate() {
            let in_window = delivered[i..]
                .iter()
                .take_while(|b| **b - *a < Duration::from_millis(100))
                .count();
            assert!(in_window <= 101, "{in_window} packets within 100 ms");
        }
    }

    #[test]
    fn random_and_burst_loss_rates() {
        let p = LinkProfile {
            loss: 0.02,
            ..LinkProfile::default()
        };
        let mut l = Link::new(p, 3);
        let now = t0();
        for _ in 0..100_000 {
            l.admit(now, 100);
        }
        let rate = l.stats().lost as f64 / 100_000.0;
        assert!((0.017..0.023).contains(&rate), "loss rate {rate}");

        // Bursts: enter 1/1000, mean length 20, 50 % loss inside → about 1 % loss, in runs.
        let p = LinkProfile {
            burst: Some(GilbertElliott {
                enter: 0.001,
                exit: 0.05,
                loss: 0.5,
            }),
            ..LinkProfile::default()
        };
        let mut l = Link::new(p, 4);
        let mut lost_after_lost = 0;
        let mut prev_lost = false;
        for _ in 0..200_000 {
            let lost = matches!(l.admit(now, 100), Verdict::Drop(DropReason::Burst));
            if lost && prev_lost {
                lost_after_lost += 1;
            }
            prev_lost = lost;
        }
        let burst = l.stats().burst_lost;
        let rate = burst as f64 / 200_000.0;
        assert!((0.005..0.02).contains(&rate), "burst loss rate {rate}");
        // Correlated: far more back-to-back losses than independent 1 % loss would give.
        assert!(
            lost_after_lost as f64 > burst as f64 * 0.3,
            "{lost_after_lost}/{burst}"
        );
    }

    #[test]
    fn same_seed_same_decisions_and_mtu() {
        let p = LinkProfile {
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(3),
            loss: 0.1,
            reorder: 0.05,
            reorder_delay: Duration::from_millis(2),
            mtu: 1000,
            ..LinkProfile::default()
        };
        let now = t0();
        let run = |seed| {
            let mut l = Link::new(p.clone(), seed);
            (0..1000u64)
                .map(|i| l.admit(now + Duration::from_millis(i), 500))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
        let mut l = Link::new(p, 1);
        assert_eq!(l.admit(now, 1001), Verdict::Drop(DropReason::Mtu));
        assert!(l.stats().reordered == 0);
        for i in 0..1000u64 {
            l.admit(now + Duration::from_millis(i), 500);
        }
        assert!(l.stats().reordered > 20, "{:?}", l.stats());
    }
}
