//! TLS for remote databases: rustls (ring provider).
//!
//! Trust follows libpq's `sslrootcert`: when a CA file is given (--ssl-root-cert
//! or `sslrootcert=FILE` in the URL) the server certificate must chain to one of
//! *that file's* certificates and to nothing else; otherwise (or with the libpq
//! 16 spelling `sslrootcert=system`) to the Mozilla roots or the system's trust
//! store.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Builds the rustls client configuration used when the connection string asks for TLS.
/// `root_cert`: the only CA file to trust (see the module documentation).
pub fn client_config(root_cert: Option<&Path>, accept_invalid_certs: bool) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;

    if accept_invalid_certs {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth());
    }
    let roots = root_store(root_cert)?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// libpq's (16+) `sslrootcert` value that asks for the system's trust store.
const SYSTEM: &str = "system";

/// The trust anchors: exactly the certificates of `root_cert` when given (unless it is
/// `system`), else the Mozilla roots plus the system trust store.
pub fn root_store(root_cert: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) if path.as_os_str() != SYSTEM => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("CA file {} holds no PEM certificate", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            }
            tracing::debug!(roots = roots.len(), file = %path.display(), "trusting only the CA file");
        }
        _ => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(
                native_roots = added,
                errors = native.errors.len(),
                "trusting the Mozilla roots and the system trust store"
            );
        }
    }
    Ok(roots)
}

/// Verifier for --ssl-accept-invalid-certs: skips the chain and name checks
/// but still checks the handshake signatures (so the session keys are bound
/// to the presented certificate).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{CertificateError, ClientConnection, ServerConfig, ServerConnection};

    use super::*;

    fn testdata(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
    }

    fn certs(name: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(testdata(name))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Runs a TLS handshake in memory between a client with `client` and a server presenting
    /// `server_a.pem` (issued by test CA a) for "localhost"; the client's verdict.
    fn handshake(client: ClientConfig) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from_pem_file(testdata("server_a.key")).unwrap();
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs("server_a.pem"), key)
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            if server.process_new_packets().is_err() {
                break;
            }
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        Err(rustls::Error::General("handshake did not finish".into()))
    }

    #[test]
    fn builds_default_and_insecure_configs() {
        client_config(None, false).unwrap();
        client_config(None, true).unwrap();
    }

    #[test]
    fn a_given_file_is_the_only_trust_anchor() {
        let store = root_store(Some(&testdata("ca_ab.pem"))).unwrap();
        let mut expected = RootCertStore::empty();
        for cert in certs("ca_ab.pem") {
            expected.add(cert).unwrap();
        }
        assert_eq!(store.len(), 2);
        assert_eq!(store.roots, expected.roots);

        let store = root_store(Some(&testdata("ca_b.pem"))).unwrap();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn without_a_file_the_public_roots_are_trusted_and_no_test_ca() {
        let mut test_cas = RootCertStore::empty();
        for cert in certs("ca_ab.pem") {
            test_cas.add(cert).unwrap();
        }
        for spec in [None, Some(Path::new("system"))] {
            let store = root_store(spec).unwrap();
            assert!(store.len() >= webpki_roots::TLS_SERVER_ROOTS.len(), "{spec:?}");
            assert!(
                test_cas.roots.iter().all(|ca| !store.roots.contains(ca)),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn verification_uses_exactly_the_given_roots() {
        handshake(client_config(Some(&testdata("ca_a.pem")), false).unwrap()).unwrap();
        handshake(client_config(Some(&testdata("ca_ab.pem")), false).unwrap()).unwrap();
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        // Another CA only, or the public roots: the test CA's server is not trusted.
        assert_eq!(
            handshake(client_config(Some(&testdata("ca_b.pem")), false).unwrap()),
            Err(unknown.clone())
        );
        assert_eq!(handshake(client_config(None, false).unwrap()), Err(unknown));
        // The insecure mode accepts it.
        handshake(client_config(Some(&testdata("ca_b.pem")), true).unwrap()).unwrap();
    }

    #[test]
    fn missing_or_empty_ca_file_is_a_clear_error() {
        let err = client_config(Some(Path::new("/nonexistent/ca.pem")), false).unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let err = root_store(Some(&testdata("README.md"))).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
