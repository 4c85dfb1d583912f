//! The ring buffer every origin and relay keeps per channel: the recent ticks, bounded by
//! count and by bytes, looked up by seq to answer NACKs and resume requests.
//!
//! Ticks may be inserted out of order (a relay forwards and stores whatever arrives first
//! and fills holes when repairs come in); eviction always removes the lowest seq.

use std::collections::VecDeque;

use crate::tick::{Seq, SeqRange, Tick};
use crate::topology::RingLimits;

/// Result of [`Ring::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored.
    Stored,
    /// Already present: not stored again.
    Duplicate,
    /// Older than everything the ring may still hold: not stored.
    TooOld,
}

/// What the ring can say about a requested range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// Ticks of the range the ring holds, ascending.
    pub ticks: Vec<Tick>,
    /// The part of the range below the ring's floor (evicted or never held).
    pub evicted: Option<SeqRange>,
    /// Parts of the range at or above the floor that the ring does not hold (holes).
    pub holes: Vec<SeqRange>,
}

/// Recent ticks of one channel, ascending by seq, bounded by [`RingLimits`].
#[derive(Debug, Clone)]
pub struct Ring {
    limits: RingLimits,
    ticks: VecDeque<Tick>,
    bytes: usize,
    /// Lowest seq the ring could still hold; everything below was evicted or skipped.
    floor: Seq,
    evicted: u64,
}

impl Ring {
    /// An empty ring whose first storable seq is `floor` (1 for a fresh channel).
    pub fn new(limits: RingLimits, floor: Seq) -> Self {
        Ring {
            limits,
            ticks: VecDeque::new(),
            bytes: 0,
            floor: floor.max(1),
            evicted: 0,
        }
    }

    /// Stores a tick, evicting the oldest ones while over a limit.
    pub fn insert(&mut self, tick: Tick) -> Insert {
        if tick.seq < self.floor {
            return Insert::TooOld;
        }
        // Arrivals are nearly always at or near the back: search from there.
        let pos = match self.ticks.back() {
            None => 0,
            Some(b) if b.seq < tick.seq => self.ticks.len(),
            Some(_) => match self.ticks.binary_search_by_key(&tick.seq, |t| t.seq) {
                Ok(_) => return Insert::Duplicate,
                Err(p) => p,
            },
        };
        self.bytes += tick.weight();
        self.ticks.insert(pos, tick);
        while self.ticks.len() > self.limits.max_ticks || self.bytes > self.limits.max_bytes {
            let Some(old) = self.ticks.pop_front() else {
                break;
            };
            self.bytes -= old.weight();
            self.floor = old.seq + 1;
            self.evicted += 1;
        }
        Insert::Stored
    }

    /// Drops every tick above `seq` (a standby origin discarding what the dead primary
    /// numbered but never confirmed: the new epoch numbers those seqs afresh).
    pub fn truncate_above(&mut self, seq: Seq) {
        while self.ticks.back().is_some_and(|t| t.seq > seq) {
            let t = self.ticks.pop_back().expect("non-empty");
            self.bytes -= t.weight();
        }
    }

    /// Lowest seq still retrievable (the floor); ranges below it are gone.
    pub fn floor(&self) -> Seq {
        self.floor
    }

    /// Oldest seq held, if any.
    pub fn oldest(&self) -> Option<Seq> {
        self.ticks.front().map(|t| t.seq)
    }

    /// Highest seq held, if any.
    pub fn newest(&self) -> Option<Seq> {
        self.ticks.back().map(|t| t.seq)
    }

    /// Number of ticks held.
    pub fn len(&self) -> usize {
        self.ticks.len()
    }

    /// Whether the ring holds nothing.
    pub fn is_empty(&self) -> bool {
        self.ticks.is_empty()
    }

    /// Bytes held (payloads plus headers).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Ticks evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The tick with this seq, if held.
    pub fn get(&self, seq: Seq) -> Option<&Tick> {
        self.ticks
            .binary_search_by_key(&seq, |t| t.seq)
            .ok()
            .map(|i| &self.ticks[i])
    }

