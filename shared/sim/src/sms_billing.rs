//! Not implemented yet: starting this protocol returns [`SimError::NotImplemented`].

use std::sync::Arc;

use axum::Router;

use crate::engine::Engine;
use crate::{Protocol, SimError};

pub(crate) fn router(
    _creds: serde_json::Value,
    _build: impl Fn(i64) -> Arc<Engine>,
) -> Result<(Arc<Engine>, Router), SimError> {
    Err(SimError::NotImplemented(Protocol::SmsBilling.name()))
}
