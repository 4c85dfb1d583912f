//! The runtime clock: [`TokioClock`], the [`Clock`] every real node is given.
//!
//! Owns the one bridge from tokio's clock to `tickcast_proto::Clock`. Both readings follow
//! tokio time, so under a paused tokio runtime (netsim) they are virtual and advance only
//! when tokio's clock does; in a normal runtime they follow real time.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tickcast_proto::Clock;

/// A [`Clock`] driven by tokio's clock.
///
/// `now()` is `tokio::time::Instant::now()`; `unix_micros()` is the wall time read once at
/// construction plus the tokio time elapsed since, so it is monotone (it never jumps with
/// NTP adjustments) and virtual under paused time.
#[derive(Debug, Clone)]
pub struct TokioClock {
    base_instant: tokio::time::Instant,
    base_unix_micros: u64,
}

impl TokioClock {
    /// A clock whose wall time starts at the system's current time.
    ///
    /// This reads `SystemTime::now()` once; it is the only ambient time read in this type.
    pub fn new() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self::starting_at(micros)
    }

    /// A clock whose wall time starts at `unix_micros` (for reproducible simulations).
    pub fn starting_at(unix_micros: u64) -> Self {
        Self {
            base_instant: tokio::time::Instant::now(),
            base_unix_micros: unix_micros,
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn unix_micros(&self) -> u64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.base_instant);
        let elapsed = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.base_unix_micros.saturating_add(elapsed)
    }
}

/// A new [`TokioClock`] as the shared handle nodes hold.
pub fn shared() -> Arc<dyn Clock> {
    Arc::new(TokioClock::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = TokioClock::starting_at(1_000_000);
        let t0 = clock.now();
        assert_eq!(clock.unix_micros(), 1_000_000);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(clock.now() - t0, Duration::from_millis(1500));
        assert_eq!(clock.unix_micros(), 2_500_000);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.unix_micros(), 3_602_500_000);
    }

    #[tokio::test]
    async fn real_time_is_monotone_and_near_wall_clock() {
        let clock = shared();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        let a = clock.unix_micros();
        assert!(a.abs_diff(wall) < 5_000_000, "clock {a} vs wall {wall}");
        let t = clock.now();
        let mut prev = a;
        for _ in 0..1000 {
            let next = clock.unix_micros();
            assert!(next >= prev);
            prev = next;
        }
        assert!(clock.now() >= t);
    }
}
