//! tickcast QUIC/TLS glue shared by origin, relay, client and tests.
//!
//! This crate is the one place that knows how tickcast nodes talk QUIC: the private CA and
//! node certificates ([`certs`]), endpoint and TLS configuration with mutual authentication
//! and the application close codes ([`endpoint`]), the tokio-driven [`Clock`](tickcast_proto::Clock)
//! ([`clock`]), a lossy socket for tests ([`lossy`]), redundant datagrams for the repair path
//! ([`redundant`]) and the error type ([`error`]). It knows
//! nothing about tickcast frames; those live in `tickcast-proto`.

pub mod certs;
pub mod clock;
pub mod endpoint;
pub mod error;
pub mod lossy;
pub mod redundant;

/// The ALPN protocol id, naming the protocol and its version.
pub const ALPN: &[u8] = b"tickcast/1";

pub use certs::{Identity, Pki, load_ca, load_identity, write_certs};
pub use clock::TokioClock;
pub use endpoint::{
    CLOSE_LAGGING, CLOSE_OK, CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_VERSION, Congestion, QuicTuning,
    bind, client_config, close_code_name, peer_names, server_config, verify_peer_name,
};
pub use error::TransportError;
pub use lossy::{LossStats, LossySocket, bind_lossy};
pub use redundant::send_datagram_copies;