    /// Splits `range` into what the ring holds, what fell below its floor, and holes.
    /// At most `max_ticks` ticks are returned; the rest of the range is left out of all
    /// three parts, so a caller can answer a huge request in slices.
    pub fn lookup(&self, range: SeqRange, max_ticks: usize) -> Lookup {
        let mut out = Lookup::default();
        let mut from = range.first;
        if from < self.floor {
            let last = range.last.min(self.floor - 1);
            out.evicted = Some(SeqRange::new(from, last));
            if last == range.last {
                return out;
            }
            from = last + 1;
        }
        let start = self.ticks.partition_point(|t| t.seq < from);
        let mut expect = from;
        for t in self.ticks.range(start..) {
            if t.seq > range.last || out.ticks.len() == max_ticks {
                break;
            }
            if t.seq > expect {
                out.holes.push(SeqRange::new(expect, t.seq - 1));
            }
            out.ticks.push(t.clone());
            expect = t.seq + 1;
        }
        if out.ticks.len() < max_ticks && expect <= range.last {
            out.holes.push(SeqRange::new(expect, range.last));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn tick(seq: Seq, len: usize) -> Tick {
        Tick {
            channel: 1,
            seq,
            epoch: 1,
            origin_us: 0,
            payload: Bytes::from(vec![0u8; len]),
        }
    }

    fn limits(max_ticks: usize, max_bytes: usize) -> RingLimits {
        RingLimits {
            max_ticks,
            max_bytes,
        }
    }

    #[test]
    fn evicts_by_count() {
        let mut r = Ring::new(limits(3, 1 << 20), 1);
        for s in 1..=5 {
            assert_eq!(r.insert(tick(s, 10)), Insert::Stored);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.oldest(), Some(3));
        assert_eq!(r.floor(), 3);
        assert_eq!(r.evicted(), 2);
        assert_eq!(r.insert(tick(2, 10)), Insert::TooOld);
    }

    #[test]
    fn evicts_by_bytes() {
        let w = tick(1, 100).weight();
        let mut r = Ring::new(limits(1000, 2 * w + w / 2), 1);
        for s in 1..=4 {
            r.insert(tick(s, 100));
        }
        assert_eq!(r.len(), 2);
        assert_eq!(r.bytes(), 2 * w);
        assert_eq!(r.oldest(), Some(3));
        // One huge tick pushes everything else out but is itself kept only if it fits.
        r.insert(tick(5, 3 * w));
        assert_eq!(r.len(), 0);
        assert_eq!(r.floor(), 6);
    }

    #[test]
    fn out_of_order_insert_and_duplicates() {
        let mut r = Ring::new(limits(10, 1 << 20), 1);
        for s in [1, 2, 5, 4, 7] {
            assert_eq!(r.insert(tick(s, 1)), Insert::Stored);
        }
        assert_eq!(r.insert(tick(4, 1)), Insert::Duplicate);
        assert_eq!(r.insert(tick(7, 1)), Insert::Duplicate);
        let seqs: Vec<_> = r
            .lookup(SeqRange::new(1, 7), 100)
            .ticks
            .iter()
            .map(|t| t.seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 4, 5, 7]);
        assert_eq!(r.get(5).map(|t| t.seq), Some(5));
        assert!(r.get(3).is_none());
        r.truncate_above(4);
        assert_eq!(r.newest(), Some(4));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn lookup_splits_held_evicted_and_holes() {
        let mut r = Ring::new(limits(5, 1 << 20), 1);
        for s in [3, 4, 5, 6, 7, 9] {
            r.insert(tick(s, 1));
        }
        // 3 was evicted by count (6 ticks > 5): floor is 4.
        let l = r.lookup(SeqRange::new(1, 12), 100);
        assert_eq!(l.evicted, Some(SeqRange::new(1, 3)));
        assert_eq!(
            l.ticks.iter().map(|t| t.seq).collect::<Vec<_>>(),
            vec![4, 5, 6, 7, 9]
        );
        assert_eq!(l.holes, vec![SeqRange::single(8), SeqRange::new(10, 12)]);
        let l = r.lookup(SeqRange::new(1, 2), 100);
        assert_eq!(l.evicted, Some(SeqRange::new(1, 2)));
        assert!(l.ticks.is_empty() && l.holes.is_empty());
        // Sliced answer: only two ticks, nothing claimed past them.
        let l = r.lookup(SeqRange::new(4, 12), 2);
        assert_eq!(l.ticks.len(), 2);
        assert!(l.holes.is_empty());
    }
}
