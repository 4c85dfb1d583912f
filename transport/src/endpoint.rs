//! QUIC endpoints: TLS configs, transport tuning, binding, peer-name checks, close codes.
//!
//! Owns how every tickcast node talks QUIC: TLS 1.3 only with the ALPN [`crate::ALPN`]
//! `tickcast/1`, mutual authentication against the private CA only (no platform roots),
//! the ring crypto provider installed per config (never a process-global default), the
//! transport tuning ([`QuicTuning`]), binding a real UDP socket ([`bind`]), checking the
//! name a peer's certificate proves ([`verify_peer_name`]), and the application close codes.
//! It does not read or write certificate files ([`crate::certs`]) and knows nothing about
//! tickcast frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{TransportConfig, VarInt};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::{debug, warn};

use crate::ALPN;
use crate::certs::Identity;
use crate::error::TransportError;

/// Application close code: normal shutdown.
pub const CLOSE_OK: VarInt = VarInt::from_u32(0);
/// Application close code: malformed frame or other protocol violation.
pub const CLOSE_PROTOCOL: VarInt = VarInt::from_u32(1);
/// Application close code: authentication or role refused.
pub const CLOSE_REFUSED: VarInt = VarInt::from_u32(2);
/// Application close code: slow consumer cut off.
pub const CLOSE_LAGGING: VarInt = VarInt::from_u32(3);
/// Application close code: unsupported protocol version.
pub const CLOSE_VERSION: VarInt = VarInt::from_u32(4);

/// A short name for an application close code, for logs (`"unknown"` if not ours).
pub fn close_code_name(code: VarInt) -> &'static str {
    match code.into_inner() {
        0 => "ok",
        1 => "protocol",
        2 => "refused",
        3 => "lagging",
        4 => "version",
        _ => "unknown",
    }
}

/// Requested kernel UDP receive buffer (best effort; the kernel may cap it).
pub const SOCKET_RECV_BUFFER: usize = 8 << 20;
/// Requested kernel UDP send buffer (best effort; the kernel may cap it).
pub const SOCKET_SEND_BUFFER: usize = 4 << 20;

/// QUIC congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    /// quinn's BBR: the default. Random loss is not taken for congestion, so a lossy WAN
    /// link keeps its rate (netsim's `lossy` scenario: Cubic's backlog grew to seconds at
    /// 1 % loss and 216 ms RTT; BBR stayed at the floor).
    #[default]
    Bbr,
    /// quinn's Cubic (its own default).
    Cubic,
    /// NewReno.
    NewReno,
}

/// QUIC transport knobs shared by servers and clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicTuning {
    /// Connection idle timeout (the smaller of both sides' values applies). Default 10 s.
    pub idle_timeout: Duration,
    /// Interval of QUIC keep-alive PINGs. Default 1 s.
    pub keep_alive: Duration,
    /// Bytes of received DATAGRAMs buffered before the oldest are dropped. Default 8 MiB.
    pub datagram_recv_buffer: usize,
    /// Bytes of outgoing DATAGRAMs buffered before the oldest are dropped. Default 4 MiB.
    pub datagram_send_buffer: usize,
    /// Per-stream receive window in bytes. The connection-wide receive and send windows are
    /// four times this. Default 8 MiB.
    pub stream_window: u64,
    /// Maximum concurrent unidirectional streams the peer may open. Default 1024.
    pub max_uni_streams: u32,
    /// Largest UDP payload path-MTU discovery may probe for. Default 8952 (jumbo frames):
    /// discovery settles on what the path really carries (about 1452 on the Internet), so
    /// this only lets paths that allow more (loopback, jumbo-frame LANs) batch more ticks
    /// into each packet.
    pub mtu_upper_bound: u16,
    /// Congestion controller. Default BBR.
    pub congestion: Congestion,
}

impl Default for QuicTuning {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(1),
            datagram_recv_buffer: 8 << 20,
            datagram_send_buffer: 4 << 20,
            stream_window: 8 << 20,
            max_uni_streams: 1024,
            mtu_upper_bound: 8952,
            congestion: Congestion::default(),
        }
    }
}

