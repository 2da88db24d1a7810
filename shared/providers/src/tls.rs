//! One TLS client configuration per process for every reqwest client of the gateway (provider calls and
//! merchant notifications). Building a reqwest client with its own rustls setup reads and parses the
//! platform's root certificates each time; a Lambda cold start built two such clients, and the bench's strace
//! showed each one reading all of `/etc/ssl/certs`. Here they are read once, on first use, and shared.

use std::sync::{Arc, LazyLock};

/// The platform verifier (the system's roots, as reqwest's default) over aws-lc-rs, TLS 1.2 and 1.3.
static CONFIG: LazyLock<Result<rustls::ClientConfig, String>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
        .map_err(|e| format!("the platform's root certificates: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
});

/// Why the shared TLS configuration could not be built (no usable root certificates, typically).
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS client setup: {0}")]
pub struct TlsSetupError(String);

/// The shared configuration, built on first use.
fn shared() -> Result<&'static rustls::ClientConfig, TlsSetupError> {
    CONFIG.as_ref().map_err(|e| TlsSetupError(e.clone()))
}

/// A reqwest client builder on the shared TLS configuration.
pub fn client_builder() -> Result<reqwest::ClientBuilder, TlsSetupError> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(shared()?.clone()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: failing loudly is its job
    use super::*;

    #[test]
    fn the_configuration_loads_the_platform_roots_and_every_client_builds_on_it() {
        // Fails on a machine without usable root certificates: what a cold start would report.
        let config = shared().unwrap();
        assert!(!config.crypto_provider().cipher_suites.is_empty());
        assert!(client_builder().unwrap().build().is_ok());
        assert!(client_builder().unwrap().build().is_ok());
    }
}
