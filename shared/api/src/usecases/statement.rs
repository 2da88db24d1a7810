//! The merchant's daily statement (docs/reconciliation.md §8, docs/merchant-api.md): `GET /v1/statements/{date}`,
//! signed like any merchant request, lists the app's orders created that day (in the reconciliation's day
//! boundary, Beijing time by default) with face values, prices, what was charged and the statuses. JSON, or CSV
//! with `Accept: text/csv`.
//!
//! DynamoDB round trips: 1 Query per `by_status` partition and page over the day (every app's index entries;
//! only this app's orders are read whole), then 1 BatchGetItem per 100 of the app's orders.

use crate::apps::Caller;
use crate::http::error::ApiError;
use crate::http::view::rfc3339;
use crate::http::{ApiRequest, ApiResponse};
use crate::state::AppState;
use recharge_core::recon::ReconDay;
use recharge_core::{Order, OrderId, PublicStatus};
use serde::Serialize;

/// One order of the statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    pub order_id: String,
    pub merchant_order_no: String,
    pub product_code: String,
    pub status: &'static str,
    /// Whether the status is final (a processing order may still change; it is on the statement of the day
    /// it was created).
    #[serde(rename = "final")]
    pub is_final: bool,
    pub face_value_fen: i64,
    /// The product's price in the catalog (what a delivered order costs the merchant).
    pub price_fen: Option<i64>,
    /// What the merchant owes for this order: the price when delivered, in proportion when partially
    /// delivered, nothing otherwise.
    pub charged_fen: i64,
    pub delivered_fen: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// Orders and amounts of one status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatementTotal {
    pub status: &'static str,
    pub orders: u64,
    pub face_value_fen: i64,
    pub charged_fen: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub app: String,
    pub date: String,
    pub utc_offset_minutes: i32,
    pub from: String,
    pub to: String,
    pub orders: u64,
    pub charged_fen: i64,
    pub totals: Vec<StatementTotal>,
    pub lines: Vec<StatementLine>,
}

fn final_status(s: PublicStatus) -> bool {
    match s {
        PublicStatus::Succeeded
        | PublicStatus::PartiallySucceeded
        | PublicStatus::Failed
        | PublicStatus::Reversed => true,
        PublicStatus::Processing | PublicStatus::ActionRequired => false,
    }
}

fn line(state: &AppState, order: &Order) -> StatementLine {
    let view = order.public_view();
    let price = state
        .catalog
        .product(order.product_code())
        .map(|p| p.price_fen);
    let face = order.face_value().get();
    let delivered = crate::http::view::OrderView::of(order).delivered_fen;
    let charged = match view.status {
        PublicStatus::Succeeded => price.unwrap_or(0),
        PublicStatus::PartiallySucceeded => match (price, delivered) {
            (Some(p), Some(d)) if face > 0 => p.saturating_mul(d) / face,
            _ => 0,
        },
        PublicStatus::Failed
        | PublicStatus::Reversed
        | PublicStatus::Processing
        | PublicStatus::ActionRequired => 0,
    };
    StatementLine {
        order_id: order.id().to_string(),
        merchant_order_no: order.merchant_order_no().to_string(),
        product_code: order.product_code().to_string(),
        status: view.status.as_str(),
        is_final: final_status(view.status),
        face_value_fen: face,
        price_fen: price,
        charged_fen: charged,
        delivered_fen: delivered,
        created_at: rfc3339(order.created_at()),
        updated_at: rfc3339(order.updated_at()),
    }
}

/// The statement of `caller`'s app for `date`.
pub async fn statement(
    state: &AppState,
    caller: &Caller,
    date: &str,
) -> Result<Statement, ApiError> {
    let day = ReconDay::parse(date, state.settings.recon_utc_offset_minutes).map_err(|_| {
        ApiError::bad_request("invalid_parameter", "date: YYYY-MM-DD (a calendar date)")
    })?;
    let mine: Vec<OrderId> = state
        .store
        .created_between(day.start(), day.end())
        .await?
        .into_iter()
        .filter(|s| s.app == caller.app)
        .map(|s| s.order_id)
        .collect();
    let mut orders = state.store.get_many(&mine).await?;
    orders.retain(|o| o.app_id() == &caller.app);
    orders.sort_by(|a, b| {
        a.created_at()
            .cmp(&b.created_at())
            .then_with(|| a.id().cmp(b.id()))
    });
    let lines: Vec<StatementLine> = orders.iter().map(|o| line(state, o)).collect();
    let totals: Vec<StatementTotal> = PublicStatus::ALL
        .iter()
        .filter_map(|s| {
            let of: Vec<&StatementLine> = lines.iter().filter(|l| l.status == s.as_str()).collect();
            (!of.is_empty()).then(|| StatementTotal {
                status: s.as_str(),
                orders: of.len() as u64,
                face_value_fen: of.iter().map(|l| l.face_value_fen).sum(),
                charged_fen: of.iter().map(|l| l.charged_fen).sum(),
            })
        })
        .collect();
    Ok(Statement {
        app: caller.app.to_string(),
        date: day.date(),
        utc_offset_minutes: day.offset_minutes(),
        from: rfc3339(day.start()),
        to: rfc3339(day.end()),
        orders: lines.len() as u64,
        charged_fen: lines.iter().map(|l| l.charged_fen).sum(),
        totals,
        lines,
    })
}

/// The CSV header, in the column order of every line.
pub const CSV_HEADER: &str = "order_id,merchant_order_no,product_code,status,final,face_value_fen,price_fen,charged_fen,delivered_fen,created_at,updated_at";

/// The statement as CSV (RFC 4180; no field needs quoting: every one is an id, a number or a timestamp).
pub fn csv(s: &Statement) -> String {
    let mut out = String::with_capacity(64 + s.lines.len() * 160);
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    for l in &s.lines {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\r\n",
            l.order_id,
            l.merchant_order_no,
            l.product_code,
            l.status,
            l.is_final,
            l.face_value_fen,
            opt(l.price_fen),
            l.charged_fen,
            opt(l.delivered_fen),
            l.created_at,
            l.updated_at
        ));
    }
    out
}

/// Whether the request asks for CSV (`Accept: text/csv`); anything else is JSON.
fn wants_csv(req: &ApiRequest) -> bool {
    req.header("accept").is_some_and(|a| {
        a.split(',').any(|part| {
            part.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
        })
    })
}

/// `GET /v1/statements/{date}`.
pub async fn get_statement(
    state: &AppState,
    caller: &Caller,
    date: &str,
    req: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let s = statement(state, caller, date).await?;
    if wants_csv(req) {
        Ok(ApiResponse {
            status: 200,
            headers: vec![
                (
                    "content-type".to_owned(),
                    "text/csv; charset=utf-8".to_owned(),
                ),
                (
                    "content-disposition".to_owned(),
                    format!(
                        "attachment; filename=\"statement-{}-{}.csv\"",
                        s.app, s.date
                    ),
                ),
            ],
            body: csv(&s).into_bytes(),
        })
    } else {
        Ok(ApiResponse::json(200, &s))
    }
}
