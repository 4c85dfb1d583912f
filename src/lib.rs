//! The `tickcast` command's library half: building nodes from a topology ([`net`]) and
//! checking what consumers receive ([`tally`]). The binary, the end-to-end tests and the
//! benchmark all start networks through here, so they run the same wiring.

pub mod net;
pub mod tally;
