//! Certificates for simulated nodes, with sizes that do not change from run to run.
//!
//! Owns [`SimPki`]: a throwaway private CA issuing Ed25519 node certificates with fixed
//! validity dates and serial numbers. tickcast's own CA (`tickcast_transport::Pki`) uses
//! ECDSA P-256 whose DER signatures vary between 70 and 72 bytes, so handshake packets
//! would differ by a few bytes between runs, and with them serialization times and pacing;
//! Ed25519 signatures are always 64 bytes, which keeps a seeded simulation repeatable.
//! The identities are ordinary `tickcast_transport::Identity` values; TLS and peer-name
//! checks are the real ones.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tickcast_transport::Identity;

/// A private CA for one simulation.
pub struct SimPki {
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for SimPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPki").finish_non_exhaustive()
    }
}

fn fixed_validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
}

impl SimPki {
    /// A fresh CA (Ed25519, CN "tickcast netsim CA").
    pub fn generate() -> Result<SimPki> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).context("CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "tickcast netsim CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from(1u64));
        fixed_validity(&mut params);
        let cert = params.self_signed(&key).context("CA certificate")?;
        Ok(SimPki {
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate.
    pub fn ca(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// A node identity for DNS name `name`, usable as TLS server and client certificate.
    pub fn identity(&self, name: &str) -> Result<Identity> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).context("node key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName(
            name.try_into()
                .with_context(|| format!("{name:?} is not a DNS name"))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from(2u64));
        fixed_validity(&mut params);
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("certificate for {name:?}"))?;
        Ok(Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_repeat() {
        let a = SimPki::generate().unwrap();
        let b = SimPki::generate().unwrap();
        assert_eq!(a.ca().len(), b.ca().len());
        let (ia, ib) = (
            a.identity("relay-x").unwrap(),
            b.identity("relay-x").unwrap(),
        );
        assert_eq!(ia.chain[0].len(), ib.chain[0].len());
        assert_ne!(ia.chain[0], ib.chain[0]);
    }
}
