//! `recharge-sim`: simulators of the five recharge provider protocol families of `docs/providers/README.md`, each
//! written from that document alone (this crate depends on no other crate of the workspace, so that a
//! misreading in the gateway's adapters is caught, not mirrored).
//!
//! [`start`] binds a simulator (ephemeral loopback port by default) and returns a [`RunningSim`] with its base
//! URL, its ledgers, and a way to stop it. Every simulator also serves `GET /_sim/orders`,
//! `GET /_sim/callbacks`, `GET /_sim/balance` and `GET /_sim/dialect` (the [`Dialect`] in force).

pub mod callback;
pub mod codec;
pub mod dialect;
pub mod engine;
pub mod ice_microservice;
pub mod ledger;
pub mod openapi_rsa;
pub mod script;
pub mod sms_billing;
pub mod suka_xml;
pub mod timing;
pub mod wikeyun;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use tokio::sync::oneshot;

pub use crate::dialect::Dialect;
use crate::engine::{Capabilities, Engine, Timing};
pub use crate::ledger::{CallbackAttempt, OrderRecord, OrderState};
pub use crate::script::ChaosConfig;

/// The five protocol families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// 001: 鼎音 `gameonlinepay.do`, GBK forms and GB2312-declared XML.
    SukaXml,
    /// 002: 微客云 wikeyun `rest/...`, TOP-style MD5, JSON callbacks.
    Wikeyun,
    /// 003: 彩生活 ICE micro-service, query-driven.
    IceMicroservice,
    /// 004: 兑换系统开放接口, header-signed JSON (SHA256withRSA or MD5).
    OpenapiRsa,
    /// 000: SMS proxy billing (MP dynamic SMS and PC verification code).
    SmsBilling,
}

impl Protocol {
    /// The family's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::SukaXml => "suka-xml",
            Protocol::Wikeyun => "wikeyun",
            Protocol::IceMicroservice => "ice-microservice",
            Protocol::OpenapiRsa => "openapi-rsa",
            Protocol::SmsBilling => "sms-billing",
        }
    }
}

impl FromStr for Protocol {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        [
            Protocol::SukaXml,
            Protocol::Wikeyun,
            Protocol::IceMicroservice,
            Protocol::OpenapiRsa,
            Protocol::SmsBilling,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| SimError::UnknownProtocol(s.to_owned()))
    }
}

