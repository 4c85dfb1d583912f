//! tickcast client: the crate consumer applications link.
//!
//! - [`Client`] subscribes to channels through one of several candidate relays and yields,
//!   per channel, an in-order, exactly-once stream of [`Event`]s: ticks, explicit `Lost`
//!   ranges (never a silent skip), and connection changes. It repairs gaps by NACK,
//!   notices a dead upstream from missed heartbeats, fails over to the next candidate and
//!   resumes from its last delivered seq.
//! - [`Publisher`] sends ticks into the origin over QUIC, resending what the origin has not
//!   acknowledged after a reconnect.
//! - [`link`] is the upstream connection machinery (connect, hello, failover, liveness)
//!   shared with relays, which subscribe to their parent the same way.
//!
//! All I/O is injected: the caller supplies the quinn `Endpoint`, the clock and a
//! shutdown token.

pub mod frames;
pub mod link;
pub mod publisher;
pub mod subscriber;

pub use link::Upstream;
pub use publisher::{Publisher, PublisherConfig, PublisherError};
pub use subscriber::{Client, ClientConfig, ClientStats, Event, Subscription};
