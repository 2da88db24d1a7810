//! A minimal Lambda runtime API (the 2018-06-01 interface a custom runtime talks to), enough to run a
//! function's real `bootstrap` binary outside Lambda: `GET /runtime/invocation/next` hands out the events the
//! bench queues, `POST …/{id}/response` and `…/{id}/error` answer them, `POST /runtime/init/error` reports a
//! failed cold start. It also stamps the moment of the first `next` call: the end of the function's init.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Answer {
    Response(Vec<u8>),
    Error(Vec<u8>),
}

/// One answered invocation: the answer and the time from handing the event out to receiving the answer.
#[derive(Debug)]
pub struct Invoked {
    pub answer: Answer,
    pub in_function: Duration,
}

#[derive(Debug)]
struct Queued {
    body: Vec<u8>,
    reply: oneshot::Sender<Invoked>,
}

#[derive(Debug)]
struct Shared {
    first_next: watch::Sender<Option<Instant>>,
    init_error: Mutex<Option<String>>,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
    in_flight: Mutex<HashMap<String, (Instant, oneshot::Sender<Invoked>)>>,
    next_id: AtomicU64,
}

/// A running runtime API on an ephemeral loopback port. Dropping it stops the server.
#[derive(Debug)]
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Queued>,
    first_next: watch::Receiver<Option<Instant>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    pub async fn start() -> anyhow::Result<RuntimeApi> {
        let (events, queue) = mpsc::unbounded_channel();
        let (first_tx, first_next) = watch::channel(None);
        let shared = Arc::new(Shared {
            first_next: first_tx,
            init_error: Mutex::new(None),
            queue: tokio::sync::Mutex::new(queue),
            in_flight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "runtime API server stopped");
            }
        });
        Ok(RuntimeApi {
            addr,
            shared,
            events,
            first_next,
            server,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Waits for the function's first `next` call and returns when it came.
    pub async fn first_next(&mut self) -> anyhow::Result<Instant> {
        let seen = self.first_next.wait_for(Option::is_some).await?;
        (*seen).ok_or_else(|| anyhow::anyhow!("the first call was not recorded"))
    }

    /// What the function reported through `/runtime/init/error`, if anything.
    pub fn init_error(&self) -> Option<String> {
        self.shared
            .init_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Queues one event and waits for the function's answer.
    pub async fn invoke(&self, event: &serde_json::Value) -> anyhow::Result<Invoked> {
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Queued {
                body: serde_json::to_vec(event)?,
                reply,
            })
            .map_err(|_| anyhow::anyhow!("the runtime API is gone"))?;
        Ok(answer.await?)
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.first_next.send_if_modified(|first| {
        if first.is_none() {
            *first = Some(Instant::now());
            true
        } else {
            false
        }
    });
    let queued = shared.queue.lock().await.recv().await;
    let Some(Queued { body, reply }) = queued else {
        return StatusCode::GONE.into_response();
    };
    let id = format!(
        "bench-{:08}",
        shared.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or(0);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", id.clone());
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
    );
    set("content-type", "application/json".to_owned());
    shared
        .in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id, (Instant::now(), reply));
    (StatusCode::OK, headers, body).into_response()
}

fn finish(shared: &Shared, id: &str, answer: Answer) -> StatusCode {
    let entry = shared
        .in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(id);
    match entry {
        Some((handed_out, reply)) => {
            let _ = reply.send(Invoked {
                answer,
                in_function: handed_out.elapsed(),
            });
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    finish(&shared, &id, Answer::Response(body.to_vec()))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    finish(&shared, &id, Answer::Error(body.to_vec()))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared
        .init_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a test: failing loudly is its job
    use super::*;

    const BASE: &str = "/2018-06-01/runtime";

    /// One turn of a custom runtime's loop: `next`, then `response` (or `error` for bodies saying "fail").
    async fn serve_one(client: &reqwest::Client, api: &str) {
        let next = client
            .get(format!("http://{api}{BASE}/invocation/next"))
            .send()
            .await
            .unwrap();
        let id = next.headers()["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(next.headers().contains_key("lambda-runtime-deadline-ms"));
        assert!(
            next.headers()
                .contains_key("lambda-runtime-invoked-function-arn")
        );
        let event: serde_json::Value = next.json().await.unwrap();
        let (kind, body) = if event["n"] == "fail" {
            ("error", r#"{"errorType":"Permanent.BadEvent"}"#.to_owned())
        } else {
            ("response", format!(r#"{{"echo":{event}}}"#))
        };
        let posted = client
            .post(format!("http://{api}{BASE}/invocation/{id}/{kind}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 202);
    }

    #[tokio::test]
    async fn hands_out_events_in_order_and_returns_each_answer_with_the_first_next_stamped() {
        let mut api = RuntimeApi::start().await.unwrap();
        let address = api.address();
        let before = Instant::now();
        let function = tokio::spawn(async move {
            let client = reqwest::Client::new();
            for _ in 0..3 {
                serve_one(&client, &address).await;
            }
        });
        let first = api.first_next().await.unwrap();
        assert!(first >= before);
        for n in [1, 2] {
            let invoked = api.invoke(&serde_json::json!({"n": n})).await.unwrap();
            match invoked.answer {
                Answer::Response(body) => {
                    assert_eq!(body, format!(r#"{{"echo":{{"n":{n}}}}}"#).into_bytes());
                }
                Answer::Error(body) => panic!("unexpected error {body:?}"),
            }
        }
        let failed = api.invoke(&serde_json::json!({"n": "fail"})).await.unwrap();
        assert!(matches!(failed.answer, Answer::Error(ref b) if b.starts_with(b"{\"errorType\"")));
        function.await.unwrap();
        assert_eq!(api.first_next().await.unwrap(), first, "stamped once");
        assert_eq!(api.init_error(), None);
    }

    #[tokio::test]
    async fn records_an_init_error_and_refuses_answers_to_unknown_requests() {
        let api = RuntimeApi::start().await.unwrap();
        let client = reqwest::Client::new();
        let r = client
            .post(format!("http://{}{BASE}/init/error", api.address()))
            .body(r#"{"errorMessage":"RECHARGE_TABLE is not set"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert!(api.init_error().unwrap().contains("RECHARGE_TABLE"));
        let r = client
            .post(format!(
                "http://{}{BASE}/invocation/nobody/response",
                api.address()
            ))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}