impl QuicTuning {
    /// Builds the quinn transport config for these knobs.
    pub fn transport_config(&self) -> Result<TransportConfig, TransportError> {
        let bad = |what: &str| TransportError::InvalidArgument(format!("QuicTuning: {what}"));
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return Err(bad(
                "keep_alive must be non-zero and shorter than idle_timeout",
            ));
        }
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| bad("idle_timeout too large"))?;
        let stream_window =
            VarInt::from_u64(self.stream_window).map_err(|_| bad("stream_window too large"))?;
        let conn_window = self
            .stream_window
            .checked_mul(4)
            .ok_or_else(|| bad("stream_window too large"))?;
        let conn_recv_window =
            VarInt::from_u64(conn_window).map_err(|_| bad("stream_window too large"))?;
        let mut cfg = TransportConfig::default();
        cfg.max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive))
            .datagram_receive_buffer_size(Some(self.datagram_recv_buffer))
            .datagram_send_buffer_size(self.datagram_send_buffer)
            .stream_receive_window(stream_window)
            .receive_window(conn_recv_window)
            .send_window(conn_window)
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_uni_streams));
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_upper_bound.max(1200));
        cfg.mtu_discovery_config(Some(mtu));
        match self.congestion {
            Congestion::Bbr => {
                cfg.congestion_controller_factory(
                    Arc::new(quinn::congestion::BbrConfig::default()),
                );
            }
            Congestion::Cubic => {
                cfg.congestion_controller_factory(Arc::new(
                    quinn::congestion::CubicConfig::default(),
                ));
            }
            Congestion::NewReno => {
                cfg.congestion_controller_factory(Arc::new(
                    quinn::congestion::NewRenoConfig::default(),
                ));
            }
        }
        Ok(cfg)
    }
}

fn tls_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::TlsConfig(e.to_string())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, TransportError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| TransportError::TlsConfig(format!("CA certificate rejected: {e}")))?;
    Ok(Arc::new(roots))
}

/// Builds a server config: TLS 1.3 only, ALPN `tickcast/1`, serving `id`, and REQUIRING a
/// client certificate that chains to `ca`. Refused client certificates are logged (`warn`).
pub fn server_config(
    id: &Identity,
    ca: &CertificateDer<'static>,
    tuning: &QuicTuning,
) -> Result<quinn::ServerConfig, TransportError> {
    let provider = provider();
    let webpki = WebPkiClientVerifier::builder_with_provider(root_store(ca)?, provider.clone())
        .build()
        .map_err(tls_err)?;
    let verifier = Arc::new(LoggingClientVerifier { inner: webpki });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(tls_err)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(Arc::new(tuning.transport_config()?));
    Ok(cfg)
}

/// Builds a client config: TLS 1.3 only, ALPN `tickcast/1`, presenting `id` as client
/// certificate, and trusting ONLY `ca` for the server's certificate (no platform roots).
pub fn client_config(
    id: &Identity,
    ca: &CertificateDer<'static>,
    tuning: &QuicTuning,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(root_store(ca)?)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(tls_err)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(tuning.transport_config()?));
    Ok(cfg)
}

/// Opens a UDP socket on `addr` with large kernel buffers (best effort).
pub(crate) fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, TransportError> {
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| bind_err(addr, e))?;
    match quinn::udp::UdpSocketState::new((&socket).into()) {
        Ok(state) => {
            if let Err(e) = state.set_recv_buffer_size((&socket).into(), SOCKET_RECV_BUFFER) {
                debug!(%addr, error = %e, "cannot enlarge UDP receive buffer");
            }
            if let Err(e) = state.set_send_buffer_size((&socket).into(), SOCKET_SEND_BUFFER) {
                debug!(%addr, error = %e, "cannot enlarge UDP send buffer");
            }
        }
        Err(e) => debug!(%addr, error = %e, "cannot inspect UDP socket"),
    }
    Ok(socket)
}

