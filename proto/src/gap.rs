//! Gap detection and NACK scheduling for a receiver, plus in-order reassembly.
//!
//! [`GapTracker`] knows, for one channel, which seqs a receiver has and which it lacks: it
//! learns of missing ranges from seq jumps and from heartbeat heads, waits a reorder delay,
//! then emits NACK ranges and repeats them with exponential back-off until the range
//! arrives or is declared unavailable. It stores no ticks (a relay keeps those in its ring).
//!
//! [`Reassembler`] wraps a tracker with a bounded hold buffer and yields, per channel, the
//! in-order, exactly-once sequence of [`Delivery`] events a consumer application sees.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::tick::{ChannelId, Seq, SeqRange, Tick};

/// Timing and bounds for gap tracking.
#[derive(Debug, Clone, Copy)]
pub struct GapConfig {
    /// How long a gap may stay open before the first NACK (reordering allowance).
    pub reorder_delay: Duration,
    /// A gap is NACKed at once when this many seqs beyond it have arrived, without waiting
    /// out `reorder_delay` (QUIC's packet threshold, RFC 9002 §6.1.1). 0 disables it.
    pub reorder_packets: u64,
    /// Interval before the first repeat of an unanswered NACK; doubled per attempt.
    pub retry_min: Duration,
    /// Cap on the repeat interval.
    pub retry_max: Duration,
    /// Most ranges put in one NACK message.
    pub max_ranges: usize,
    /// A seq or head more than this far beyond everything known is a protocol violation
    /// (a lying or broken peer), not a gap to repair.
    pub max_ahead: u64,
}

impl Default for GapConfig {
    fn default() -> Self {
        GapConfig {
            reorder_delay: Duration::from_millis(5),
            reorder_packets: 3,
            retry_min: Duration::from_millis(20),
            retry_max: Duration::from_millis(500),
            max_ranges: 256,
            max_ahead: 10_000_000,
        }
    }
}

/// The NACK repeat interval for a link with round trip `rtt`: the answer is due one round
/// trip later (repairs go as datagrams, not queued behind anything), plus a quarter for
/// jitter, plus 15 ms for the last redundant copy (sent 12 ms after the first) and
/// processing.
pub fn nack_retry_for(rtt: Duration) -> Duration {
    rtt + rtt / 4 + Duration::from_millis(15)
}

/// How a received seq relates to what the tracker had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First copy of this seq.
    New,
    /// Already had it (or it is below the start): drop it.
    Duplicate,
}

/// A peer announced or sent a seq implausibly far ahead: treat it as broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq} is {ahead} beyond the highest known seq {known} (limit {limit})")]
pub struct SeqViolation {
    /// The offending seq.
    pub seq: Seq,
    /// The highest seq known before it.
    pub known: Seq,
    /// How far beyond.
    pub ahead: u64,
    /// The configured limit.
    pub limit: u64,
}

#[derive(Debug, Clone, Copy)]
struct Gap {
    last: Seq,
    due: Instant,
    attempts: u32,
    /// Asked for, by a NACK or by a resuming session's replay.
    asked: bool,
}

/// Tracks received and missing seqs of one channel and schedules NACKs.
#[derive(Debug, Clone)]
pub struct GapTracker {
    cfg: GapConfig,
    started: bool,
    /// Lowest seq neither received nor resolved as lost.
    next: Seq,
    /// Highest seq known to exist (received or announced).
    known: Seq,
    /// Missing ranges inside `next..=known`, keyed by first seq.
    gaps: BTreeMap<Seq, Gap>,
    retry: Duration,
    nacked_ranges: u64,
    last_fill: Option<Instant>,
    /// Upper ends of gaps not yet past the packet threshold, ascending.
    waiting: VecDeque<Seq>,
    /// Gaps ending at or below this have been past the packet threshold.
    promoted_upto: Seq,
}

