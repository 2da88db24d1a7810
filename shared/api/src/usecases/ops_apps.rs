//! The operators' merchant apps (docs/operations.md §9): create, disable, enable and rotate an
//! app with no deploy. Records live in the orders table's config partition (`pk = CONFIG`, `sk = APP#<id>`);
//! secrets in Secrets Manager (`<prefix><id>`, `{"app_secret": "…"}`). A new secret is shown once, in the answer
//! that made it, and never again: it is not stored anywhere but the secret store, and never logged.
//!
//! | route | round trips |
//! |---|---|
//! | `GET /ops/apps` | 1 `Query` (config partition) |
//! | `GET /ops/apps/{id}` | 1 `GetItem` |
//! | `POST /ops/apps` | 1 `GetItem` + 1 `PutItem` (claim, conditional) + 1 `CreateSecret` (+ 1 `PutSecretValue` if a failed create left the secret) + 1 `PutItem` (enable, conditional) |
//! | `PUT /ops/apps/{id}` disable / enable | 1 `GetItem` + 1 `PutItem` (conditional) |
//! | `PUT /ops/apps/{id}` rotate | 1 `GetItem` + 1 `PutItem` (conditional) + 1 `PutSecretValue` |
//!
//! Order of writes. Create claims the id first (a `pending` record, conditional on there being none), so of two
//! operators creating the same id one writes the secret and the other is told `app_exists`; a create that
//! failed after its claim leaves the record `pending` (unusable), and a create of the same id five minutes later
//! takes it over. Rotate writes the record (new `secret_version`, the grace period of the old secret) before
//! the secret: if the secret write then fails, the answer is an error, the old secret stays current and the
//! only effect is that functions read the secret again.

use crate::apps::App;
use crate::apps::ClientAccess;
use crate::apps::{AppConfig, Role};
use crate::http::ApiResponse;
use crate::http::error::ApiError;
use crate::http::view::rfc3339;
use crate::state::AppState;
use crate::usecases::operator::{Principal, text_field};
use recharge_core::secrets::{SecretWriteError, SecretWriter, generate_app_secret};
use recharge_core::store::{AppRecord, AppStatus};
use recharge_core::{AppId, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long a `pending` record (a create that failed half-way) blocks a new create of the same id.
const PENDING_TAKEOVER: Duration = Duration::from_secs(300);
/// Default grace period of the previous secret after a rotation.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(86_400);
/// The longest grace period an operator may give.
const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

fn view(app: &App) -> Value {
    let record = app.record.as_ref();
    json!({
        "app_id": app.config.id.as_str(),
        "role": app.config.role,
        "status": app.status.as_str(),
        "source": if record.is_some() { "table" } else { "seed" },
        "secret_name": app.secret_name,
        "secret_version": app.secret_version,
        "previous_secret_valid_until": record.and_then(|r| r.previous_secret_valid_until).map(rfc3339),
        "client": app.config.client,
        "created_at": record.map(|r| rfc3339(r.created_at)),
        "updated_at": record.map(|r| rfc3339(r.updated_at)),
        "updated_by": record.map(|r| r.updated_by.clone()),
    })
}

fn app_id(id: &str) -> Result<AppId, ApiError> {
    AppId::parse(id).map_err(|_| {
        ApiError::bad_request(
            "invalid_field",
            "app id: 1 to 32 characters of [A-Za-z0-9_-]",
        )
    })
}

fn writer(state: &AppState) -> Result<&Arc<dyn SecretWriter>, ApiError> {
    state.secret_writer.as_ref().ok_or_else(|| {
        tracing::error!("an ops app route reached a state without a secret writer");
        ApiError::Internal
    })
}

fn fresh_secret() -> Result<(SecretString, SecretString), ApiError> {
    let secret = generate_app_secret().map_err(|e| {
        tracing::error!(error = %e, "no randomness for a new app secret");
        ApiError::Internal
    })?;
    let stored = SecretString::from(json!({"app_secret": secret.expose_secret()}).to_string());
    Ok((secret, stored))
}

fn write_error(app: &AppId) -> impl Fn(SecretWriteError) -> ApiError + '_ {
    move |e| {
        tracing::error!(app = %app, error = %e, "merchant secret could not be written");
        match e {
            SecretWriteError::Unavailable { .. } => ApiError::Unavailable,
            SecretWriteError::Exists(_) | SecretWriteError::NotFound(_) => ApiError::Internal,
        }
    }
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Conflict {
        code,
        message: message.into(),
    }
}