pub(crate) fn bind_err(addr: SocketAddr, e: impl std::fmt::Display) -> TransportError {
    TransportError::Bind {
        addr,
        reason: e.to_string(),
    }
}

/// The tokio runtime for quinn, or a bind error if called outside a tokio runtime.
pub(crate) fn tokio_runtime(addr: SocketAddr) -> Result<Arc<quinn::TokioRuntime>, TransportError> {
    tokio::runtime::Handle::try_current().map_err(|e| bind_err(addr, e))?;
    Ok(Arc::new(quinn::TokioRuntime))
}

/// Binds a QUIC endpoint on a real UDP socket at `addr` (port 0 picks a free port).
///
/// With `server` set the endpoint also accepts connections. `client` becomes the default
/// config for [`quinn::Endpoint::connect`]. Must be called inside a tokio runtime; quinn's
/// tokio runtime reads tokio's clock, so paused tokio time applies to its timers.
pub fn bind(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    client: quinn::ClientConfig,
) -> Result<quinn::Endpoint, TransportError> {
    let runtime = tokio_runtime(addr)?;
    let socket = udp_socket(addr)?;
    let mut endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
            .map_err(|e| bind_err(addr, e))?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// The peer's certificate chain as authenticated by the TLS handshake.
fn peer_chain(
    conn: &quinn::Connection,
    name: &str,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let no_cert = |reason: &str| TransportError::PeerCertificate {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let identity = conn
        .peer_identity()
        .ok_or_else(|| no_cert("peer presented no certificate"))?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| no_cert("peer identity is not an X.509 certificate chain"))?;
    if chain.is_empty() {
        return Err(no_cert("peer presented an empty certificate chain"));
    }
    Ok(*chain)
}

/// The DNS names (subject alternative names) in the peer's end-entity certificate, for logs.
/// Use [`verify_peer_name`] to decide whether the peer may act under a name.
pub fn peer_names(conn: &quinn::Connection) -> Result<Vec<String>, TransportError> {
    let chain = peer_chain(conn, "<any>")?;
    let ee = webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| {
        TransportError::PeerCertificate {
            name: "<any>".into(),
            reason: format!("unparsable certificate: {e}"),
        }
    })?;
    Ok(ee.valid_dns_names().map(str::to_owned).collect())
}

/// Checks that the peer's end-entity certificate is valid for DNS name `name`.
///
/// The handshake already verified that the chain leads to our CA; this checks that the peer
/// is who it claims to be (e.g. the name in its hello, or the parent a relay dialled).
/// A refusal is logged (`warn`) with the peer's address and the names it does have.
pub fn verify_peer_name(conn: &quinn::Connection, name: &str) -> Result<(), TransportError> {
    let result = check_peer_name(conn, name);
    if let Err(e) = &result {
        let presented = peer_names(conn).unwrap_or_default();
        warn!(peer = %conn.remote_address(), claimed = name, ?presented, "peer refused: {e}");
    }
    result
}

fn check_peer_name(conn: &quinn::Connection, name: &str) -> Result<(), TransportError> {
    let refuse = |reason: String| TransportError::PeerCertificate {
        name: name.to_owned(),
        reason,
    };
    let chain = peer_chain(conn, name)?;
    let server_name = match ServerName::try_from(name) {
        Ok(n @ ServerName::DnsName(_)) => n,
        Ok(_) => return Err(refuse("claimed name is not a DNS name".into())),
        Err(e) => return Err(refuse(format!("claimed name is not a valid DNS name: {e}"))),
    };
    let ee = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| refuse(format!("unparsable certificate: {e}")))?;
    ee.verify_is_valid_for_subject_name(&server_name)
        .map_err(|e| {
            let names: Vec<&str> = ee.valid_dns_names().collect();
            refuse(format!(
                "certificate is not valid for this name (it names {names:?}): {e}"
            ))
        })
}