impl GapTracker {
    /// A tracker that knows nothing until [`start_at`](Self::start_at).
    pub fn new(cfg: GapConfig) -> Self {
        GapTracker {
            retry: cfg.retry_min,
            cfg,
            started: false,
            next: 1,
            known: 0,
            gaps: BTreeMap::new(),
            nacked_ranges: 0,
            last_fill: None,
            waiting: VecDeque::new(),
            promoted_upto: 0,
        }
    }

    /// Sets the first seq this receiver wants; later calls are ignored.
    pub fn start_at(&mut self, first: Seq) {
        if !self.started {
            self.started = true;
            self.next = first.max(1);
            self.known = self.next - 1;
        }
    }

    /// Whether the starting point is set.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Lowest seq neither received nor resolved: everything below is settled.
    pub fn next_expected(&self) -> Seq {
        self.next
    }

    /// Highest seq known to exist.
    pub fn known_head(&self) -> Seq {
        self.known
    }

    /// Number of NACK ranges emitted so far (first sends and repeats).
    pub fn nacked_ranges(&self) -> u64 {
        self.nacked_ranges
    }

    /// Scales the NACK repeat interval to the link (see [`nack_retry_for`]).
    pub fn set_retry(&mut self, retry: Duration) {
        self.retry = retry.clamp(self.cfg.retry_min, self.cfg.retry_max);
    }

    /// Records a received seq. Callers must have started the tracker.
    pub fn on_seq(&mut self, now: Instant, seq: Seq) -> Result<Arrival, SeqViolation> {
        debug_assert!(self.started);
        if seq < self.next {
            return Ok(Arrival::Duplicate);
        }
        if seq > self.known {
            self.extend_known(now, seq - 1)?;
            self.known = seq;
            self.promote(now);
            self.settle();
            return Ok(Arrival::New);
        }
        let Some((&first, &gap)) = self.gaps.range(..=seq).next_back() else {
            return Ok(Arrival::Duplicate);
        };
        if gap.last < seq {
            return Ok(Arrival::Duplicate);
        }
        self.gaps.remove(&first);
        // A NACKed gap that is filling (a replay streaming in) is asked again only after a
        // retry interval without progress: asking again mid-answer would only get the same
        // answer twice, and on a busy server that is what keeps it busy.
        let gap = if gap.asked {
            Gap {
                due: gap.due.max(now + self.retry),
                ..gap
            }
        } else {
            gap
        };
        if first < seq {
            self.gaps.insert(
                first,
                Gap {
                    last: seq - 1,
                    ..gap
                },
            );
        }
        if seq < gap.last {
            self.gaps.insert(seq + 1, gap);
        }
        self.last_fill = Some(now);
        self.settle();
        Ok(Arrival::New)
    }

    /// Records a head announced by the upstream (heartbeat or welcome).
    pub fn on_head(&mut self, now: Instant, head: Seq) -> Result<(), SeqViolation> {
        if !self.started || head <= self.known {
            return Ok(());
        }
        self.extend_known(now, head)?;
        self.known = head;
        Ok(())
    }

    /// Opens a gap for `known+1..=upto` (if non-empty), after checking plausibility.
    fn extend_known(&mut self, now: Instant, upto: Seq) -> Result<(), SeqViolation> {
        let ahead = upto.saturating_sub(self.known);
        if ahead > self.cfg.max_ahead {
            return Err(SeqViolation {
                seq: upto,
                known: self.known,
                ahead,
                limit: self.cfg.max_ahead,
            });
        }
        if upto > self.known {
            if self.cfg.reorder_packets > 0 {
                self.waiting.push_back(upto);
            }
            self.gaps.insert(
                self.known + 1,
                Gap {
                    last: upto,
                    due: now + self.cfg.reorder_delay,
                    attempts: 0,
                    asked: false,
                },
            );
        }
        Ok(())
    }

