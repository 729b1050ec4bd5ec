//! A throwaway PKI for tests: a CA, a server certificate for `localhost`, and client certificates,
//! all generated at test time with rcgen and written as PEM files (no key is ever committed).
//!
//! Listeners are configured with file paths, so tests need real files; [`TestPki::generate`]
//! writes them into a directory the test owns (a `tempfile::TempDir`, say). Everything here panics
//! on failure: it is test support, and a broken PKI should stop the test right away.

#![allow(clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The test CA's Common Name.
const CA_NAME: &str = "Cicada Test CA";

/// A CA, the server certificate it signed, and the files they were written to.
///
/// Keeps the CA's key in memory so tests can issue more certificates ([`TestPki::client`]) or
/// replace the server's ([`TestPki::renew_server`]) to exercise certificate reloading.
#[derive(Debug)]
pub struct TestPki {
    /// The CA certificate (PEM): what clients trust, and what the server trusts for client
    /// certificates.
    pub ca_cert: PathBuf,
    /// The server's certificate chain (PEM): the leaf, for `localhost`, `127.0.0.1` and `::1`,
    /// then the CA certificate.
    pub server_cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub server_key: PathBuf,
    /// The directory all files are written to.
    pub dir: PathBuf,
    /// The CA's parameters and key, to sign more certificates.
    ca: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM), appended to the server's chain.
    ca_pem: String,
}

/// A client certificate and its key, as files for a client's TLS configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    /// The client's certificate (PEM, the leaf only).
    pub cert: PathBuf,
    /// The client's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestPki {
    /// Generates a CA ("Cicada Test CA") and a server certificate with Common Name `localhost` and
    /// Subject Alternative Names `localhost`, `127.0.0.1` and `::1`, and writes `ca.pem`,
    /// `server.pem` and `server.key` into `dir` (created if missing).
    pub fn generate(dir: &Path) -> TestPki {
        fs::create_dir_all(dir).expect("create the test PKI directory");
        let (ca, ca_pem) = new_ca(CA_NAME);
        let pki = TestPki {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            dir: dir.to_path_buf(),
            ca,
            ca_pem,
        };
        write(&pki.ca_cert, &pki.ca_pem);
        pki.renew_server("localhost");
        pki
    }

    /// Issues a client certificate signed by the CA, with Common Name `common_name`, the e-mail
    /// SAN `<common_name>@example.test` and extended key usage clientAuth; writes
    /// `client-<name>.pem` and `client-<name>.key` (the name with characters unsafe in file names
    /// replaced by `_`).
    ///
    /// Panics if `common_name` is not ASCII (the e-mail SAN must be).
    pub fn client(&self, common_name: &str) -> ClientCert {
        let stem = format!("client-{}", file_safe(common_name));
        issue_client(&self.ca, common_name, &self.dir, &stem)
    }

    /// Issues a cluster node's certificate signed by the CA: Common Name `name`, SANs `localhost`,
    /// `127.0.0.1` and `::1`, extended key usages serverAuth and clientAuth (a node both accepts and
    /// dials); writes `node-<name>.pem` and `node-<name>.key`.
    pub fn node(&self, name: &str) -> ClientCert {
        let key = KeyPair::generate().expect("generate the node key");
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(name);
        params.subject_alt_names = local_names();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("sign the node certificate");
        let stem = format!("node-{}", file_safe(name));
        let node = ClientCert {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        write(&node.key, &key.serialize_pem());
        write(&node.cert, &cert.pem());
        node
    }

    /// Like [`TestPki::client`], but signed by a fresh CA the server does not trust, so the
    /// handshake must fail; writes `untrusted-<name>.pem` and `untrusted-<name>.key`.
    pub fn untrusted_client(&self, common_name: &str) -> ClientCert {
        let (rogue, _) = new_ca("Untrusted Test CA");
        let stem = format!("untrusted-{}", file_safe(common_name));
        issue_client(&rogue, common_name, &self.dir, &stem)
    }

    /// A broker config `[listener.tls]` section serving this PKI's server certificate, with
    /// `client_auth` = `none`, `optional` or `required` (the CA bundle is named unless `none`).
    pub fn tls_section(&self, client_auth: &str) -> String {
        let mut section = format!(
            "[listener.tls]\ncert = {:?}\nkey = {:?}\n",
            self.server_cert, self.server_key
        );
        if client_auth != "none" {
            section += &format!("ca = {:?}\nclient_auth = \"{client_auth}\"\n", self.ca_cert);
        }
        section
    }

    /// Replaces the server's certificate and key with new ones: a new key, Common Name
    /// `common_name`, the same SANs, signed by the same CA. Tests use it to check that a listener
    /// reloads its certificate (the served certificate's CN changes).
    ///
    /// Each file is replaced atomically (written aside, then renamed), the key first; a reload
    /// that runs between the two renames may see the new key with the old certificate.
    pub fn renew_server(&self, common_name: &str) {
        let key = KeyPair::generate().expect("generate the server key");
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name);
        params.subject_alt_names = local_names();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("sign the server certificate");
        write(&self.server_key, &key.serialize_pem());
        write(&self.server_cert, &format!("{}{}", cert.pem(), self.ca_pem));
    }
}

