//! Where a tick is numbered: the origin's sequencer gives each channel contiguous seqs from
//! 1 and stamps the origin time and epoch.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::tick::{ChannelId, Seq, Tick};

/// Numbers ticks per channel. Owned by the origin; nothing else assigns seqs.
#[derive(Debug, Clone)]
pub struct Sequencer {
    epoch: u32,
    next: BTreeMap<ChannelId, Seq>,
}

impl Sequencer {
    /// A sequencer for `channels`, each starting at seq 1, under `epoch`.
    pub fn new(epoch: u32, channels: impl IntoIterator<Item = ChannelId>) -> Self {
        Sequencer {
            epoch,
            next: channels.into_iter().map(|c| (c, 1)).collect(),
        }
    }

    /// Continues numbering after `head` on `channel` (a standby origin taking over).
    pub fn resume(&mut self, channel: ChannelId, head: Seq) {
        self.next.insert(channel, head + 1);
    }

    /// The epoch stamped on every tick.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Highest seq given out on `channel` (0 before the first).
    pub fn head(&self, channel: ChannelId) -> Option<Seq> {
        self.next.get(&channel).map(|n| n - 1)
    }

    /// Numbers one tick; `None` if the channel is not configured.
    pub fn next(&mut self, channel: ChannelId, origin_us: u64, payload: Bytes) -> Option<Tick> {
        let next = self.next.get_mut(&channel)?;
        let seq = *next;
        *next += 1;
        Some(Tick {
            channel,
            seq,
            epoch: self.epoch,
            origin_us,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_each_channel_from_one_without_holes() {
        let mut s = Sequencer::new(1, [1, 2]);
        let a: Vec<_> = (0..3)
            .map(|_| s.next(1, 5, Bytes::new()).unwrap().seq)
            .collect();
        assert_eq!(a, vec![1, 2, 3]);
        assert_eq!(s.next(2, 5, Bytes::new()).unwrap().seq, 1);
        assert_eq!(s.head(1), Some(3));
        assert!(s.next(9, 5, Bytes::new()).is_none());
        s.resume(2, 41);
        assert_eq!(s.next(2, 5, Bytes::new()).unwrap().seq, 42);
    }
}