/// The webpki client verifier, plus a `warn!` for every refused client certificate.
#[derive(Debug)]
struct LoggingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for LoggingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &result {
            let presented: Vec<String> = webpki::EndEntityCert::try_from(end_entity)
                .map(|ee| ee.valid_dns_names().map(str::to_owned).collect())
                .unwrap_or_default();
            warn!(?presented, "client certificate refused: {e}");
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::certs::Pki;
    use std::future::Future;

    const WAIT: Duration = Duration::from_secs(10);

    pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
        match tokio::time::timeout(WAIT, fut).await {
            Ok(v) => v,
            Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
        }
    }

    fn localhost() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// A server endpoint named `name` from `pki`.
    pub(crate) fn server(pki: &Pki, name: &str) -> quinn::Endpoint {
        let id = pki.issue(name).unwrap();
        let tuning = QuicTuning::default();
        let s = server_config(&id, &pki.ca_der(), &tuning).unwrap();
        let c = client_config(&id, &pki.ca_der(), &tuning).unwrap();
        bind(localhost(), Some(s), c).unwrap()
    }

    /// A client endpoint presenting an identity from `id_pki` and trusting `trust_pki`'s CA.
    fn client(id_pki: &Pki, trust_pki: &Pki, name: &str) -> quinn::Endpoint {
        let id = id_pki.issue(name).unwrap();
        let c = client_config(&id, &trust_pki.ca_der(), &QuicTuning::default()).unwrap();
        bind(localhost(), None, c).unwrap()
    }

    /// Runs one handshake; returns (client outcome, server outcome).
    async fn handshake(
        client_ep: &quinn::Endpoint,
        server_ep: &quinn::Endpoint,
        server_name: &str,
    ) -> (
        Result<quinn::Connection, quinn::ConnectionError>,
        Result<quinn::Connection, quinn::ConnectionError>,
    ) {
        let addr = server_ep.local_addr().unwrap();
        let connecting = client_ep.connect(addr, server_name).unwrap();
        let accept = async {
            let incoming = server_ep.accept().await.expect("server endpoint closed");
            incoming.await
        };
        within("handshake", async { tokio::join!(connecting, accept) }).await
    }

    #[tokio::test]
    async fn mutual_tls_connects_and_names_verify() {
        let pki = Pki::generate().unwrap();
        let server_ep = server(&pki, "origin");
        let client_ep = client(&pki, &pki, "relay-a");
        let (c, s) = handshake(&client_ep, &server_ep, "origin").await;
        let (c, s) = (c.expect("client side"), s.expect("server side"));

        assert_eq!(
            c.handshake_data()
                .unwrap()
                .downcast::<quinn::crypto::rustls::HandshakeData>()
                .unwrap()
                .protocol
                .as_deref(),
            Some(ALPN)
        );
        verify_peer_name(&s, "relay-a").unwrap();
        verify_peer_name(&c, "origin").unwrap();
        assert_eq!(peer_names(&s).unwrap(), vec!["relay-a".to_string()]);

        let err = verify_peer_name(&s, "relay-b").unwrap_err();
        assert!(
            matches!(&err, TransportError::PeerCertificate { name, reason } if name == "relay-b" && reason.contains("not valid for this name")),
            "{err}"
        );
        let err = verify_peer_name(&s, "not a name").unwrap_err();
        assert!(err.to_string().contains("not a valid DNS name"), "{err}");

        // Both sides see each other's traffic.
        let mut send = c.open_uni().await.unwrap();
        send.write_all(b"hello").await.unwrap();
        send.finish().unwrap();
        let mut recv = within("uni stream", s.accept_uni()).await.unwrap();
        let got = within("stream data", recv.read_to_end(64)).await.unwrap();
        assert_eq!(got, b"hello");

        c.close(CLOSE_OK, b"bye");
        let reason = within("close", s.closed()).await;
        assert!(
            matches!(&reason, quinn::ConnectionError::ApplicationClosed(a) if a.error_code == CLOSE_OK),
            "{reason}"
        );
        client_ep.wait_idle().await;
    }

    #[tokio::test]
    async fn client_from_other_ca_is_refused() {
        let pki = Pki::generate().unwrap();
        let rogue = Pki::generate().unwrap();
        let server_ep = server(&pki, "origin");
        // Trusts the right CA, but its own certificate is from another CA.
        let client_ep = client(&rogue, &pki, "relay-a");
        let (c, s) = handshake(&client_ep, &server_ep, "origin").await;
        let s_err = s.expect_err("server must refuse the client");
        let msg = s_err.to_string();
        assert!(
            msg.contains("invalid peer certificate: UnknownIssuer"),
            "server: {msg}"
        );
        // In TLS 1.3 the client finishes its handshake before the server checks the client
        // certificate, so the client may see success first and the refusal right after.
        let c_err = match c {
            Err(e) => e,
            Ok(conn) => within("refusal to reach the client", conn.closed()).await,
        };
        let msg = c_err.to_string();
        assert!(
            msg.contains("invalid peer certificate: UnknownIssuer"),
            "client: {msg}"
        );
    }

    #[tokio::test]
    async fn client_trusting_other_ca_refuses_server() {
        let pki = Pki::generate().unwrap();
        let other = Pki::generate().unwrap();
        let server_ep = server(&pki, "origin");
        let client_ep = client(&pki, &other, "relay-a");
        let (c, s) = handshake(&client_ep, &server_ep, "origin").await;
        let c_err = c.expect_err("client must refuse the server");
        let msg = c_err.to_string();
        assert!(
            msg.contains("invalid peer certificate: UnknownIssuer"),
            "client: {msg}"
        );
        assert!(s.is_err(), "server side must fail too");
    }

    #[tokio::test]
    async fn client_without_certificate_is_refused() {
        let pki = Pki::generate().unwrap();
        let server_ep = server(&pki, "origin");
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(root_store(&pki.ca_der()).unwrap())
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let c = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
        let client_ep = bind(localhost(), None, c).unwrap();
        let (c, s) = handshake(&client_ep, &server_ep, "origin").await;
        let msg = s
            .expect_err("server must require a certificate")
            .to_string();
        assert!(msg.contains("peer sent no certificates"), "server: {msg}");
        if let Ok(conn) = c {
            within("refusal to reach the client", conn.closed()).await;
        }
    }

    #[tokio::test]
    async fn client_checks_server_name() {
        let pki = Pki::generate().unwrap();
        let server_ep = server(&pki, "origin");
        let client_ep = client(&pki, &pki, "relay-a");
        let (c, _s) = handshake(&client_ep, &server_ep, "relay-b").await;
        let msg = c.expect_err("wrong server name must fail").to_string();
        assert!(
            msg.contains("certificate not valid for name \"relay-b\""),
            "{msg}"
        );
    }

    #[test]
    fn close_codes_are_distinct() {
        let codes = [
            CLOSE_OK,
            CLOSE_PROTOCOL,
            CLOSE_REFUSED,
            CLOSE_LAGGING,
            CLOSE_VERSION,
        ];
        let names: Vec<_> = codes.iter().map(|c| close_code_name(*c)).collect();
        assert_eq!(names, ["ok", "protocol", "refused", "lagging", "version"]);
        assert_eq!(close_code_name(VarInt::from_u32(99)), "unknown");
    }

    #[test]
    fn tuning_validates() {
        QuicTuning::default().transport_config().unwrap();
        let bad = QuicTuning {
            keep_alive: Duration::from_secs(20),
            ..QuicTuning::default()
        };
        assert!(bad.transport_config().is_err());
        let bad = QuicTuning {
            stream_window: u64::MAX,
            ..QuicTuning::default()
        };
        assert!(bad.transport_config().is_err());
    }

    #[test]
    fn bind_outside_runtime_is_an_error() {
        let pki = Pki::generate().unwrap();
        let id = pki.issue("n").unwrap();
        let c = client_config(&id, &pki.ca_der(), &QuicTuning::default()).unwrap();
        let err = bind(localhost(), None, c).unwrap_err();
        assert!(matches!(err, TransportError::Bind { .. }), "{err}");
    }
}
