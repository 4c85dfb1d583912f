//! Node wiring shared by the `tickcast` binary, netsim and the end-to-end tests: building
//! nodes from a topology ([`net`]) and checking what consumers receive ([`tally`]).

pub mod net;
pub mod tally;
