//! Certificates: the private CA, node identities, and their PEM files.
//!
//! Owns everything about X.509 material: generating the in-memory private CA ([`Pki`]) with
//! rcgen, issuing node certificates (one DNS name per node, usable as TLS server *and*
//! client), writing them as PEM files for `tickcast certs` ([`write_certs`]), and loading
//! them back ([`load_identity`], [`load_ca`]). It does not build TLS configs or verify peers
//! at connection time; that is [`crate::endpoint`].
//!
//! File layout of a certificate directory: `ca.pem` / `ca.key` for the CA and
//! `{name}.pem` / `{name}.key` for each node. Key files are written with mode 0600 on unix.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::TransportError;

/// Common name of the CA certificate.
pub const CA_COMMON_NAME: &str = "tickcast CA";
/// File name of the CA certificate inside a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Leaf certificates are valid for about ten years.
const LEAF_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60 + 3 * 24 * 60 * 60);
/// The CA outlives every leaf it can issue within the next ten years.
const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 60 * 60 + 5 * 24 * 60 * 60);
/// Certificates start being valid a day in the past, to tolerate clock skew between nodes.
const BACKDATE: Duration = DAY;

/// A node's TLS identity: its certificate chain (end-entity first) and private key.
pub struct Identity {
    /// Certificate chain, end-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the end-entity certificate.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// An in-memory private certificate authority (ECDSA P-256, CN "tickcast CA").
///
/// Every node certificate it issues names the node as its DNS subject alternative name and
/// common name, and is usable both as a TLS server and a TLS client certificate.
pub struct Pki {
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("ca", &CA_COMMON_NAME)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn gen_err(e: rcgen::Error) -> TransportError {
    TransportError::CertGeneration(e.to_string())
}

/// Wall-clock now, as rcgen's date type. Certificate validity is the one place this crate
/// reads the system clock outside [`crate::clock`]: a certificate's dates are real dates.
fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

/// The CA's parameters. Deterministic given the CA key (apart from the validity dates), so
/// that an [`Issuer`] rebuilt from a stored CA key signs with the same issuer name and key id.
///
/// Besides CN "tickcast CA" the subject carries an organizational unit derived from the CA
/// public key, so two different tickcast CAs have different names and a certificate from
/// the wrong CA is reported as "unknown issuer" rather than as a bad signature.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(
        DnType::OrganizationalUnitName,
        format!("ca-{:016x}", fnv1a(key.public_key_raw())),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// 64-bit FNV-1a; only used to tell CAs apart by name, not for security.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Checks that `name` is a DNS name a peer can be verified against.
fn check_node_name(name: &str) -> Result<(), TransportError> {
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(_)) => Ok(()),
        Ok(_) => Err(TransportError::InvalidArgument(format!(
            "node name {name:?} must be a DNS name, not an IP address"
        ))),
        Err(e) => Err(TransportError::InvalidArgument(format!(
            "node name {name:?} is not a valid DNS name: {e}"
        ))),
    }
}

