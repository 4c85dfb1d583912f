//! The transport crate's error type.
//!
//! Owns [`TransportError`], the one error every fallible function of this crate returns.
//! Every variant names what failed (a path, an address, a peer name) and carries causes as
//! strings so the error is `Clone` and can fan out to many subscribers.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What went wrong while setting up or checking QUIC/TLS.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// A certificate or key file is missing or cannot be read.
    #[error("cannot read {}: {reason}", path.display())]
    CertFileUnreadable {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A certificate or key file could not be written (or its directory created).
    #[error("cannot write {}: {reason}", path.display())]
    CertFileWrite {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A file was readable but does not hold the expected PEM section.
    #[error("bad PEM in {}: {reason}", path.display())]
    BadPem {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating or signing a certificate failed.
    #[error("certificate generation failed: {0}")]
    CertGeneration(String),
    /// A rustls or quinn configuration could not be built.
    #[error("TLS configuration error: {0}")]
    TlsConfig(String),
    /// A caller-supplied argument is out of range or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The UDP socket could not be bound or wrapped, or the endpoint could not be created.
    #[error("cannot bind {addr}: {reason}")]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The I/O error.
        reason: String,
    },
    /// The peer presented no usable certificate, or one not valid for the claimed name.
    #[error("peer certificate for {name:?} rejected: {reason}")]
    PeerCertificate {
        /// The name the peer claimed (or was expected to have).
        name: String,
        /// Why the certificate does not prove that name.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_subject() {
        let e = TransportError::CertFileUnreadable {
            path: PathBuf::from("/x/relay-a.pem"),
            reason: "No such file or directory".into(),
        };
        assert!(e.to_string().contains("/x/relay-a.pem"), "{e}");
        let e = TransportError::PeerCertificate {
            name: "relay-a".into(),
            reason: "not valid for this name".into(),
        };
        assert!(e.to_string().contains("relay-a"), "{e}");
        let e = TransportError::Bind {
            addr: "127.0.0.1:4433".parse().unwrap(),
            reason: "address in use".into(),
        };
        assert!(e.to_string().contains("127.0.0.1:4433"), "{e}");
    }
}
