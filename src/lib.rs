//! The `tickcast` command's library half. The wiring lives in `tickcast-node` so that netsim
//! can run the very same nodes; it is re-exported here under its old paths.

pub use tickcast_node::{net, tally};