impl Pki {
    /// Generates a fresh CA key pair and self-signed CA certificate.
    pub fn generate() -> Result<Pki, TransportError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = ca_params(&key);
        validity(&mut params, CA_VALIDITY);
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(Pki {
            ca_der: cert.der().clone(),
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA written by [`write_certs`] (`ca.pem` and `ca.key` in `dir`) so that more
    /// node certificates can be issued without replacing the CA.
    ///
    /// The pair is checked by issuing a throw-away certificate and verifying it against the
    /// loaded CA certificate; a key that does not belong to the certificate is refused.
    pub fn load(dir: &Path) -> Result<Pki, TransportError> {
        let ca_der = load_ca(dir)?;
        let ca_pem = read_text(&dir.join(CA_CERT_FILE))?;
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = read_text(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TransportError::BadPem {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let pki = Pki {
            ca_der,
            ca_pem,
            issuer: Issuer::new(ca_params(&key), key),
        };
        let probe = pki.issue("probe.invalid")?;
        verify_chain(&pki.ca_der, &probe.chain).map_err(|reason| TransportError::BadPem {
            path: key_path,
            reason: format!("CA key and certificate do not match: {reason}"),
        })?;
        Ok(pki)
    }

    /// The CA certificate, DER-encoded.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// The CA certificate, PEM-encoded.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The CA private key, PEM-encoded (PKCS#8).
    pub fn ca_key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a node certificate for DNS name `name` (SAN and CN), signed by this CA, valid
    /// about ten years, with both serverAuth and clientAuth extended key usage.
    pub fn issue(&self, name: &str) -> Result<Identity, TransportError> {
        let (cert, key) = self.issue_raw(name)?;
        Ok(Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }

    /// Like [`Pki::issue`], but returns `(certificate PEM, private key PEM)`.
    pub fn issue_pem(&self, name: &str) -> Result<(String, String), TransportError> {
        let (cert, key) = self.issue_raw(name)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn issue_raw(&self, name: &str) -> Result<(rcgen::Certificate, KeyPair), TransportError> {
        check_node_name(name)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName(
            name.try_into()
                .map_err(|e: rcgen::Error| TransportError::InvalidArgument(e.to_string()))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_VALIDITY);
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok((cert, key))
    }

    /// Writes `ca.pem`, `ca.key` and `{name}.pem` / `{name}.key` for each of `names` into
    /// `dir` (created if missing; existing files are overwritten).
    pub fn write(&self, dir: &Path, names: &[&str]) -> Result<(), TransportError> {
        for name in names {
            check_node_name(name)?;
            if *name == "ca" {
                return Err(TransportError::InvalidArgument(
                    "node name \"ca\" would overwrite the CA files".into(),
                ));
            }
        }
        fs::create_dir_all(dir).map_err(|e| TransportError::CertFileWrite {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_file(&dir.join(CA_CERT_FILE), &self.ca_pem(), false)?;
        write_file(&dir.join(CA_KEY_FILE), &self.ca_key_pem(), true)?;
        for name in names {
            let (cert, key) = self.issue_pem(name)?;
            write_file(&dir.join(format!("{name}.pem")), &cert, false)?;
            write_file(&dir.join(format!("{name}.key")), &key, true)?;
        }
        Ok(())
    }
}

/// Generates a **new** CA and writes it plus one certificate per name into `dir`: `ca.pem`,
/// `ca.key`, and `{name}.pem` / `{name}.key` (key files mode 0600 on unix). Existing files
/// are overwritten, which invalidates certificates issued by a previous CA; use
/// [`Pki::load`] + [`Pki::write`] to add names under an existing CA.
pub fn write_certs(dir: &Path, names: &[&str]) -> Result<(), TransportError> {
    Pki::generate()?.write(dir, names)
}

/// Loads `{name}.pem` (certificate chain, end-entity first) and `{name}.key` from `dir`.
pub fn load_identity(dir: &Path, name: &str) -> Result<Identity, TransportError> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    let chain = load_certs(&cert_path)?;
    let key_bytes = read_bytes(&key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TransportError::BadPem {
        path: key_path,
        reason: format!("no private key: {e}"),
    })?;
    Ok(Identity { chain, key })
}

/// Loads the CA certificate `ca.pem` from `dir`.
pub fn load_ca(dir: &Path) -> Result<CertificateDer<'static>, TransportError> {
    let path = dir.join(CA_CERT_FILE);
    let mut certs = load_certs(&path)?;
    if certs.len() != 1 {
        return Err(TransportError::BadPem {
            path,
            reason: format!("expected exactly one CA certificate, found {}", certs.len()),
        });
    }
    Ok(certs.remove(0))
}

/// Loads every certificate in a PEM file; at least one must be present.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let bytes = read_bytes(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TransportError::BadPem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE section".into(),
        });
    }
    Ok(certs)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, TransportError> {
    fs::read(path).map_err(|e| TransportError::CertFileUnreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn read_text(path: &Path) -> Result<String, TransportError> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes).map_err(|_| TransportError::BadPem {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TransportError> {
    let werr = |e: std::io::Error| TransportError::CertFileWrite {
        path: PathBuf::from(path),
        reason: e.to_string(),
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(werr)?;
    // `mode` only applies to newly created files; tighten an existing one too.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(werr)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    file.write_all(contents.as_bytes()).map_err(werr)?;
    file.sync_all().map_err(werr)
}

/// Verifies that `chain` (end-entity first) chains to `ca` and is usable both as a TLS
/// server and client certificate right now. The TLS handshake does this itself; this is
/// for self-checks and tests.
pub fn verify_chain(
    ca: &CertificateDer<'static>,
    chain: &[CertificateDer<'static>],
) -> Result<(), String> {
    let (leaf, intermediates) = chain.split_first().ok_or("empty certificate chain")?;
    let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|e| format!("bad CA: {e}"))?;
    let anchors = [anchor];
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("bad leaf: {e}"))?;
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let now = UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    );
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        ee.verify_for_usage(algs, &anchors, intermediates, now, usage, None, None)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tickcast-certs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_leaf_chains_to_ca() {
        let pki = Pki::generate().unwrap();
        let id = pki.issue("relay-a").unwrap();
        verify_chain(&pki.ca_der(), &id.chain).unwrap();
        let ee = webpki::EndEntityCert::try_from(&id.chain[0]).unwrap();
        assert_eq!(ee.valid_dns_names().collect::<Vec<_>>(), vec!["relay-a"]);
        let name = ServerName::try_from("relay-a").unwrap();
        ee.verify_is_valid_for_subject_name(&name).unwrap();
        let other = ServerName::try_from("relay-b").unwrap();
        assert!(ee.verify_is_valid_for_subject_name(&other).is_err());
    }

    #[test]
    fn leaf_from_other_ca_does_not_chain() {
        let a = Pki::generate().unwrap();
        let b = Pki::generate().unwrap();
        let id = b.issue("relay-a").unwrap();
        let err = verify_chain(&a.ca_der(), &id.chain).unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn ca_pem_round_trips() {
        let pki = Pki::generate().unwrap();
        let pem = pki.ca_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(der, pki.ca_der());
    }

    #[test]
    fn invalid_names_are_refused() {
        let pki = Pki::generate().unwrap();
        for bad in ["", "has space", "127.0.0.1", "under_score!"] {
            let err = pki.issue(bad).unwrap_err();
            assert!(
                matches!(err, TransportError::InvalidArgument(_)),
                "{bad:?}: {err}"
            );
        }
        let dir = tempdir("ca-name");
        let err = pki.write(&dir, &["ca"]).unwrap_err();
        assert!(err.to_string().contains("overwrite"), "{err}");
    }

    #[test]
    fn write_then_load_back() {
        let dir = tempdir("roundtrip");
        write_certs(&dir, &["origin", "relay-a"]).unwrap();
        let ca = load_ca(&dir).unwrap();
        for name in ["origin", "relay-a"] {
            let id = load_identity(&dir, name).unwrap();
            assert_eq!(id.chain.len(), 1);
            verify_chain(&ca, &id.chain).unwrap();
            assert!(matches!(id.key, PrivateKeyDer::Pkcs8(_)));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["ca.key", "origin.key", "relay-a.key"] {
                let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        // Add a node under the same CA.
        let pki = Pki::load(&dir).unwrap();
        assert_eq!(pki.ca_der(), ca);
        pki.write(&dir, &["relay-b"]).unwrap();
        let b = load_identity(&dir, "relay-b").unwrap();
        verify_chain(&load_ca(&dir).unwrap(), &b.chain).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = tempdir("errors");
        let err = load_ca(&dir).unwrap_err();
        assert!(
            matches!(&err, TransportError::CertFileUnreadable { path, .. } if path.ends_with("ca.pem")),
            "{err}"
        );
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("ca.pem"), "not a pem\n").unwrap();
        let err = load_ca(&dir).unwrap_err();
        assert!(
            matches!(&err, TransportError::BadPem { path, .. } if path.ends_with("ca.pem")),
            "{err}"
        );
        write_certs(&dir, &["node"]).unwrap();
        fs::write(dir.join("node.key"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let err = load_identity(&dir, "node").unwrap_err();
        assert!(err.to_string().contains("node.key"), "{err}");
        let err = load_identity(&dir, "missing").unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        // A CA key that does not belong to ca.pem is refused.
        let other = Pki::generate().unwrap();
        fs::write(dir.join("ca.key"), other.ca_key_pem()).unwrap();
        let err = Pki::load(&dir).unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn identity_clone_keeps_key() {
        let pki = Pki::generate().unwrap();
        let id = pki.issue("n1").unwrap();
        let copy = id.clone();
        assert_eq!(copy.chain, id.chain);
        assert_eq!(copy.key.secret_der(), id.key.secret_der());
        assert!(!format!("{id:?}").contains(&format!("{:?}", id.key.secret_der())));
    }
}
