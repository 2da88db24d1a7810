//! Merchant request authentication (docs/merchant-api.md §1): HMAC-SHA256 over a canonical string, ±300 s clock window,
//! constant-time comparison, current and previous key during a rotation.
//!
//! ```text
//! string_to_sign = METHOD "\n" PATH "\n" RAW_QUERY "\n" TIMESTAMP "\n" NONCE "\n" hex(SHA-256(body))
//! X-Recharge-Signature = hex(HMAC-SHA256(app_secret, string_to_sign))
//! ```
//!
//! Nonces are not stored: every write is idempotent on the merchant order number and every read is
//! tenant-scoped, so a replay inside the window repeats an answer the attacker has already seen.

use crate::apps::{AppDirectory, Caller, secret_error};
use crate::http::ApiRequest;
use crate::http::error::ApiError;
use hmac::{Hmac, Mac};
use recharge_core::AppId;
use recharge_core::secrets::{MerchantSecret, Rotating};
use recharge_core::store::AppStatus;
use recharge_core::time::Timestamp;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

pub const HEADER_APP: &str = "X-Recharge-App";
pub const HEADER_TIMESTAMP: &str = "X-Recharge-Timestamp";
pub const HEADER_NONCE: &str = "X-Recharge-Nonce";
pub const HEADER_SIGNATURE: &str = "X-Recharge-Signature";
/// Accepted clock difference between the merchant and us.
pub const MAX_SKEW_SECS: i64 = 300;

/// The canonical string a merchant signs.
pub fn string_to_sign(
    method: &str,
    path: &str,
    raw_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let body_hash = data_encoding::HEXLOWER.encode(&Sha256::digest(body));
    format!("{method}\n{path}\n{raw_query}\n{timestamp}\n{nonce}\n{body_hash}")
}

/// Lowercase hex HMAC-SHA256 (merchant request signatures and notification signatures).
pub fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(message);
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
}

/// Whether a merchant timestamp is within ±[`MAX_SKEW_SECS`] of the server clock. `abs_diff` works in `u64`,
/// so no pair of `i64`s can overflow it: `now − 2^63` is 2^63 seconds away, not a wrapped small number (a
/// plain subtraction wraps in release builds and panics in debug builds).
pub fn within_window(now_secs: i64, ts_secs: i64) -> bool {
    now_secs.abs_diff(ts_secs) <= MAX_SKEW_SECS.unsigned_abs()
}

/// Why a timestamp outside the window was refused. A timestamp in milliseconds (a common slip: JavaScript's
/// `Date.now()`, Java's `currentTimeMillis`) is named as such, since "stale" alone sends the merchant looking at
/// their clock.
fn stale_message(now_secs: i64, ts_secs: i64) -> String {
    if within_window(now_secs, ts_secs / 1000) {
        format!(
            "timestamp {ts_secs} looks like milliseconds: X-Recharge-Timestamp is unix seconds \
             (within {MAX_SKEW_SECS} s of the server clock)"
        )
    } else {
        format!(
            "timestamp is more than {MAX_SKEW_SECS} s from the server clock (X-Recharge-Timestamp is unix seconds)"
        )
    }
}

