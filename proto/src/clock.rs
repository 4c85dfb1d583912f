//! The clock handle every node is given. Library code never reads ambient time: it asks
//! its [`Clock`], so the netsim harness can run the same code in virtual time.

use std::time::Instant;

/// A source of monotonic and wall-clock time, injected into every node.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Monotonic "now", used for timers (reorder delays, heartbeats, back-off).
    fn now(&self) -> Instant;
    /// Wall-clock microseconds since the UNIX epoch, used for tick origin timestamps and
    /// latency measurement across nodes.
    fn unix_micros(&self) -> u64;
}