    /// Makes gaps with `reorder_packets` seqs beyond them due now: by then the missing
    /// packets are lost, not late.
    fn promote(&mut self, now: Instant) {
        while let Some(&last) = self.waiting.front() {
            if last.saturating_add(self.cfg.reorder_packets) > self.known {
                break;
            }
            self.waiting.pop_front();
            for g in self
                .gaps
                .range_mut(self.promoted_upto.saturating_add(1)..=last)
                .map(|(_, g)| g)
                .filter(|g| g.attempts == 0)
            {
                g.due = g.due.min(now);
            }
            self.promoted_upto = self.promoted_upto.max(last);
        }
    }

    fn settle(&mut self) {
        self.next = match self.gaps.first_key_value() {
            Some((&first, _)) => first,
            None => self.known + 1,
        };
    }

    /// Marks `range` as given up (the upstream said nobody has it). Returns the parts that
    /// were actually missing, ascending; those are what the receiver must report lost.
    pub fn resolve_lost(&mut self, range: SeqRange) -> Vec<SeqRange> {
        let mut lost = Vec::new();
        if !self.started || range.last < self.next {
            return lost;
        }
        let start = self
            .gaps
            .range(..=range.first)
            .next_back()
            .map(|(&f, _)| f)
            .unwrap_or(range.first);
        let hit: Vec<(Seq, Gap)> = self
            .gaps
            .range(start..=range.last)
            .map(|(&f, &g)| (f, g))
            .collect();
        for (first, gap) in hit {
            let gr = SeqRange::new(first, gap.last);
            let Some(cut) = gr.intersect(&range) else {
                continue;
            };
            self.gaps.remove(&first);
            if first < cut.first {
                self.gaps.insert(
                    first,
                    Gap {
                        last: cut.first - 1,
                        ..gap
                    },
                );
            }
            if cut.last < gap.last {
                self.gaps.insert(cut.last + 1, gap);
            }
            lost.push(cut);
        }
        // A range beyond everything known is lost as a whole (e.g. resume into evicted data
        // announced only by this answer).
        if range.last > self.known {
            let first = range.first.max(self.known + 1);
            lost.push(SeqRange::new(first, range.last));
            self.known = range.last;
        }
        self.settle();
        lost
    }

    /// Missing ranges whose NACK is due now (at most `max_ranges`), rescheduling each with
    /// back-off. `None` when nothing is due.
    pub fn poll_nack(&mut self, now: Instant) -> Option<Vec<SeqRange>> {
        let mut out = Vec::new();
        for (&first, gap) in self.gaps.iter_mut() {
            if gap.due > now {
                continue;
            }
            out.push(SeqRange::new(first, gap.last));
            let factor = 1u32 << gap.attempts.min(10);
            gap.attempts += 1;
            gap.asked = true;
            gap.due = now + (self.retry * factor).min(self.cfg.retry_max);
            if out.len() == self.cfg.max_ranges {
                break;
            }
        }
        self.nacked_ranges += out.len() as u64;
        (!out.is_empty()).then_some(out)
    }

    /// When the next NACK falls due, if any gap is open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.gaps.values().map(|g| g.due).min()
    }

    /// Makes every open gap due at `at` with fresh back-off (after switching upstream: a
    /// resuming session replays from the resume point by itself, so callers give it time
    /// before asking again).
    pub fn renack_all(&mut self, at: Instant) {
        for g in self.gaps.values_mut() {
            g.due = at;
            g.attempts = 0;
            g.asked = true;
        }
        self.last_fill = Some(at);
    }

    /// Whether the upstream looks stuck: some gap has had `attempts` NACKs and no repair
    /// has filled any gap for `quiet` (it announces ticks it does not deliver). A slow
    /// but progressing replay is not stuck.
    pub fn stuck(&self, now: Instant, attempts: u32, quiet: Duration) -> bool {
        self.max_attempts() >= attempts
            && self
                .last_fill
                .is_none_or(|t| now.saturating_duration_since(t) >= quiet)
    }

    /// Most NACKs sent for any one open gap without it being filled (0 when none open).
    /// A high count means the upstream announces ticks it does not deliver.
    pub fn max_attempts(&self) -> u32 {
        self.gaps.values().map(|g| g.attempts).max().unwrap_or(0)
    }

    /// The open gaps, ascending.
    pub fn missing(&self) -> impl Iterator<Item = SeqRange> + '_ {
        self.gaps.iter().map(|(&f, g)| SeqRange::new(f, g.last))
    }

    /// Whether `seq` is inside an open gap that has been NACKed: a copy of it arriving now
    /// is a repair (as opposed to a late or second-feed copy that filled the gap before
    /// anyone asked).
    pub fn is_nacked(&self, seq: Seq) -> bool {
        seq >= self.next
            && seq <= self.known
            && self
                .gaps
                .range(..=seq)
                .next_back()
                .is_some_and(|(_, g)| g.last >= seq && g.attempts > 0)
    }
}

