//! tickcast protocol core: wire types, the codec, and the sans-IO state machines.
//!
//! This crate owns everything about tickcast that can be decided without a socket or a
//! runtime: what a tick is ([`tick`]), how frames look on the wire ([`codec`]), how the
//! origin numbers ticks ([`sequencer`]), how every node keeps recent ticks ([`ring`]), how a
//! receiver finds and repairs gaps ([`gap`]), and what a network looks like
//! ([`topology`]). It must not depend on tokio or quinn: time comes in as arguments.

pub mod clock;
pub mod codec;
pub mod gap;
pub mod ring;
pub mod sequencer;
pub mod tick;
pub mod topology;

pub use clock::Clock;
pub use tick::{ChannelId, Seq, SeqRange, Tick};