/// Errors starting a simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// `--protocol` named no family.
    #[error(
        "unknown protocol {0:?} (expected suka-xml, wikeyun, ice-microservice, openapi-rsa or sms-billing)"
    )]
    UnknownProtocol(String),
    /// The credentials JSON does not have the protocol's shape.
    #[error("bad credentials for {protocol}")]
    Credentials {
        /// The protocol.
        protocol: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// This build does not simulate the protocol yet.
    #[error("the {0} simulator is not implemented yet")]
    NotImplemented(&'static str),
    /// A key in the credentials could not be used.
    #[error("bad key material: {0}")]
    Key(String),
    /// The listen address could not be bound.
    #[error("cannot listen")]
    Bind(#[source] std::io::Error),
    /// The callback HTTP client could not be built.
    #[error("cannot build the callback client")]
    Client(#[source] reqwest::Error),
}

/// Everything a simulator needs to start.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Which protocol family to speak.
    pub protocol: Protocol,
    /// Where to listen; `127.0.0.1:0` picks an ephemeral loopback port.
    pub listen: SocketAddr,
    /// The protocol's credentials JSON (shapes in docs/simulators.md §4 and on each module's `Credentials`).
    pub credentials: serde_json::Value,
    /// Callback target when a request names none (suka `back_url`, wikeyun `notify_url`, 004 `callbackUrl`
    /// missing), and the sms-billing sync URL.
    pub callback_url: Option<String>,
    /// Divides every protocol duration: 60 makes a minute a second.
    pub time_scale: f64,
    /// How long an ordinary order takes to finish, before scaling (default 2 s).
    pub settle: Duration,
    /// How long script 0009 and chaos late failures stay processing, before scaling (default 1 h).
    pub long_processing: Duration,
    /// How long a hanging submit holds its response (default 35 s; not scaled).
    pub hang: Duration,
    /// Per-attempt timeout of callback requests (default 5 s; not scaled).
    pub callback_timeout: Duration,
    /// Scripted accounts on (default) or off (`--no-scripts`, a clean backup provider).
    pub scripts: bool,
    /// Seeded chaos mode.
    pub chaos: Option<ChaosConfig>,
    /// Replaces the protocol's callback retry delays (before scaling); the number of retries is its length.
    pub callback_schedule: Option<Vec<Duration>>,
    /// How this account departs from the protocol's documented behaviour (default: not at all).
    pub dialect: Dialect,
}

impl SimConfig {
    /// Defaults for `protocol` with these credentials, on an ephemeral loopback port.
    pub fn new(protocol: Protocol, credentials: serde_json::Value) -> SimConfig {
        SimConfig {
            protocol,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials,
            callback_url: None,
            time_scale: 1.0,
            settle: Duration::from_secs(2),
            long_processing: Duration::from_secs(3600),
            hang: Duration::from_secs(35),
            callback_timeout: Duration::from_secs(5),
            scripts: true,
            chaos: None,
            callback_schedule: None,
            dialect: Dialect::default(),
        }
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct RunningSim {
    base_url: String,
    engine: Arc<Engine>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every order recorded so far.
    pub fn orders(&self) -> Vec<OrderRecord> {
        self.engine.ledger.orders()
    }

    /// Every callback attempt so far.
    pub fn callbacks(&self) -> Vec<CallbackAttempt> {
        self.engine.ledger.callbacks()
    }

    /// The dialect this simulator speaks.
    pub fn dialect(&self) -> &Dialect {
        &self.engine.dialect
    }

    /// Current merchant balance in fen.
    pub fn balance_fen(&self) -> i64 {
        self.engine.ledger.balance_fen()
    }

    /// Stops serving and aborts pending lifecycles and callbacks.
    pub async fn stop(mut self) {
        self.halt();
        let _ = (&mut self.server).await;
    }

    /// Serves until the server task ends (the binary uses this after Ctrl-C wiring).
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }

    fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.engine.abort_all();
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Starts a simulator as `config` says. Must be called inside a Tokio runtime.
pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
    // Callbacks go straight to their target: a proxy from the environment would swallow loopback targets.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(config.callback_timeout)
        .build()
        .map_err(SimError::Client)?;
    let timing = Timing {
        time_scale: config.time_scale,
        settle: config.settle,
        long_processing: config.long_processing,
        hang: config.hang,
    };
    let caps = match config.protocol {
        // wikeyun alone has states for reversal (10 返销) and partial delivery (11 部分到账).
        Protocol::Wikeyun => Capabilities {
            reversal: true,
            partial: true,
        },
        Protocol::SukaXml
        | Protocol::IceMicroservice
        | Protocol::OpenapiRsa
        | Protocol::SmsBilling => Capabilities::default(),
    };
    // The dialect's in-band error rate replaces the chaos rate (chaos on with that rate alone if it was off).
    let chaos = match config.dialect.inband_error_after_recording {
        None => config.chaos.clone(),
        Some(rate) => Some(ChaosConfig {
            inband_error: rate,
            ..config.chaos.clone().unwrap_or_default()
        }),
    };
    let build = |balance_fen: i64| {
        let ledger = ledger::Ledger::new(balance_fen);
        if config.dialect.planted_double_delivery {
            ledger.plant_double_delivery();
        }
        let mut engine = Engine::new(
            ledger,
            timing.clone(),
            config.scripts,
            chaos.clone(),
            config.callback_url.clone(),
            http.clone(),
            caps,
        );
        engine.callback_schedule = config.callback_schedule.clone();
        engine.dialect = config.dialect.clone();
        Arc::new(engine)
    };
    let creds = config.credentials.clone();
    let (engine, router) = match config.protocol {
        Protocol::SukaXml => suka_xml::router(creds, build)?,
        Protocol::Wikeyun => wikeyun::router(creds, build)?,
        Protocol::IceMicroservice => ice_microservice::router(creds, build)?,
        Protocol::OpenapiRsa => openapi_rsa::router(creds, build)?,
        Protocol::SmsBilling => sms_billing::router(creds, build)?,
    };
    let app = router.merge(ledger_routes(Arc::clone(&engine)));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(SimError::Bind)?;
    let addr = listener.local_addr().map_err(SimError::Bind)?;
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "simulator server stopped with an error");
        }
    });
    Ok(RunningSim {
        base_url: format!("http://{addr}"),
        engine,
        shutdown: Some(tx),
        server,
    })
}