/// What a consumer sees of one channel, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next tick.
    Tick(Tick),
    /// These seqs will never be delivered (nobody upstream still had them, or the hold
    /// buffer overflowed while waiting for them).
    Lost {
        /// Channel.
        channel: ChannelId,
        /// The seqs given up.
        range: SeqRange,
    },
}

/// In-order, exactly-once reassembly of one channel for a consumer.
#[derive(Debug)]
pub struct Reassembler {
    channel: ChannelId,
    tracker: GapTracker,
    held: BTreeMap<Seq, Tick>,
    lost: BTreeMap<Seq, Seq>,
    /// Next seq to hand to the application.
    deliver_next: Seq,
    /// Ticks that arrived before the starting point was known.
    early: Vec<Tick>,
    max_held: usize,
}

impl Reassembler {
    /// A reassembler holding at most `max_held` out-of-order ticks.
    pub fn new(channel: ChannelId, cfg: GapConfig, max_held: usize) -> Self {
        Reassembler {
            channel,
            tracker: GapTracker::new(cfg),
            held: BTreeMap::new(),
            lost: BTreeMap::new(),
            deliver_next: 1,
            early: Vec::new(),
            max_held: max_held.max(1),
        }
    }

    /// The channel.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    /// The gap tracker (for NACK polling and counters).
    pub fn tracker(&mut self) -> &mut GapTracker {
        &mut self.tracker
    }

    /// Whether the starting point is set.
    pub fn is_started(&self) -> bool {
        self.tracker.is_started()
    }

    /// Next seq the application will see (its last delivered seq + 1).
    pub fn deliver_next(&self) -> Seq {
        self.deliver_next
    }

    /// Sets the first seq to deliver, then replays ticks that arrived before it was known.
    pub fn start_at(
        &mut self,
        now: Instant,
        first: Seq,
        out: &mut Vec<Delivery>,
    ) -> Result<(), SeqViolation> {
        if self.tracker.is_started() {
            return Ok(());
        }
        self.tracker.start_at(first);
        self.deliver_next = self.tracker.next_expected();
        for t in std::mem::take(&mut self.early) {
            self.on_tick(now, t, out)?;
        }
        Ok(())
    }

    /// Takes a received tick; appends what became deliverable to `out`.
    pub fn on_tick(
        &mut self,
        now: Instant,
        tick: Tick,
        out: &mut Vec<Delivery>,
    ) -> Result<Arrival, SeqViolation> {
        if !self.tracker.is_started() {
            if self.early.len() < self.max_held {
                self.early.push(tick);
            }
            return Ok(Arrival::New);
        }
        let arrival = self.tracker.on_seq(now, tick.seq)?;
        if arrival == Arrival::New {
            if tick.seq == self.deliver_next && self.held.is_empty() && self.lost.is_empty() {
                // The common case, in order with nothing waiting: no hold-buffer round trip.
                self.deliver_next += 1;
                out.push(Delivery::Tick(tick));
                return Ok(arrival);
            }
            self.held.insert(tick.seq, tick);
            self.drain(out);
            self.enforce_bound(out);
        }
        Ok(arrival)
    }

