//! `recharge-aws`: the AWS adapters behind `recharge-core`'s ports. The DynamoDB `OrderStore`, the Secrets
//! Manager `SecretSource`, the table definition shared with the SAM template, an SDK call counter for the
//! round-trip budget, and typed configuration from the environment.

pub mod calls;
pub mod config;
pub mod dynamo;
pub mod secrets;
pub mod table;

pub use calls::{CallCounter, IndexUnits, RecordedCall, Units};
pub use config::{Config, EnvConfigError, FunctionConfig};
pub use dynamo::DynamoOrderStore;
pub use secrets::SecretsManagerSource;

use rustls_pki_types::CertificateDer;

/// Loads the SDK configuration once (region, credentials, and `AWS_ENDPOINT_URL_*` overrides, which point
/// the clients at DynamoDB Local and a local Secrets Manager in tests), with the SDK's own HTTPS client: it
/// reads the system's roots itself on first use.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// [`sdk_config`] with an HTTPS client that trusts exactly `roots` (the ones the process already read:
/// `recharge_providers::tls::system_roots`), so a cold start does not read the system's certificates a
/// second time through the SDK's loader. Each root must parse as a trust anchor: the SDK adds them strictly.
pub async fn sdk_config_trusting(
    roots: &[CertificateDer<'_>],
) -> Result<aws_config::SdkConfig, aws_smithy_http_client::HttpClientError> {
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client_trusting(roots)?)
        .load()
        .await)
}

/// The SDK's rustls (aws-lc-rs) HTTPS client over `roots` alone, no native roots.
pub fn https_client_trusting(
    roots: &[CertificateDer<'_>],
) -> Result<
    aws_smithy_runtime_api::client::http::SharedHttpClient,
    aws_smithy_http_client::HttpClientError,
> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(pem_bundle(roots));
    let context = TlsContext::builder().with_trust_store(trust).build()?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

/// Certificates as one PEM bundle (what the SDK's trust store takes).
fn pem_bundle(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = String::with_capacity(certs.iter().map(|c| c.len() * 4 / 3 + 64).sum());
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(cert));
        out.push_str("\n-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: failing loudly is its job
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn the_bundle_reads_back_as_the_same_certificates_the_way_the_sdk_reads_it() {
        // The SDK parses the trust store with `pem_slice_iter` and panics on a block it cannot read.
        let certs: Vec<CertificateDer<'static>> = (1u8..=3)
            .map(|n| CertificateDer::from(vec![0x30, 0x82, n, n.wrapping_mul(7), 0xff, 0x00, n]))
            .collect();
        let pem = pem_bundle(&certs);
        let back: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, certs);
        assert!(https_client_trusting(&certs).is_ok());
    }

    /// A TLS server on loopback with the fixture `localhost` certificate (tests/tls/make.sh), answering every
    /// request as DynamoDB answers an empty `ListTables`.
    async fn tls_server() -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        use tokio_rustls::rustls;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/");
        let read = |f: &str| std::fs::read(format!("{dir}{f}")).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read("localhost.pem"))
                .collect::<Result<_, _>>()
                .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&read("localhost.key")).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake is the point of one of the cases.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = br#"{"TableNames":[]}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(body).await;
                    let _ = tls.flush().await;
                });
            }
        });
        port
    }

    async fn list_tables(port: u16, roots: &[CertificateDer<'_>]) -> Result<(), String> {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(format!("https://localhost:{port}"))
            .http_client(https_client_trusting(roots).unwrap())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
            .list_tables()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "{:?}",
                    aws_smithy_types::error::display::DisplayErrorContext(e)
                )
            })
    }

    #[tokio::test]
    async fn the_sdk_client_trusts_exactly_the_roots_it_is_given() {
        let port = tls_server().await;
        let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(
            &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem")).unwrap(),
        )
        .collect::<Result<_, _>>()
        .unwrap();
        // Given the fixture CA, the handshake succeeds and the call is answered.
        list_tables(port, &ca).await.unwrap();
        // Given nothing, the SDK does not fall back to the system's roots (or to no verification).
        let refused = list_tables(port, &[]).await.unwrap_err();
        assert!(
            refused.to_lowercase().contains("certificate") || refused.contains("UnknownIssuer"),
            "{refused}"
        );
    }
}