/// Parses a protocol's credentials JSON into its typed shape.
pub(crate) fn parse_credentials<T: serde::de::DeserializeOwned>(
    protocol: Protocol,
    value: serde_json::Value,
) -> Result<T, SimError> {
    serde_json::from_value(value).map_err(|source| SimError::Credentials {
        protocol: protocol.name(),
        source,
    })
}

fn ledger_routes(engine: Arc<Engine>) -> Router {
    Router::new()
        .route(
            "/_sim/orders",
            get(|State(e): State<Arc<Engine>>| async move { Json(e.ledger.orders()) }),
        )
        .route(
            "/_sim/callbacks",
            get(|State(e): State<Arc<Engine>>| async move { Json(e.ledger.callbacks()) }),
        )
        .route(
            "/_sim/dialect",
            get(|State(e): State<Arc<Engine>>| async move { Json(e.dialect.clone()) }),
        )
        .route(
            "/_sim/balance",
            get(|State(e): State<Arc<Engine>>| async move {
                Json(serde_json::json!({ "balance_fen": e.ledger.balance_fen() }))
            }),
        )
        .route(
            "/_sim/balance/history",
            get(|State(e): State<Arc<Engine>>| async move { Json(e.ledger.movements()) }),
        )
        .route("/_sim/balance/top-up", axum::routing::post(top_up))
        .route("/_sim/foreign-order", axum::routing::post(foreign_order))
        .route(
            "/_sim/orders/{caller_order_id}/change",
            axum::routing::post(change_after_final),
        )
        .with_state(engine)
}

/// `{"fen": N}`.
#[derive(Debug, serde::Deserialize)]
struct Amount {
    fen: i64,
}

/// `POST /_sim/balance/top-up {"fen": N}`: the merchant pays money in (docs/simulators.md).
async fn top_up(State(e): State<Arc<Engine>>, Json(a): Json<Amount>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if a.fen <= 0 {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "fen: a positive amount",
        )
            .into_response();
    }
    Json(serde_json::json!({ "balance_fen": e.ledger.top_up(a.fen) })).into_response()
}

/// `POST /_sim/foreign-order {"fen": N}`: an order the platform has and the caller never sent, debited.
async fn foreign_order(
    State(e): State<Arc<Engine>>,
    Json(a): Json<Amount>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if a.fen <= 0 {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "fen: a positive amount",
        )
            .into_response();
    }
    match e.ledger.plant_foreign_order(a.fen) {
        Ok(order) => Json(order).into_response(),
        Err(_) => (axum::http::StatusCode::CONFLICT, "balance too low").into_response(),
    }
}

/// `{"state": "reversed" | "failed"}`.
#[derive(Debug, serde::Deserialize)]
struct Change {
    state: ledger::OrderState,
}

/// `POST /_sim/orders/{caller_order_id}/change {"state": "reversed"}`: a final order changes on the platform's
/// side after the fact, with the refund and no callback; only a query shows it.
async fn change_after_final(
    State(e): State<Arc<Engine>>,
    axum::extract::Path(caller): axum::extract::Path<String>,
    Json(c): Json<Change>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match e.ledger.change_after_final(&caller, c.state) {
        Some(order) => Json(order).into_response(),
        None => (
            axum::http::StatusCode::CONFLICT,
            "no such final order, or not a change to reversed or failed",
        )
            .into_response(),
    }
}