    /// Takes an announced head (heartbeat).
    pub fn on_head(&mut self, now: Instant, head: Seq) -> Result<(), SeqViolation> {
        self.tracker.on_head(now, head)
    }

    /// Takes an "unavailable" answer; reports the parts that were really missing.
    pub fn on_unavailable(&mut self, range: SeqRange, out: &mut Vec<Delivery>) {
        for r in self.tracker.resolve_lost(range) {
            self.lost.insert(r.first, r.last);
        }
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<Delivery>) {
        let settled = self.tracker.next_expected();
        while self.deliver_next < settled {
            if let Some(t) = self.held.remove(&self.deliver_next) {
                self.deliver_next += 1;
                out.push(Delivery::Tick(t));
            } else if let Some(last) = self.lost.remove(&self.deliver_next) {
                out.push(Delivery::Lost {
                    channel: self.channel,
                    range: SeqRange::new(self.deliver_next, last),
                });
                self.deliver_next = last + 1;
            } else {
                // Unreachable by construction: below `settled` every seq is held or lost.
                debug_assert!(false, "seq {} neither held nor lost", self.deliver_next);
                self.deliver_next += 1;
            }
        }
    }

    /// When too many ticks wait behind a gap, gives up on the oldest gap (reported lost)
    /// rather than grow without bound.
    fn enforce_bound(&mut self, out: &mut Vec<Delivery>) {
        while self.held.len() > self.max_held {
            let Some(gap) = self.tracker.missing().next() else {
                break;
            };
            self.on_unavailable(gap, out);
        }
    }