/// `GET /ops/apps`: every app, seed and table, without secrets.
pub async fn list(state: &AppState) -> Result<ApiResponse, ApiError> {
    let apps = state.apps.list().await?;
    let views: Vec<Value> = apps.iter().map(view).collect();
    Ok(ApiResponse::json(200, &json!({ "apps": views })))
}

/// The app as stored now (read past every cache): its record, or the seed's app.
async fn current(state: &AppState, id: &AppId) -> Result<Option<App>, ApiError> {
    let seed = state.apps.seed();
    Ok(match state.apps.store().get_app(id).await? {
        Some(r) => App::of_record(&r, seed),
        None => seed.get(id).map(|c| App::of_seed(c, seed)),
    })
}

/// A seed app as a record of version 0: the base of the operators' first change to it.
fn seed_record(config: &AppConfig, now: Timestamp) -> AppRecord {
    AppRecord {
        app: config.id.clone(),
        status: AppStatus::Enabled,
        config: serde_json::to_value(config).unwrap_or(Value::Null),
        secret_version: 0,
        previous_secret_valid_until: None,
        version: 0,
        created_at: now,
        updated_at: now,
        updated_by: "apps.json".into(),
    }
}

/// `GET /ops/apps/{id}`.
pub async fn show(state: &AppState, id: &str) -> Result<ApiResponse, ApiError> {
    let id = app_id(id)?;
    let app = current(state, &id).await?.ok_or_else(|| no_app(&id))?;
    Ok(ApiResponse::json(200, &json!({ "app": view(&app) })))
}

