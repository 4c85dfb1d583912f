//! The synthetic feed: ticks at a set rate and size, optionally with bursts, for demos and
//! benchmarks. Each payload starts with its scheduled send time, so receivers can measure
//! end-to-end latency against the schedule (not against when the generator got around to
//! it), and its index in the feed.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tickcast_proto::{ChannelId, Clock};
use tokio_util::sync::CancellationToken;

use crate::{IngestError, OriginHandle};

/// Where generated ticks go: the origin's embedded handle, or anything else that takes
/// ticks (netsim drives a QUIC publisher with it).
pub trait Sink: Send {
    /// Why a tick was not taken.
    type Error;
    /// Takes one tick; may wait (back-pressure).
    fn publish(
        &mut self,
        channel: ChannelId,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl Sink for OriginHandle {
    type Error = IngestError;
    fn publish(
        &mut self,
        channel: ChannelId,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), IngestError>> + Send {
        OriginHandle::publish(self, channel, payload)
    }
}

/// Bytes of the synthetic header at the front of each payload.
pub const HEADER: usize = 16;

/// A burst: `count` extra ticks at once, every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Interval between bursts.
    pub every: Duration,
    /// Ticks per burst.
    pub count: u64,
}

/// What the generator sends.
#[derive(Debug, Clone)]
pub struct SyntheticConfig {
    /// Channel to publish on.
    pub channel: ChannelId,
    /// Steady rate, ticks per second.
    pub rate: f64,
    /// Payload size in bytes (at least [`HEADER`]; smaller sizes are raised to it).
    pub payload_size: usize,
    /// Optional bursts on top of the steady rate.
    pub burst: Option<Burst>,
    /// Stop after this long (None: until shutdown).
    pub duration: Option<Duration>,
}

/// The scheduled send time (unix µs) and feed index a synthetic payload carries.
pub fn decode_header(payload: &[u8]) -> Option<(u64, u64)> {
    if payload.len() < HEADER {
        return None;
    }
    let at = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let idx = u64::from_le_bytes(payload[8..16].try_into().ok()?);
    Some((at, idx))
}

fn payload(size: usize, at_us: u64, idx: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(HEADER));
    b.put_u64_le(at_us);
    b.put_u64_le(idx);
    b.resize(size.max(HEADER), 0xA5);
    b.freeze()
}

/// Publishes into the origin on schedule until the duration ends or `shutdown`; returns
/// ticks sent.
pub async fn run(
    cfg: SyntheticConfig,
    mut origin: OriginHandle,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<u64, IngestError> {
    run_into(cfg, &mut origin, clock, shutdown).await
}

/// Publishes into `sink` on schedule until the duration ends or `shutdown`; returns ticks
/// sent. Wakes every millisecond and sends everything due by then (timers are no finer).
pub async fn run_into<S: Sink>(
    cfg: SyntheticConfig,
    sink: &mut S,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<u64, S::Error> {
    let start = clock.now();
    let start_us = clock.unix_micros();
    let period_us = 1e6 / cfg.rate.max(1e-9);
    let mut sent = 0u64;
    let mut steady_sent = 0u64;
    let mut bursts_sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(sent),
            _ = tick.tick() => {}
        }
        let elapsed = clock.now().duration_since(start);
        let end = cfg.duration.is_some_and(|d| elapsed >= d);
        let horizon = cfg.duration.map_or(elapsed, |d| elapsed.min(d));
        // Steady ticks are scheduled on the rate grid.
        // Tick k is scheduled at k·period: once that instant has passed, it is due.
        let steady_due = (horizon.as_secs_f64() * cfg.rate).floor() as u64 + 1;
        let steady_due = match cfg.duration {
            // A run of duration d sends exactly d·rate steady ticks.
            Some(d) => steady_due.min((d.as_secs_f64() * cfg.rate).round() as u64),
            None => steady_due,
        };
        while steady_sent < steady_due {
            let at = start_us + (steady_sent as f64 * period_us) as u64;
            sink.publish(cfg.channel, payload(cfg.payload_size, at, sent))
                .await?;
            steady_sent += 1;
            sent += 1;
        }
        // Burst ticks are all scheduled at their burst's instant.
        if let Some(b) = cfg.burst {
            let every = b.every.as_micros().max(1) as u64;
            let bursts_due = horizon.as_micros() as u64 / every;
            while bursts_sent < bursts_due {
                bursts_sent += 1;
                let at = start_us + bursts_sent * every;
                for _ in 0..b.count {
                    sink.publish(cfg.channel, payload(cfg.payload_size, at, sent))
                        .await?;
                    sent += 1;
                }
            }
        }
        if end {
            return Ok(sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let p = payload(100, 123, 7);
        assert_eq!(p.len(), 100);
        assert_eq!(decode_header(&p), Some((123, 7)));
        assert_eq!(payload(3, 1, 2).len(), HEADER);
        assert_eq!(decode_header(b"short"), None);
    }
}
