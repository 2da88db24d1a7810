//! The order as a merchant sees it (docs/merchant-api.md §4), in responses and notifications.

use recharge_core::{AttemptState, Fen, NextAction, Order, PublicStatus, Timestamp};
use serde::Serialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderView {
    pub order_id: String,
    pub merchant_order_no: String,
    pub product_code: String,
    pub account: String,
    pub face_value_fen: i64,
    pub status: &'static str,
    pub next_action: Option<NextAction>,
    pub delivered_fen: Option<i64>,
    pub failure: Option<Failure>,
    pub created_at: String,
    pub updated_at: String,
    /// Grows with every change of this view; a merchant keeps the highest it has seen.
    pub sequence: u64,
}

/// The merchant-facing failure codes (docs/operations.md §6): a small, stable set, whatever a provider answered. The
/// raw provider code and message stay in the operators' view (`GET /ops/orders/{order_id}`).
///
/// | code | meaning |
/// |---|---|
/// | `provider_refused` | every provider tried refused the order before accepting it; nothing was charged |
/// | `provider_failed` | the provider accepted the order, then failed it (refunded), or has no record of it past the grace window |
/// | `product_unavailable` | the product left the catalog while the order was being failed over |
/// | `no_route` | no further provider could take the order after a definite failure |
/// | `expired` | a carrier-billing verification code was not entered in time; nothing was charged |
/// | `resolved_by_operator` | an operator closed the order with evidence (the provider never delivered) |
/// | `reversed` | (status `reversed`) the provider took the delivered value back |
pub const FAILURE_CODES: &[&str] = &[
    "provider_refused",
    "provider_failed",
    "product_unavailable",
    "no_route",
    "expired",
    "resolved_by_operator",
    "reversed",
];

/// The stable failure of a failed or reversed order, or `None`.
pub fn merchant_failure(order: &Order) -> Option<Failure> {
    let v = order.public_view();
    let raw = v.failure?;
    let code = match v.status {
        PublicStatus::Reversed => "reversed",
        PublicStatus::Failed => match raw.code.as_str() {
            "resolved_by_operator" => "resolved_by_operator",
            "expired" => "expired",
            _ => match order.routes_exhausted().map(|r| r.code.as_str()) {
                Some("product_unavailable") => "product_unavailable",
                _ => match order.last_attempt().map(|a| a.state()) {
                    Some(AttemptState::Rejected { .. }) => "provider_refused",
                    Some(
                        AttemptState::Failed { .. }
                        | AttemptState::Submitting
                        | AttemptState::Accepted
                        | AttemptState::ActionRequired { .. }
                        | AttemptState::Unknown { .. }
                        | AttemptState::Succeeded
                        | AttemptState::PartiallySucceeded { .. }
                        | AttemptState::Reversed { .. },
                    ) => "provider_failed",
                    None => "no_route",
                },
            },
        },
        PublicStatus::Processing
        | PublicStatus::ActionRequired
        | PublicStatus::Succeeded
        | PublicStatus::PartiallySucceeded => return None,
    };
    Some(Failure {
        code: code.to_owned(),
        message: failure_message(code).to_owned(),
    })
}

fn failure_message(code: &str) -> &'static str {
    match code {
        "provider_refused" => "the provider refused the order; nothing was charged",
        "provider_failed" => "the provider could not fulfil the order and refunded it",
        "product_unavailable" => "the product is no longer offered",
        "expired" => "the verification code was not entered in time; nothing was charged",
        "resolved_by_operator" => "an operator closed the order: it was not fulfilled",
        "reversed" => "the provider took the delivered value back",
        _ => "no provider could fulfil the order",
    }
}

impl OrderView {
    pub fn of(order: &Order) -> OrderView {
        let v = order.public_view();
        OrderView {
            order_id: order.id().to_string(),
            merchant_order_no: order.merchant_order_no().to_string(),
            product_code: order.product_code().to_string(),
            account: order.account().to_owned(),
            face_value_fen: order.face_value().get(),
            status: v.status.as_str(),
            next_action: v.next_action,
            delivered_fen: v.delivered_fen.map(Fen::get),
            failure: merchant_failure(order),
            created_at: rfc3339(order.created_at()),
            updated_at: rfc3339(order.updated_at()),
            sequence: order.sequence(),
        }
    }
}

/// `2026-11-22T04:24:25.123Z`, from the `time` crate's calendar. Instants outside its years ±9999 (no clock
/// gives one) are clamped to its ends.
pub fn rfc3339(t: Timestamp) -> String {
    let d = OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.millis()) * 1_000_000)
        .unwrap_or_else(|_| {
            if t.millis() < 0 {
                PrimitiveDateTime::MIN
            } else {
                PrimitiveDateTime::MAX
            }
            .assume_utc()
        });
    // Cannot fail: the date-time has every component the description names, and it is written to a String.
    d.format(RFC3339_MILLIS).unwrap_or_default()
}

/// RFC 3339 in UTC with milliseconds, always three digits (`time`'s well-known `Rfc3339` drops trailing zeros).
const RFC3339_MILLIS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_has_known_answers() {
        assert_eq!(
            rfc3339(Timestamp::from_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        // python3: datetime.fromtimestamp(1700000000.123, timezone.utc)
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(-1)),
            "1969-12-31T23:59:59.999Z"
        );
        // python3: datetime.fromtimestamp(4102444799.999, timezone.utc), the last instant of 2099.
        assert_eq!(
            rfc3339(Timestamp::from_millis(4_102_444_799_999)),
            "2099-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(i64::MAX)),
            "9999-12-31T23:59:59.999Z"
        );
    }
}