/// The names of this machine: `localhost`, `127.0.0.1` and `::1`.
fn local_names() -> Vec<SanType> {
    vec![
        SanType::DnsName(ia5("localhost")),
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ]
}

/// A new self-signed CA with Common Name `name`: its issuer and its certificate (PEM).
fn new_ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("generate the CA key");
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (Issuer::new(params, key), cert.pem())
}

/// Issues a client certificate for `common_name` signed by `ca`, written to `<stem>.pem` and
/// `<stem>.key` in `dir`.
fn issue_client(ca: &Issuer<'_, KeyPair>, common_name: &str, dir: &Path, stem: &str) -> ClientCert {
    let key = KeyPair::generate().expect("generate the client key");
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name);
    params.subject_alt_names = vec![SanType::Rfc822Name(ia5(&format!(
        "{common_name}@example.test"
    )))];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, ca)
        .expect("sign the client certificate");
    let client = ClientCert {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    };
    write(&client.key, &key.serialize_pem());
    write(&client.cert, &cert.pem());
    client
}

/// A subject with only a Common Name (rcgen's default has a placeholder one).
fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// `text` as an IA5String (ASCII), for SANs.
fn ia5(text: &str) -> Ia5String {
    Ia5String::try_from(text).expect("SANs must be ASCII")
}

/// `name` with anything but ASCII letters, digits, `.`, `-` and `_` replaced by `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `contents` to `path` atomically: to a sibling file first, then renamed over `path`, so a
/// watcher never reads a half-written file.
fn write(path: &Path, contents: &str) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = PathBuf::from(aside);
    fs::write(&aside, contents).expect("write a test PKI file");
    fs::rename(&aside, path).expect("move a test PKI file into place");
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;
    use crate::identity::identity_of;

    fn chain(path: &Path) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(path)
            .expect("open the chain")
            .collect::<Result<_, _>>()
            .expect("parse the chain")
    }

    fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
        identity_of(cert).expect("identity").common_name
    }

    #[test]
    fn generates_a_usable_pki() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());

        let ca = chain(&pki.ca_cert);
        assert_eq!(ca.len(), 1);
        assert_eq!(common_name(&ca[0]).as_deref(), Some(CA_NAME));

        let server = chain(&pki.server_cert);
        assert_eq!(server.len(), 2, "leaf then CA");
        assert_eq!(server[1], ca[0]);
        let leaf = identity_of(&server[0]).expect("server identity");
        assert_eq!(leaf.common_name.as_deref(), Some("localhost"));
        assert_eq!(leaf.alt_names, ["localhost", "127.0.0.1", "::1"]);
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("server key");
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));

        let alice = pki.client("alice");
        let cert = chain(&alice.cert);
        assert_eq!(cert.len(), 1);
        let identity = identity_of(&cert[0]).expect("client identity");
        assert_eq!(identity.common_name.as_deref(), Some("alice"));
        assert_eq!(identity.alt_names, ["alice@example.test"]);
        PrivateKeyDer::from_pem_file(&alice.key).expect("client key");

        let mallory = pki.untrusted_client("alice");
        assert_ne!(mallory.cert, alice.cert);
        let cert = chain(&mallory.cert);
        assert_eq!(common_name(&cert[0]).as_deref(), Some("alice"));
    }

    #[test]
    fn renew_server_replaces_certificate_and_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());
        let old_cert = chain(&pki.server_cert);
        let old_key = fs::read(&pki.server_key).expect("old key");

        pki.renew_server("renewed.localhost");

        let new_cert = chain(&pki.server_cert);
        assert_eq!(
            common_name(&new_cert[0]).as_deref(),
            Some("renewed.localhost")
        );
        assert_ne!(new_cert[0], old_cert[0]);
        assert_eq!(new_cert[1], old_cert[1], "same CA");
        assert_ne!(fs::read(&pki.server_key).expect("new key"), old_key);
        PrivateKeyDer::from_pem_file(&pki.server_key).expect("new key parses");
    }

    #[test]
    fn rustls_accepts_the_pki() {
        use std::sync::Arc;

        use rustls::client::danger::ServerCertVerifier;
        use rustls::client::WebPkiServerVerifier;
        use rustls::server::WebPkiClientVerifier;
        use rustls::RootCertStore;
        use rustls_pki_types::{ServerName, UnixTime};

        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in chain(&pki.ca_cert) {
            roots.add(ca).expect("trust the CA");
        }
        let roots = Arc::new(roots);
        let now = UnixTime::now();

        let servers = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .expect("server verifier");
        let server = chain(&pki.server_cert);
        for name in ["localhost", "127.0.0.1", "::1"] {
            let name = ServerName::try_from(name).expect("server name");
            servers
                .verify_server_cert(&server[0], &server[1..], &name, &[], now)
                .expect("server certificate verifies");
        }

        let clients = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .expect("client verifier");
        let trusted = chain(&pki.client("alice").cert);
        clients
            .verify_client_cert(&trusted[0], &[], now)
            .expect("client certificate verifies");
        let untrusted = chain(&pki.untrusted_client("mallory").cert);
        assert!(clients.verify_client_cert(&untrusted[0], &[], now).is_err());
    }

    #[test]
    fn client_file_names_are_safe() {
        assert_eq!(file_safe("a b/c..d"), "a_b_c..d");
    }
}
