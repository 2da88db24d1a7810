//! The system's root certificates, read once per process, and the one TLS client configuration every reqwest
//! client of the gateway shares (provider calls and merchant notifications). The Lambda bootstrap gives the same
//! roots to the AWS SDK's HTTP client (`recharge_aws::sdk_config_trusting`).
//!
//! Why not each library's own loader: the SDK's client and rustls-platform-verifier both call
//! `rustls_native_certs::load_native_certs`, which reads the bundle line by line and then every file of the
//! certificate directory (292 entries on Debian). Each call took 3–5 ms of a 15–20 ms cold start on the bench
//! machine, and a cold start made two. Reading the one bundle file whole and parsing it in memory takes
//! 0.6–0.9 ms (docs/benchmarks.md §8.3). Trust is what the platform verifier gives on Linux, the system's
//! roots under the webpki verifier, less any certificate that sits in the directory but not in the bundle
//! (on Debian, `ssl-cert-snakeoil.pem`: 144 roots instead of 145).

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The roots the process trusts, and where they came from.
#[derive(Debug)]
pub struct SystemRoots {
    /// Every root that parsed as a trust anchor, in the order read.
    pub certs: Vec<CertificateDer<'static>>,
    /// The same roots as rustls trust anchors (parsed once, for the shared client configuration).
    store: RootCertStore,
    /// The bundle file read, or the platform loader when no bundle file was found.
    pub source: String,
    /// Certificates in the source that are not usable roots (skipped, as the platform verifier does).
    pub skipped: usize,
}

static ROOTS: LazyLock<Result<SystemRoots, String>> = LazyLock::new(|| {
    let roots = match bundle_file() {
        Some(path) => from_bundle(&path)?,
        None => from_platform_loader(),
    };
    if roots.certs.is_empty() {
        return Err(format!("no usable root certificate in {}", roots.source));
    }
    Ok(roots)
});

/// The bundle file OpenSSL would read: `SSL_CERT_FILE`, else the first of the distributions' known bundle
/// paths that exists (Debian's `/etc/ssl/certs/ca-certificates.crt`, Amazon Linux's
/// `/etc/pki/tls/certs/ca-bundle.crt`, …), as `openssl-probe` finds it.
fn bundle_file() -> Option<PathBuf> {
    openssl_probe::probe().cert_file.filter(|p| p.is_file())
}

fn from_bundle(path: &std::path::Path) -> Result<SystemRoots, String> {
    let source = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| format!("{source}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{source}: {e}"))?;
    Ok(anchors(certs, source, 0))
}

/// Keeps the certificates that parse as trust anchors, so every consumer can add each one strictly.
fn anchors(found: Vec<CertificateDer<'static>>, source: String, errors: usize) -> SystemRoots {
    let mut roots = SystemRoots {
        certs: Vec::new(),
        store: RootCertStore::empty(),
        source,
        skipped: errors,
    };
    for cert in found {
        match roots.store.add(cert.clone()) {
            Ok(()) => roots.certs.push(cert),
            Err(_) => roots.skipped += 1,
        }
    }
    roots
}

/// No bundle file: the platform loader (the certificate directories too), as rustls-platform-verifier reads.
fn from_platform_loader() -> SystemRoots {
    let found = rustls_native_certs::load_native_certs();
    anchors(
        found.certs,
        "the platform's certificate directories".to_owned(),
        found.errors.len(),
    )
}

/// The system's roots, read on first use.
pub fn system_roots() -> Result<&'static SystemRoots, TlsSetupError> {
    ROOTS.as_ref().map_err(|e| TlsSetupError(e.clone()))
}

/// The system's roots under the webpki verifier, over aws-lc-rs, TLS 1.2 and 1.3.
static CONFIG: LazyLock<Result<rustls::ClientConfig, String>> = LazyLock::new(|| {
    let roots = ROOTS.as_ref().map_err(Clone::clone)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots.store.clone())
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

    #[test]
    fn every_root_of_the_bundle_is_one_the_platform_loader_trusts_too() {
        // The shortcut must not trust more than rustls-platform-verifier would on this machine. It may trust
        // less: a certificate dropped into the directory without being added to the bundle (Debian's
        // `ssl-cert-snakeoil.pem` on the bench machine) is not a root here.
        let ours = system_roots().unwrap();
        let platform: std::collections::HashSet<&[u8]> =
            PLATFORM.certs.iter().map(|c| c.as_ref()).collect();
        assert!(!ours.certs.is_empty());
        for cert in &ours.certs {
            assert!(
                platform.contains(cert.as_ref()),
                "a root of {} the platform does not trust",
                ours.source
            );
        }
    }

    static PLATFORM: LazyLock<SystemRoots> = LazyLock::new(from_platform_loader);

    #[test]
    fn a_bundle_with_a_broken_block_is_refused_and_a_non_anchor_is_skipped() {
        let dir = std::env::temp_dir().join(format!("recharge-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = system_roots().unwrap().certs[0].clone();
        let pem = |der: &[u8]| {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n")
        };
        let mixed = dir.join("mixed.pem");
        std::fs::write(&mixed, pem(&good) + &pem(b"not a certificate")).unwrap();
        let roots = from_bundle(&mixed).unwrap();
        assert_eq!((roots.certs.len(), roots.skipped), (1, 1));
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(from_bundle(&broken).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