fn no_app(id: &AppId) -> ApiError {
    ApiError::NotFound {
        code: "app_not_found",
        message: format!("no app {id}"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: String,
    #[serde(default = "merchant")]
    role: Role,
    #[serde(default)]
    client: ClientAccess,
    operator: String,
}

fn merchant() -> Role {
    Role::Merchant
}

/// `POST /ops/apps`: a new app with a generated secret, shown once in this answer.
pub async fn create(
    state: &AppState,
    body: &[u8],
    principal: &Principal,
) -> Result<ApiResponse, ApiError> {
    let req: CreateBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let id = app_id(&req.id)?;
    let operator = text_field("operator", &req.operator, 64)?;
    let writer = writer(state)?;
    let now = state.clock.now();
    if state.apps.seed().get(&id).is_some() {
        return Err(conflict(
            "app_exists",
            format!("app {id} exists (apps.json)"),
        ));
    }
    let existing = state.apps.store().get_app(&id).await?;
    if let Some(r) = &existing {
        let stuck = r.status == AppStatus::Pending && now.since(r.updated_at) >= PENDING_TAKEOVER;
        if !stuck {
            return Err(conflict("app_exists", format!("app {id} exists")));
        }
        tracing::warn!(app = %id, "taking over a create that failed half-way");
    }
    let config = AppConfig {
        id: id.clone(),
        role: req.role,
        secret_name: Some(format!("{}{id}", state.apps.seed().secret_prefix())),
        client: req.client,
    };
    let secret_name = state.apps.seed().secret_name(&config);
    let by = format!("{operator} ({})", principal.name());
    let claim = AppRecord {
        app: id.clone(),
        status: AppStatus::Pending,
        config: serde_json::to_value(&config).map_err(|_| ApiError::Internal)?,
        secret_version: 1,
        previous_secret_valid_until: None,
        version: existing.as_ref().map_or(1, |r| r.version + 1),
        created_at: now,
        updated_at: now,
        updated_by: by.clone(),
    };
    if !state.apps.store().put_app(&claim).await? {
        return Err(conflict("app_exists", format!("app {id} exists")));
    }
    let (secret, stored) = fresh_secret()?;
    match writer.create(&secret_name, &stored).await {
        Ok(()) => {}
        // Left by a create that failed after writing it: its value was never shown to anyone.
        Err(SecretWriteError::Exists(_)) => writer
            .rotate(&secret_name, &stored)
            .await
            .map_err(write_error(&id))?,
        Err(e) => return Err(write_error(&id)(e)),
    }
    let enabled = AppRecord {
        status: AppStatus::Enabled,
        version: claim.version + 1,
        updated_at: state.clock.now(),
        ..claim
    };
    if !state.apps.store().put_app(&enabled).await? {
        return Err(conflict(
            "changed_concurrently",
            format!("app {id} was changed while it was created; show it and try again"),
        ));
    }
    state.apps.forget(&id);
    tracing::warn!(alert = "app_changed", app = %id, change = "created", operator = %operator,
        principal = %principal.name(), "merchant app created");
    let app = App::of_record(&enabled, state.apps.seed()).ok_or(ApiError::Internal)?;
    Ok(ApiResponse::json(
        201,
        &json!({"app": view(&app), "secret": secret.expose_secret(),
                "note": "the secret is shown once: store it now"}),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Disable,
    Enable,
    Rotate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    action: Action,
    /// Rotate: how long the previous secret keeps verifying (default 24 h, at most 30 days; 0: not at all).
    #[serde(default)]
    grace_secs: Option<u64>,
    operator: String,
}

/// `PUT /ops/apps/{id}`: disable, enable or rotate (the new secret is shown once, in this answer).
pub async fn change(
    state: &AppState,
    id: &str,
    body: &[u8],
    principal: &Principal,
) -> Result<ApiResponse, ApiError> {
    let id = app_id(id)?;
    let req: PutBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    let operator = text_field("operator", &req.operator, 64)?;
    let grace = match (req.action, req.grace_secs) {
        (Action::Rotate, g) => {
            let g = g.map_or(DEFAULT_GRACE, Duration::from_secs);
            if g > MAX_GRACE {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    "grace_secs: at most 2592000 (30 days)",
                ));
            }
            g
        }
        (Action::Disable | Action::Enable, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "grace_secs applies to rotate only",
            ));
        }
        (Action::Disable | Action::Enable, None) => Duration::ZERO,
    };
    let now = state.clock.now();
    let base = match state.apps.store().get_app(&id).await? {
        Some(r) => r,
        None => seed_record(state.apps.seed().get(&id).ok_or_else(|| no_app(&id))?, now),
    };
    if base.status == AppStatus::Pending {
        return Err(conflict(
            "app_pending",
            format!("app {id} is still being created"),
        ));
    }
    let by = format!("{operator} ({})", principal.name());
    let mut next = AppRecord {
        version: base.version + 1,
        updated_at: now,
        updated_by: by,
        ..base.clone()
    };
    let mut secret = None;
    match req.action {
        Action::Disable => next.status = AppStatus::Disabled,
        Action::Enable => next.status = AppStatus::Enabled,
        Action::Rotate => {
            next.secret_version = base.secret_version + 1;
            next.previous_secret_valid_until = Some(now.plus(grace));
            secret = Some(fresh_secret()?);
        }
    }
    let app = App::of_record(&next, state.apps.seed()).ok_or(ApiError::Internal)?;
    let writer = match req.action {
        Action::Rotate => Some(writer(state)?),
        Action::Disable | Action::Enable => None,
    };
    if !state.apps.store().put_app(&next).await? {
        return Err(conflict(
            "changed_concurrently",
            format!("app {id} was changed at the same time; show it and try again"),
        ));
    }
    if let (Some(writer), Some((_, stored))) = (writer, &secret) {
        writer
            .rotate(&app.secret_name, stored)
            .await
            .map_err(write_error(&id))?;
    }
    state.apps.forget(&id);
    let change = match req.action {
        Action::Disable => "disabled",
        Action::Enable => "enabled",
        Action::Rotate => "rotated",
    };
    tracing::warn!(alert = "app_changed", app = %id, change, operator = %operator,
        principal = %principal.name(), "merchant app changed");
    let mut answer = json!({"app": view(&app)});
    if let Some((s, _)) = secret {
        answer["secret"] = json!(s.expose_secret());
        answer["note"] = json!("the secret is shown once: store it now");
    }
    Ok(ApiResponse::json(200, &answer))
}