fn valid_nonce(n: &str) -> bool {
    (8..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Verifies a merchant request. Errors are 401s with a stable code (`app_disabled` for an app an operator
/// switched off), except a secret store outage (503). The app and its secret are found on first use and
/// cached (`crate::apps`); a signature that matches no cached key makes one fresh look (a rotation just made).
pub async fn authenticate(
    req: &ApiRequest,
    apps: &AppDirectory,
    now: Timestamp,
) -> Result<Caller, ApiError> {
    let header = |name: &'static str| {
        req.header(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("missing_auth", format!("header {name} is required"))
            })
    };
    let app_header = header(HEADER_APP)?;
    let ts = header(HEADER_TIMESTAMP)?;
    let nonce = header(HEADER_NONCE)?;
    let signature = header(HEADER_SIGNATURE)?;

    let unknown = || ApiError::unauthorized("unknown_app", "no such app");
    let id = AppId::parse(app_header).map_err(|_| unknown())?;
    let ts_secs: i64 = ts.parse().map_err(|_| {
        ApiError::unauthorized("invalid_timestamp", "timestamp must be unix seconds")
    })?;
    if !within_window(now.seconds(), ts_secs) {
        return Err(ApiError::unauthorized(
            "stale_timestamp",
            stale_message(now.seconds(), ts_secs),
        ));
    }
    if !valid_nonce(nonce) {
        return Err(ApiError::unauthorized(
            "invalid_nonce",
            "nonce must be 8 to 64 characters of [A-Za-z0-9_-]",
        ));
    }
    let mut app = apps.get(&id).await?.ok_or_else(unknown)?;
    let message = string_to_sign(&req.method, &req.path, &req.raw_query, ts, nonce, &req.body);
    let given = signature.to_ascii_lowercase();
    let matches = |keys: &Rotating<MerchantSecret>| {
        keys.candidates().any(|k| {
            let expected = hmac_hex(k.app_secret.expose_secret().as_bytes(), message.as_bytes());
            recharge_providers::sign::ct_eq(&expected, &given)
        })
    };
    let keys = apps.keys(&app).await.map_err(secret_error(&id))?;
    if !matches(&keys) {
        let again = apps.refreshed(&app).await?;
        match again {
            Some((fresh, keys)) if matches(&keys) => app = fresh,
            Some(_) | None => {
                return Err(ApiError::unauthorized(
                    "bad_signature",
                    "signature does not match",
                ));
            }
        }
    }
    match app.status {
        AppStatus::Enabled => {}
        AppStatus::Disabled | AppStatus::Pending => {
            // Told only to a caller that proved it holds the app's secret.
            return Err(ApiError::unauthorized(
                "app_disabled",
                "this app is disabled by an operator",
            ));
        }
    }
    Ok(Caller {
        app: app.config.id.clone(),
        role: app.config.role,
        client_ttl: app.config.client.ttl(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::{AppConfig, Apps, Role};
    use recharge_core::memory::InMemoryOrderStore;
    use recharge_core::secrets::InMemorySecretSource;
    use std::sync::Arc;

    const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn apps() -> (AppDirectory, Arc<InMemorySecretSource>) {
        let seed = Apps::new(
            vec![AppConfig {
                id: AppId::parse("demo").unwrap(),
                role: Role::Merchant,
                secret_name: None,
                client: Default::default(),
            }],
            "merchant/",
        );
        let secrets = Arc::new(InMemorySecretSource::new());
        secrets.put("merchant/demo", r#"{"app_secret":"demo-secret"}"#);
        let dir = AppDirectory::new(
            seed,
            Arc::new(InMemoryOrderStore::new(4)),
            secrets.clone(),
            Arc::new(recharge_core::ManualClock::new(NOW)),
            std::time::Duration::from_secs(30),
        );
        (dir, secrets)
    }

    fn signed(secret: &str, ts: i64, body: &[u8]) -> ApiRequest {
        let nonce = "abcdef12";
        let sts = string_to_sign("POST", "/v1/orders", "", &ts.to_string(), nonce, body);
        ApiRequest {
            method: "POST".into(),
            path: "/v1/orders".into(),
            raw_query: String::new(),
            headers: vec![
                (HEADER_APP.into(), "demo".into()),
                (HEADER_TIMESTAMP.into(), ts.to_string()),
                (HEADER_NONCE.into(), nonce.into()),
                (
                    HEADER_SIGNATURE.into(),
                    hmac_hex(secret.as_bytes(), sts.as_bytes()),
                ),
            ],
            body: body.to_vec(),
        }
    }

    #[test]
    fn the_string_to_sign_has_a_known_answer() {
        // python3: hashlib.sha256(b'{"a":1}').hexdigest(); hmac.new(b"demo-secret", sts, sha256).hexdigest()
        let sts = string_to_sign(
            "POST",
            "/v1/orders",
            "",
            "1700000000",
            "abcdef12",
            br#"{"a":1}"#,
        );
        assert_eq!(
            sts,
            "POST\n/v1/orders\n\n1700000000\nabcdef12\n015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
        assert_eq!(
            hmac_hex(b"demo-secret", sts.as_bytes()),
            "242ca62aaf7390cb851c37a9223d18396ca48ac8517d3646e22612e3fe652f89"
        );
    }

    #[tokio::test]
    async fn a_correctly_signed_request_is_accepted() {
        let (apps, _secrets) = apps();
        let caller = authenticate(&signed("demo-secret", NOW.seconds(), b"{}"), &apps, NOW)
            .await
            .unwrap();
        assert_eq!(caller.app.as_str(), "demo");
    }

    #[tokio::test]
    async fn each_auth_failure_has_its_own_code() {
        let (apps, _secrets) = apps();
        let code = |r: Result<Caller, ApiError>| r.unwrap_err().code();
        let good = signed("demo-secret", NOW.seconds(), b"{}");

        let mut missing = good.clone();
        missing.headers.retain(|(k, _)| k != HEADER_SIGNATURE);
        assert_eq!(
            code(authenticate(&missing, &apps, NOW).await),
            "missing_auth"
        );

        let mut unknown = good.clone();
        unknown.headers[0].1 = "nobody".into();
        assert_eq!(
            code(authenticate(&unknown, &apps, NOW).await),
            "unknown_app"
        );

        let stale = signed("demo-secret", NOW.seconds() - 301, b"{}");
        assert_eq!(
            code(authenticate(&stale, &apps, NOW).await),
            "stale_timestamp"
        );
        let future = signed("demo-secret", NOW.seconds() + 301, b"{}");
        assert_eq!(
            code(authenticate(&future, &apps, NOW).await),
            "stale_timestamp"
        );
        let edge = signed("demo-secret", NOW.seconds() - 300, b"{}");
        assert!(authenticate(&edge, &apps, NOW).await.is_ok());

        let wrong_key = signed("not-the-secret", NOW.seconds(), b"{}");
        assert_eq!(
            code(authenticate(&wrong_key, &apps, NOW).await),
            "bad_signature"
        );

        let mut tampered = good.clone();
        tampered.body = b"{\"x\":1}".to_vec();
        assert_eq!(
            code(authenticate(&tampered, &apps, NOW).await),
            "bad_signature"
        );

        let mut other_path = good.clone();
        other_path.path = "/v1/orders/M1".into();
        assert_eq!(
            code(authenticate(&other_path, &apps, NOW).await),
            "bad_signature"
        );

        let mut bad_nonce = good.clone();
        bad_nonce.headers[2].1 = "short".into();
        assert_eq!(
            code(authenticate(&bad_nonce, &apps, NOW).await),
            "invalid_nonce"
        );

        let mut bad_ts = good;
        bad_ts.headers[1].1 = "yesterday".into();
        assert_eq!(
            code(authenticate(&bad_ts, &apps, NOW).await),
            "invalid_timestamp"
        );
    }

    #[tokio::test]
    async fn a_timestamp_in_milliseconds_is_stale_and_the_message_says_seconds_are_expected() {
        let (apps, _secrets) = apps();
        let millis = signed("demo-secret", NOW.seconds() * 1000 + 123, b"{}");
        let err = authenticate(&millis, &apps, NOW).await.unwrap_err();
        assert_eq!(err.code(), "stale_timestamp");
        let text = err.to_string();
        assert!(text.contains("milliseconds"), "{text}");
        assert!(text.contains("unix seconds"), "{text}");

        // A timestamp that is merely old says the unit too, but does not guess milliseconds.
        let old = signed("demo-secret", NOW.seconds() - 3600, b"{}");
        let text = authenticate(&old, &apps, NOW)
            .await
            .unwrap_err()
            .to_string();
        assert!(text.contains("unix seconds"), "{text}");
        assert!(!text.contains("milliseconds"), "{text}");
    }

    #[tokio::test]
    async fn a_timestamp_at_the_far_end_of_i64_is_stale_not_an_overflow() {
        let (apps, _secrets) = apps();
        let code = |r: Result<Caller, ApiError>| r.unwrap_err().code();
        // now − 2^63 wrapped to a small difference before the window check used abs_diff.
        for ts in [i64::MIN, i64::MAX, NOW.seconds().wrapping_sub(i64::MIN)] {
            let req = signed("demo-secret", ts, b"{}");
            assert_eq!(
                code(authenticate(&req, &apps, NOW).await),
                "stale_timestamp",
                "{ts}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn the_window_check_agrees_with_exact_arithmetic_over_all_of_i64(
            now in proptest::num::i64::ANY,
            ts in proptest::num::i64::ANY,
        ) {
            let exact = (i128::from(now) - i128::from(ts)).abs() <= i128::from(MAX_SKEW_SECS);
            proptest::prop_assert_eq!(within_window(now, ts), exact);
        }

        #[test]
        fn the_window_check_agrees_near_its_edges_anywhere_in_i64(
            now in proptest::num::i64::ANY,
            delta in -400i64..=400,
        ) {
            let ts = now.saturating_add(delta);
            let exact = (i128::from(now) - i128::from(ts)).abs() <= i128::from(MAX_SKEW_SECS);
            proptest::prop_assert_eq!(within_window(now, ts), exact);
            proptest::prop_assert_eq!(within_window(ts, now), exact);
        }
    }

    #[tokio::test]
    async fn the_previous_key_still_verifies_during_a_rotation() {
        let (apps, secrets) = apps();
        secrets.put("merchant/demo", r#"{"app_secret":"rotated-secret"}"#);
        for key in ["rotated-secret", "demo-secret"] {
            let req = signed(key, NOW.seconds(), b"{}");
            assert!(authenticate(&req, &apps, NOW).await.is_ok(), "{key}");
        }
    }

    #[tokio::test]
    async fn uppercase_hex_signatures_are_accepted() {
        let (apps, _secrets) = apps();
        let mut req = signed("demo-secret", NOW.seconds(), b"{}");
        req.headers[3].1 = req.headers[3].1.to_ascii_uppercase();
        assert!(authenticate(&req, &apps, NOW).await.is_ok());
    }
}
