//! Connecting to Postgres, with TLS by rustls (no OpenSSL), as libpq's `sslmode`
//! says: `disable`; `prefer` (the default) and `require` encrypt without checking the
//! certificate (as libpq does), unless a root certificate is given, in which case they
//! check it like `verify-ca`; `verify-ca` checks the chain; `verify-full` the chain and
//! the host name. Roots come from `sslrootcert` in the URL or `HARK_DATABASE_CA_FILE`,
//! else from the Mozilla set built in.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// The connection settings.
    pub config: tokio_postgres::Config,
    /// The TLS connector (unused with `sslmode=disable`).
    pub tls: MakeRustlsConnect,
}

/// How far the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// Reads a PostgreSQL URL with libpq's `sslmode` and `sslrootcert`.
pub fn target(url: &str, ca_file: Option<&str>) -> anyhow::Result<Target> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut mode = "prefer".to_owned();
    let mut root_file = ca_file.map(str::to_owned);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => mode = value.to_owned(),
            Some(("sslrootcert", value)) => root_file = Some(value.replace("%2F", "/")),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .context("the database URL is not a valid PostgreSQL URL")?;
    let (ssl_mode, verify) = match (mode.as_str(), root_file.is_some()) {
        ("disable", _) => (SslMode::Disable, Verify::Nothing),
        ("allow" | "prefer", false) => (SslMode::Prefer, Verify::Nothing),
        ("allow" | "prefer", true) => (SslMode::Prefer, Verify::Chain),
        ("require", false) => (SslMode::Require, Verify::Nothing),
        ("require" | "verify-ca", true) => (SslMode::Require, Verify::Chain),
        ("verify-ca", false) => (SslMode::Require, Verify::Chain),
        ("verify-full", _) => (SslMode::Require, Verify::ChainAndName),
        (other, _) => anyhow::bail!("unknown sslmode `{other}` in the database URL"),
    };
    config.ssl_mode(ssl_mode);
    Ok(Target {
        config,
        tls: MakeRustlsConnect::new(client_config(verify, root_file.as_deref())?),
    })
}

fn client_config(verify: Verify, root_file: Option<&str>) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version")?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
        Verify::Chain | Verify::ChainAndName => {
            let mut roots = RootCertStore::empty();
            match root_file {
                Some(path) => {
                    let certificates = CertificateDer::pem_file_iter(path).with_context(|| {
                        format!("could not read the root certificates in {path}")
                    })?;
                    for certificate in certificates {
                        roots.add(
                            certificate
                                .with_context(|| format!("a malformed certificate in {path}"))?,
                        )?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("could not build the certificate verifier")?;
            if verify == Verify::Chain {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth()
            } else {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            }
        }
    };
    Ok(config)
}

/// `sslmode=require` without a root certificate: encrypted, not authenticated, as
/// libpq does it.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
