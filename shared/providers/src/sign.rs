//! Byte-level signing primitives shared by the protocol adapters: MD5 over GBK or UTF-8 bytes, the TOP-style
//! MD5, HMAC-SHA256, SHA256withRSA (PKCS#1 v1.5, via aws-lc-rs) and constant-time comparison.
//!
//! Nothing here knows a protocol's field order; adapters build the exact sign string and hand it over.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// Why a signature could not be made or a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("text contains a character that GBK cannot encode")]
    NotGbk,
    #[error("PEM: {0}")]
    Pem(&'static str),
    #[error("RSA key refused: {0}")]
    Key(String),
    #[error("RSA signing failed")]
    Rsa,
}

/// Hex case of an MD5 signature. Providers disagree; each adapter says which one it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HexCase {
    Upper,
    Lower,
}

fn hex(bytes: &[u8], case: HexCase) -> String {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let table = match case {
        HexCase::Upper => UPPER,
        HexCase::Lower => LOWER,
    };
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(table[usize::from(b >> 4)]));
        out.push(char::from(table[usize::from(b & 0x0f)]));
    }
    out
}

/// MD5 of raw bytes as hex.
pub fn md5_hex(bytes: &[u8], case: HexCase) -> String {
    hex(&Md5::digest(bytes), case)
}

/// Encodes text as GBK, refusing characters GBK cannot represent (encoding_rs would otherwise substitute an
/// HTML numeric reference, and the signature would silently cover other bytes than the provider sees).
pub fn gbk_bytes(text: &str) -> Result<Vec<u8>, SignError> {
    let (bytes, _, had_errors) = encoding_rs::GBK.encode(text);
    if had_errors {
        return Err(SignError::NotGbk);
    }
    Ok(bytes.into_owned())
}

/// MD5 over the GBK bytes of `text` (the 001 family signs this way).
pub fn md5_gbk_hex(text: &str, case: HexCase) -> Result<String, SignError> {
    Ok(md5_hex(&gbk_bytes(text)?, case))
}

/// TOP-style signature: `MD5(secret + k1 + v1 + k2 + v2 + … + secret)` over UTF-8, keys in ascending byte
/// order, no separators, uppercase hex (docs/providers/wikeyun.md §4). `params` must not contain `sign`.
pub fn top_md5(secret: &str, params: &BTreeMap<String, String>) -> String {
    md5_hex(top_sign_string(secret, params).as_bytes(), HexCase::Upper)
}

/// The string [`top_md5`] hashes, exposed for golden tests.
pub fn top_sign_string(secret: &str, params: &BTreeMap<String, String>) -> String {
    let mut s = String::from(secret);
    // BTreeMap<String, _> iterates in byte order of the keys, which is what TOP requires.
    for (k, v) in params {
        s.push_str(k);
        s.push_str(v);
    }
    s.push_str(secret);
    s
}

/// HMAC-SHA256 as lowercase hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; keep the error path total anyway.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            hex(&mac.finalize().into_bytes(), HexCase::Lower)
        }
        Err(_) => String::new(),
    }
}

/// Constant-time equality of two signature strings (length is not secret).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Constant-time equality ignoring ASCII case, for hex signatures whose case a provider does not fix.
pub fn ct_eq_ignore_ascii_case(a: &str, b: &str) -> bool {
    let a = a.to_ascii_uppercase();
    let b = b.to_ascii_uppercase();
    ct_eq(&a, &b)
}

/// Why rustls-pki-types refused a PEM, without the PEM's bytes (the private key's PEM is a secret).
fn pem_error(e: &pem::Error) -> SignError {
    match e {
        pem::Error::NoItemsFound => SignError::Pem("no key block found"),
        pem::Error::MissingSectionEnd { .. } => SignError::Pem("END line not found"),
        pem::Error::Base64Decode(_) => SignError::Pem("body is not base64"),
        _ => SignError::Pem("malformed"),
    }
}

/// A merchant RSA private key for SHA256withRSA (PKCS#1 v1.5). Debug never shows key material.
pub struct RsaSigner {
    key: RsaKeyPair,
}

impl fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaSigner([redacted])")
    }
}

impl RsaSigner {
    /// Reads a PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM: the first key block in
    /// `pem`, each marker on a line of its own.
    pub fn from_pem(pem: &str) -> Result<RsaSigner, SignError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| pem_error(&e))?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err(SignError::Key("not an RSA private key".to_owned())),
        }
        .map_err(|e| SignError::Key(e.to_string()))?;
        Ok(RsaSigner { key })
    }

    /// `Base64(SHA256withRSA(key, message))`. PKCS#1 v1.5 is deterministic, so this has known answers.
    pub fn sign_base64(&self, message: &[u8]) -> Result<String, SignError> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .map_err(|_| SignError::Rsa)?;
        Ok(B64.encode(sig))
    }
}

/// A platform RSA public key for verifying SHA256withRSA signatures, parsed once when the account loads.
#[derive(Clone)]
pub struct RsaVerifier {
    key: ParsedPublicKey,
}

impl fmt::Debug for RsaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaVerifier")
    }
}

