//! Who a client certificate names: its subject Common Name and Subject Alternative Names, as text.
//!
//! rustls verifies the chain but does not say whom it names; the broker's authenticator (and
//! `use_identity_as_username`) works with names, so every TLS-carrying transport turns the verified
//! end-entity certificate into a [`CertIdentity`] with [`identity_of`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cicada_engine::CertIdentity;
use rustls_pki_types::CertificateDer;
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::AttributeTypeAndValue;

/// The identity `cert` (DER) names: the subject's first Common Name and its Subject Alternative
/// Names (DNS names, e-mail addresses, URIs as they are, IP addresses as `IpAddr` prints them;
/// other kinds are skipped).
///
/// `None` if the certificate or its SAN extension does not parse: an identity read only in part
/// must not be trusted, so the caller treats the client as having presented no usable certificate.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<CertIdentity> {
    let (_, x509) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let common_name = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(attribute_text)
        // An empty CN names no one: the SANs decide.
        .filter(|cn| !cn.is_empty());
    let alt_names = match x509.subject_alternative_name().ok()? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(general_name_text)
            .collect(),
        None => Vec::new(),
    };
    Some(CertIdentity {
        common_name,
        alt_names,
    })
}

/// A name attribute's value as text: the UTF-8 compatible string types as they are, BMPString
/// (UTF-16, still found in old certificates) decoded. `None` for other types or invalid text.
fn attribute_text(attribute: &AttributeTypeAndValue<'_>) -> Option<String> {
    if let Ok(text) = attribute.as_str() {
        return Some(text.to_owned());
    }
    let value = attribute.attr_value();
    if value.tag() != Tag::BmpString || value.data.len() % 2 != 0 {
        return None;
    }
    let units = value
        .data
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

/// A Subject Alternative Name as text, for the kinds an authenticator can match on.
fn general_name_text(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(text) | GeneralName::RFC822Name(text) | GeneralName::URI(text) => {
            Some((*text).to_owned())
        }
        GeneralName::IPAddress(bytes) => {
            let ip = if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                IpAddr::from(Ipv4Addr::from(v4))
            } else {
                IpAddr::from(Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?))
            };
            Some(ip.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rcgen::string::Ia5String;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    /// A self-signed certificate with `params`.
    fn certificate(params: &CertificateParams) -> CertificateDer<'static> {
        let key = KeyPair::generate().expect("key pair");
        params.self_signed(&key).expect("certificate").der().clone()
    }

    fn ia5(text: &str) -> Ia5String {
        Ia5String::try_from(text).expect("IA5 string")
    }

    #[test]
    fn common_name_and_alt_names() {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Cicada");
        params
            .distinguished_name
            .push(DnType::CommonName, "sensor-7");
        params.subject_alt_names = vec![
            SanType::DnsName(ia5("sensor-7.example.test")),
            SanType::Rfc822Name(ia5("ops@example.test")),
            SanType::URI(ia5("spiffe://example.test/sensor/7")),
            SanType::IpAddress("192.0.2.7".parse().expect("ip")),
            SanType::IpAddress("2001:db8::7".parse().expect("ip")),
        ];
        let identity = identity_of(&certificate(&params)).expect("identity");
        assert_eq!(identity.common_name.as_deref(), Some("sensor-7"));
        assert_eq!(
            identity.alt_names,
            [
                "sensor-7.example.test",
                "ops@example.test",
                "spiffe://example.test/sensor/7",
                "192.0.2.7",
                "2001:db8::7",
            ]
        );
        assert_eq!(identity.name(), Some("sensor-7"));
    }

    #[test]
    fn without_common_name() {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::DnsName(ia5("device.example.test"))];
        let identity = identity_of(&certificate(&params)).expect("identity");
        assert_eq!(identity.common_name, None);
        assert_eq!(identity.alt_names, ["device.example.test"]);
        assert_eq!(identity.name(), Some("device.example.test"));
    }

    #[test]
    fn an_empty_common_name_is_no_name() {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "");
        params.subject_alt_names = vec![SanType::DnsName(ia5("device.example.test"))];
        let identity = identity_of(&certificate(&params)).expect("identity");
        assert_eq!(identity.common_name, None);
        assert_eq!(identity.name(), Some("device.example.test"));
    }

    #[test]
    fn without_alt_names() {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "only-cn");
        let identity = identity_of(&certificate(&params)).expect("identity");
        assert_eq!(identity.common_name.as_deref(), Some("only-cn"));
        assert!(identity.alt_names.is_empty());
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(identity_of(&CertificateDer::from(vec![])), None);
        assert_eq!(
            identity_of(&CertificateDer::from(b"not a certificate".to_vec())),
            None
        );
        let der = certificate(&CertificateParams::default());
        let truncated = der.as_ref()[..der.as_ref().len() / 2].to_vec();
        assert_eq!(identity_of(&CertificateDer::from(truncated)), None);
    }
}
