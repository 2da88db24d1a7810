//! What every operator route shares (docs/operations.md §1): who called, and how an operator's free text is
//! checked and masked before it is stored. `ops`, `ops_apps` and `recon` use it; it uses none of them.

use crate::http::error::ApiError;
use recharge_core::AppId;
use recharge_core::mask::mask;

/// Who called an ops route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An admin app of the local stack (HMAC signature).
    App(AppId),
    /// An AWS principal, as API Gateway's IAM authorizer verified it (its ARN).
    Iam(String),
}

impl Principal {
    pub fn name(&self) -> String {
        match self {
            Principal::App(app) => format!("app:{app}"),
            Principal::Iam(arn) => arn.clone(),
        }
    }
}

/// Masks every run of 8 or more digits (phone, ID and card numbers) in free text.
pub fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= 8 {
            out.push_str(&mask(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A required free-text field: trimmed, 1 to `max` characters, no control characters but newlines.
pub(crate) fn text_field(name: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::bad_request(
            "invalid_field",
            format!("{name}: 1 to {max} characters, no control characters"),
        ));
    }
    Ok(v.to_owned())
}