impl RsaVerifier {
    /// Reads a `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo) or `BEGIN RSA PUBLIC KEY` (PKCS#1) PEM, each marker
    /// on a line of its own.
    pub fn from_pem(pem: &str) -> Result<RsaVerifier, SignError> {
        // rustls-pki-types knows no `RSA PUBLIC KEY` label. aws-lc-rs reads PKCS#1 and SubjectPublicKeyInfo DER
        // alike, so a PKCS#1 block is read under the SPKI label and its DER handed over unchanged.
        let pem = pem.replace("RSA PUBLIC KEY-----", "PUBLIC KEY-----");
        let der =
            SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|e| pem_error(&e))?;
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_ref())
            .map_err(|e| SignError::Key(e.to_string()))?;
        Ok(RsaVerifier { key })
    }

    /// Verifies `Base64(SHA256withRSA)` over `message`. Any malformed input is simply "not valid".
    pub fn verify_base64(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = B64.decode(signature_b64.trim().as_bytes()) else {
            return false;
        };
        self.key.verify_sig(message, &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn md5_hex_has_both_cases() {
        // RFC 1321 test suite.
        assert_eq!(
            md5_hex(b"abc", HexCase::Lower),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            md5_hex(b"abc", HexCase::Upper),
            "900150983CD24FB0D6963F7D28E17F72"
        );
    }

    #[test]
    fn md5_over_gbk_differs_from_utf8_and_refuses_unencodable_text() {
        assert_eq!(gbk_bytes("江苏").unwrap(), vec![0xBD, 0xAD, 0xCB, 0xD5]);
        assert_ne!(
            md5_gbk_hex("江苏", HexCase::Upper).unwrap(),
            md5_hex("江苏".as_bytes(), HexCase::Upper)
        );
        assert_eq!(md5_gbk_hex("😀", HexCase::Upper), Err(SignError::NotGbk));
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn top_md5_sorts_keys_by_bytes_without_separators() {
        let mut p = BTreeMap::new();
        p.insert("b".to_owned(), "2".to_owned());
        p.insert("a".to_owned(), "1".to_owned());
        p.insert("B".to_owned(), "3".to_owned());
        assert_eq!(top_sign_string("S", &p), "SB3a1b2S");
        assert_eq!(top_md5("S", &p), md5_hex(b"SB3a1b2S", HexCase::Upper));
    }

    #[test]
    fn constant_time_comparisons() {
        assert!(ct_eq("ABC", "ABC"));
        assert!(!ct_eq("ABC", "ABD"));
        assert!(!ct_eq("ABC", "ABCD"));
        assert!(ct_eq_ignore_ascii_case("abc1", "ABC1"));
        assert!(!ct_eq_ignore_ascii_case("abc1", "ABC2"));
    }

    #[test]
    fn malformed_pem_is_refused() {
        assert!(matches!(
            RsaSigner::from_pem("nothing"),
            Err(SignError::Pem(_))
        ));
        assert!(
            RsaSigner::from_pem("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----")
                .is_err()
        );
        assert!(
            RsaVerifier::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
        assert!(
            format!(
                "{:?}",
                RsaSigner::from_pem(include_str!(
                    "openapi_rsa/fixtures/004_rsa_test_private_key.pem"
                ))
                .unwrap()
            )
            .contains("redacted")
        );
    }

    #[test]
    fn pkcs1_and_pkcs8_pems_of_one_key_sign_and_verify_alike() {
        let pkcs8 = RsaSigner::from_pem(include_str!(
            "openapi_rsa/fixtures/004_rsa_test_private_key.pem"
        ))
        .unwrap();
        let pkcs1 = RsaSigner::from_pem(include_str!(
            "openapi_rsa/fixtures/004_rsa_test_private_key_pkcs1.pem"
        ))
        .unwrap();
        let sig = pkcs8.sign_base64(b"biz_content=1").unwrap();
        assert_eq!(pkcs1.sign_base64(b"biz_content=1").unwrap(), sig);
        for public in [
            include_str!("openapi_rsa/fixtures/004_rsa_test_public_key.pem"),
            include_str!("openapi_rsa/fixtures/004_rsa_test_public_key_pkcs1.pem"),
        ] {
            let v = RsaVerifier::from_pem(public).unwrap();
            assert!(v.verify_base64(b"biz_content=1", &sig));
            assert!(!v.verify_base64(b"biz_content=2", &sig));
        }
    }

    #[test]
    fn a_pem_with_text_around_it_or_crlf_lines_is_read() {
        let public = include_str!("openapi_rsa/fixtures/004_rsa_test_public_key.pem");
        assert!(RsaVerifier::from_pem(&format!("platform key:\n{public}\ntrailing")).is_ok());
        assert!(RsaVerifier::from_pem(&public.replace('\n', "\r\n")).is_ok());
        // A public key where a private key belongs is refused, and the other way round.
        assert!(matches!(
            RsaSigner::from_pem(public),
            Err(SignError::Pem(_))
        ));
        assert!(matches!(
            RsaVerifier::from_pem(include_str!(
                "openapi_rsa/fixtures/004_rsa_test_private_key.pem"
            )),
            Err(SignError::Pem(_))
        ));
    }

    proptest! {
        #[test]
        fn rsa_verify_never_panics_on_arbitrary_signatures(msg in proptest::collection::vec(any::<u8>(), 0..64), sig in "\\PC{0,400}") {
            let v = RsaVerifier::from_pem(include_str!("openapi_rsa/fixtures/004_rsa_test_public_key.pem")).unwrap();
            prop_assert!(!v.verify_base64(&msg, &sig));
        }
    }
}
