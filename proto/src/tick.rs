//! What a tick is: one numbered message of one channel, plus sequence ranges.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies a channel (an independent, separately numbered stream of ticks).
pub type ChannelId = u32;
/// A per-channel sequence number. The first tick of a channel is 1; numbering has no holes.
pub type Seq = u64;

/// Largest payload a tick may carry (256 KiB).
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// One market-data message as every node sees it.
///
/// `payload` is a [`Bytes`] view: relays forward it without copying or re-encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The channel this tick belongs to.
    pub channel: ChannelId,
    /// Position in the channel, from 1, contiguous.
    pub seq: Seq,
    /// Origin epoch that numbered this tick (raised when a standby origin takes over).
    pub epoch: u32,
    /// Wall-clock microseconds since the UNIX epoch at which the origin numbered the tick.
    pub origin_us: u64,
    /// Opaque application payload, 0 to [`MAX_PAYLOAD`] bytes.
    pub payload: Bytes,
}

impl Tick {
    /// Bytes this tick counts against ring limits (payload plus fixed header).
    pub fn weight(&self) -> usize {
        self.payload.len() + crate::codec::TICK_HEADER_LEN
    }
}

/// An inclusive range of sequence numbers `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeqRange {
    /// First sequence number in the range.
    pub first: Seq,
    /// Last sequence number in the range (inclusive).
    pub last: Seq,
}

impl SeqRange {
    /// The range `first..=last`. Callers keep `first <= last`.
    pub fn new(first: Seq, last: Seq) -> Self {
        debug_assert!(first <= last, "empty range {first}..={last}");
        SeqRange { first, last }
    }

    /// A range holding one sequence number.
    pub fn single(seq: Seq) -> Self {
        SeqRange {
            first: seq,
            last: seq,
        }
    }

    /// Number of sequence numbers in the range.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Always false: a range holds at least one number. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `seq` is inside the range.
    pub fn contains(&self, seq: Seq) -> bool {
        self.first <= seq && seq <= self.last
    }

    /// The part of `self` that is also in `other`, if any.
    pub fn intersect(&self, other: &SeqRange) -> Option<SeqRange> {
        let first = self.first.max(other.first);
        let last = self.last.min(other.last);
        (first <= last).then_some(SeqRange { first, last })
    }
}

impl std::fmt::Display for SeqRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..={}", self.first, self.last)
        }
    }
}