    /// Ticks waiting behind a gap.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn cfg() -> GapConfig {
        GapConfig {
            reorder_delay: ms(5),
            reorder_packets: 0,
            retry_min: ms(20),
            retry_max: ms(200),
            max_ranges: 3,
            max_ahead: 1000,
        }
    }

    fn tick(seq: Seq) -> Tick {
        Tick {
            channel: 1,
            seq,
            epoch: 1,
            origin_us: 0,
            payload: Bytes::new(),
        }
    }

    fn seqs(out: &[Delivery]) -> Vec<String> {
        out.iter()
            .map(|d| match d {
                Delivery::Tick(t) => t.seq.to_string(),
                Delivery::Lost { range, .. } => format!("lost {range}"),
            })
            .collect()
    }

    #[test]
    fn in_order_and_duplicates() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(cfg());
        g.start_at(1);
        assert_eq!(g.on_seq(t0, 1), Ok(Arrival::New));
        assert_eq!(g.on_seq(t0, 1), Ok(Arrival::Duplicate));
        assert_eq!(g.on_seq(t0, 2), Ok(Arrival::New));
        assert_eq!(g.next_expected(), 3);
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn reordering_within_delay_sends_no_nack() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(cfg());
        g.start_at(1);
        g.on_seq(t0, 1).unwrap();
        g.on_seq(t0, 3).unwrap();
        assert_eq!(g.missing().collect::<Vec<_>>(), vec![SeqRange::single(2)]);
        assert_eq!(g.poll_nack(t0 + ms(4)), None);
        assert_eq!(g.on_seq(t0 + ms(4), 2), Ok(Arrival::New));
        assert_eq!(g.poll_nack(t0 + ms(10)), None);
        assert_eq!(g.next_expected(), 4);
    }

    #[test]
    fn packets_beyond_a_gap_make_it_due_before_the_delay() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(GapConfig {
            reorder_packets: 3,
            ..cfg()
        });
        g.start_at(1);
        g.on_seq(t0, 1).unwrap();
        g.on_seq(t0, 3).unwrap(); // gap 2, one seq beyond it
        g.on_seq(t0, 4).unwrap();
        assert_eq!(
            g.poll_nack(t0 + ms(1)),
            None,
            "two beyond: may still be reordering"
        );
        g.on_seq(t0 + ms(1), 6).unwrap(); // gap 5; three beyond gap 2
        assert_eq!(g.poll_timeout(), Some(t0 + ms(1)));
        assert_eq!(g.poll_nack(t0 + ms(1)), Some(vec![SeqRange::single(2)]));
        // Gap 5 (opened at 1 ms) waits for its own threshold or the delay.
        assert_eq!(g.poll_timeout(), Some(t0 + ms(6)));
        g.on_seq(t0 + ms(2), 8).unwrap();
        assert_eq!(g.poll_nack(t0 + ms(2)), Some(vec![SeqRange::single(5)]));
        // Each gap on its own count; one already NACKed is not made due again.
        g.on_seq(t0 + ms(3), 11).unwrap();
        assert_eq!(g.poll_nack(t0 + ms(3)), Some(vec![SeqRange::single(7)]));
        g.on_seq(t0 + ms(3), 12).unwrap();
        assert_eq!(g.poll_nack(t0 + ms(3)), None, "9..=10 has 2 beyond it");
        g.on_seq(t0 + ms(3), 13).unwrap();
        assert_eq!(g.poll_nack(t0 + ms(3)), Some(vec![SeqRange::new(9, 10)]),);
    }

    #[test]
    fn nack_after_delay_many_ranges_with_backoff() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(cfg());
        g.start_at(1);
        for s in [1, 3, 6, 10] {
            g.on_seq(t0, s).unwrap();
        }
        assert_eq!(g.poll_timeout(), Some(t0 + ms(5)));
        let n = g.poll_nack(t0 + ms(5)).unwrap();
        assert_eq!(
            n,
            vec![
                SeqRange::single(2),
                SeqRange::new(4, 5),
                SeqRange::new(7, 9)
            ]
        );
        // Not repeated before the retry interval; then repeated; then backed off (x2).
        assert_eq!(g.poll_nack(t0 + ms(24)), None);
        assert_eq!(g.poll_nack(t0 + ms(25)).unwrap().len(), 3);
        assert_eq!(g.poll_nack(t0 + ms(64)), None);
        assert_eq!(g.poll_nack(t0 + ms(65)).unwrap().len(), 3);
        assert_eq!(g.nacked_ranges(), 9);
        assert_eq!(g.max_attempts(), 3);
    }

    #[test]
    fn repair_splits_a_gap_keeping_its_timer() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(cfg());
        g.start_at(1);
        g.on_seq(t0, 10).unwrap(); // gap 1..=9
        g.on_seq(t0 + ms(1), 5).unwrap(); // splits into 1..=4 and 6..=9
        assert_eq!(
            g.missing().collect::<Vec<_>>(),
            vec![SeqRange::new(1, 4), SeqRange::new(6, 9)]
        );
        assert!(!g.is_nacked(4), "not asked for yet");
        let n = g.poll_nack(t0 + ms(5)).unwrap();
        assert_eq!(n.len(), 2);
        assert!(g.is_nacked(4) && !g.is_nacked(5) && g.is_nacked(9) && !g.is_nacked(10));
        assert_eq!(g.on_seq(t0, 5), Ok(Arrival::Duplicate));
    }

    #[test]
    fn a_gap_that_is_filling_is_not_asked_again() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(cfg());
        g.start_at(1);
        g.on_seq(t0, 1).unwrap();
        g.on_seq(t0, 100).unwrap(); // gap 2..=99
        assert_eq!(g.poll_nack(t0 + ms(5)), Some(vec![SeqRange::new(2, 99)]));
        // The answer streams in: each arrival pushes the repeat out by a retry interval.
        for (i, seq) in (2..=50).enumerate() {
            g.on_seq(t0 + ms(10 + i as u64), seq).unwrap();
        }
        let last_fill = t0 + ms(10 + 48);
        assert_eq!(g.poll_nack(last_fill + ms(19)), None, "still filling");
        assert_eq!(g.poll_timeout(), Some(last_fill + ms(20)));
        // Silence for a retry interval: the rest is asked again.
        assert_eq!(
            g.poll_nack(last_fill + ms(20)),
            Some(vec![SeqRange::new(51, 99)])
        );
    }

    #[test]
    fn heartbeat_head_detects_tail_loss() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(cfg());
        g.start_at(1);
        g.on_seq(t0, 1).unwrap();
        g.on_head(t0, 4).unwrap();
        assert_eq!(g.poll_nack(t0 + ms(5)).unwrap(), vec![SeqRange::new(2, 4)]);
        // A stale (lower) head changes nothing.
        g.on_head(t0, 2).unwrap();
        assert_eq!(g.known_head(), 4);
    }

    #[test]
    fn overlapping_unavailable_ranges_report_only_what_was_missing() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(cfg());
        g.start_at(1);
        for s in [1, 4, 8] {
            g.on_seq(t0, s).unwrap();
        }
        // Missing: 2..=3, 5..=7. Unavailable 3..=6 overlaps both.
        let lost = g.resolve_lost(SeqRange::new(3, 6));
        assert_eq!(lost, vec![SeqRange::single(3), SeqRange::new(5, 6)]);
        assert_eq!(
            g.missing().collect::<Vec<_>>(),
            vec![SeqRange::single(2), SeqRange::single(7)]
        );
        // Overlapping again changes nothing.
        assert!(g.resolve_lost(SeqRange::new(3, 6)).is_empty());
    }

    #[test]
    fn lying_peer_is_a_violation() {
        let t0 = Instant::now();
        let mut g = GapTracker::new(cfg());
        g.start_at(1);
        assert!(g.on_seq(t0, 5000).is_err());
        assert!(g.on_head(t0, u64::MAX).is_err());
        assert_eq!(g.next_expected(), 1);
        assert_eq!(g.missing().count(), 0);
    }

    #[test]
    fn reassembler_delivers_in_order_exactly_once() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(1, cfg(), 100);
        let mut out = Vec::new();
        r.start_at(t0, 1, &mut out).unwrap();
        for s in [2, 1, 1, 4, 3, 3, 5] {
            r.on_tick(t0, tick(s), &mut out).unwrap();
        }
        assert_eq!(seqs(&out), vec!["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn reassembler_reports_lost_in_place() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(1, cfg(), 100);
        let mut out = Vec::new();
        r.start_at(t0, 10, &mut out).unwrap();
        r.on_head(t0, 15).unwrap();
        r.on_unavailable(SeqRange::new(1, 12), &mut out);
        for s in [14, 13, 15] {
            r.on_tick(t0, tick(s), &mut out).unwrap();
        }
        assert_eq!(seqs(&out), vec!["lost 10..=12", "13", "14", "15"]);
    }

    #[test]
    fn reassembler_replays_early_ticks_after_start() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(1, cfg(), 100);
        let mut out = Vec::new();
        r.on_tick(t0, tick(7), &mut out).unwrap();
        r.on_tick(t0, tick(5), &mut out).unwrap();
        assert!(out.is_empty());
        r.start_at(t0, 6, &mut out).unwrap();
        assert!(out.is_empty(), "7 waits for 6; 5 is before the start");
        r.on_tick(t0, tick(6), &mut out).unwrap();
        assert_eq!(seqs(&out), vec!["6", "7"]);
    }

    #[test]
    fn reassembler_bounded_hold_reports_overflow_as_lost() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(1, cfg(), 3);
        let mut out = Vec::new();
        r.start_at(t0, 1, &mut out).unwrap();
        for s in 3..=6 {
            r.on_tick(t0, tick(s), &mut out).unwrap();
        }
        assert_eq!(seqs(&out), vec!["lost 1..=2", "3", "4", "5", "6"]);
    }
}
