//! JSON helpers the protocols share: provider answers mix strings and numbers for the same field.

use serde_json::Value;

/// A JSON scalar as text: strings as they are, numbers in decimal. Anything else is absent.
pub fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}
