//! The HTTP executor and the registry's runners against a loopback HTTP/1.1 server started in the test:
//! timeouts, 5xx, garbage, GBK bodies, the body cap, connection reuse, a port nothing listens on and a server
//! that resets after reading the request. Transport trouble must come out as `Outcome::Unknown`, except a
//! connection that was never made, which a submit calls a refusal (docs/providers/README.md §4 rule 3).

// Test helpers outside `#[test]` fns are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use recharge_core::{
    AttemptId, AttemptNo, Fen, OrderId, Outcome, ProductKind, ProviderAccountId, Route, Timestamp,
};
use recharge_providers::{
    Executor, Expect, HttpRequest, Limits, Method, Provider, ProviderAccount, QueryRequest,
    SubmitRequest, TransportError,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Server {
    base: String,
    connections: Arc<AtomicUsize>,
}

fn gbk_order(code: &str) -> Vec<u8> {
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?><order><orderid>XS1</orderid><productname>游戏直充</productname><resultno>{code}</resultno></order>"
    );
    let (bytes, _, _) = encoding_rs::GBK.encode(&text);
    bytes.into_owned()
}

async fn respond(stream: &mut TcpStream, path: &str) -> std::io::Result<()> {
    if path == "/reset" {
        // The request was read in full: close with a reset (SO_LINGER 0), answering nothing. A zero linger
        // does not block on drop, which is what the deprecation warns about.
        #[allow(deprecated)]
        stream.set_linger(Some(Duration::ZERO))?;
        return Err(std::io::Error::other("reset on purpose"));
    }
    let (status, body, extra): (&str, Vec<u8>, &str) = match path {
        "/ok" => ("200 OK", gbk_order("0"), ""),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ("200 OK", gbk_order("0"), "")
        }
        "/500" => ("500 Internal Server Error", gbk_order("9"), ""),
        "/garbage" => ("200 OK", b"\x00\xffnot xml <<<".to_vec(), ""),
        "/big" => ("200 OK", vec![b'x'; 10_000], ""),
        _ => ("404 Not Found", Vec::new(), ""),
    };
    if path == "/chunked-big" {
        let mut head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..20 {
            head.extend(b"3e8\r\n");
            head.extend(vec![b'y'; 1000]);
            head.extend(b"\r\n");
        }
        head.extend(b"0\r\n\r\n");
        return stream.write_all(&head).await;
    }
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await
}

async fn serve_connection(mut stream: TcpStream) {
    let mut buf = Vec::new();
    loop {
        // Read one request head (and its Content-Length body), answer, and keep the connection open.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .split('?')
            .next()
            .unwrap_or("/")
            .to_owned();
        if respond(&mut stream, &path).await.is_err() {
            return;
        }
    }
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_connection(stream));
        }
    });
    Server {
        base: format!("http://{addr}"),
        connections,
    }
}

fn limits(call_ms: u64, cap: usize) -> Limits {
    Limits {
        call_timeout: Duration::from_millis(call_ms),
        max_body_bytes: cap,
    }
}

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: Method::Post,
        url,
        headers: vec![(
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded;charset=gbk".to_owned(),
        )],
        body: b"userid=1".to_vec(),
    }
}

fn suka(base: &str, path: &str, call_ms: u64) -> Provider {
    let acct = ProviderAccount::from_json(&format!(
        r#"{{"id":"dingyin-1","protocol":"suka-xml","secret_name":"s",
            "endpoints":{{"submit":"{base}{path}","query":"{base}{path}"}},
            "timeouts":{{"call_ms":{call_ms}}},"max_body_bytes":4096}}"#
    ))
    .unwrap();
    Provider::load(acct, r#"{"userid":"10004927","key":"k"}"#).unwrap()
}

fn attempt() -> AttemptId {
    AttemptId::new(
        &OrderId::parse("7JUWX4CXN3GSIQOKCCTK").unwrap(),
        AttemptNo::FIRST,
    )
}

fn submit_request() -> SubmitRequest {
    SubmitRequest {
        attempt: attempt(),
        route: Route {
            provider_account: ProviderAccountId::parse("dingyin-1").unwrap(),
            provider_product: "3312".to_owned(),
            cost: Fen::new(9850),
        },
        kind: ProductKind::Game,
        account: "player-1".to_owned(),
        face_value: Fen::new(10_000),
        extra: Default::default(),
        callback_url: None,
    }
}

async fn submit(p: &Provider) -> Outcome {
    let exec = Executor::new().unwrap();
    p.submit(
        &exec,
        &submit_request(),
        Timestamp::from_millis(1_700_000_000_000),
    )
    .await
    .outcome
}

async fn query(p: &Provider) -> Outcome {
    let exec = Executor::new().unwrap();
    let id = attempt();
    let expect = Expect {
        attempt: id.clone(),
        cost: Fen::new(9850),
        face: Fen::new(10_000),
        provider_ref: None,
    };
    let req = QueryRequest {
        attempt: id.clone(),
        provider_ref: None,
    };
    p.query(
        &exec,
        &req,
        &expect,
        Timestamp::from_millis(1_700_000_000_000),
    )
    .await
    .outcome
}

fn closed_port() -> u16 {
    // Bind and drop to get a port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn gbk_body_is_read_and_classified() {
    let s = server().await;
    assert_eq!(
        submit(&suka(&s.base, "/ok", 2000)).await,
        Outcome::Accepted {
            provider_ref: Some("XS1".to_owned())
        }
    );
}

#[tokio::test]
async fn timeout_is_unknown() {
    let s = server().await;
    let started = std::time::Instant::now();
    let out = submit(&suka(&s.base, "/slow", 300)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(out, Outcome::Unknown { reason } if reason.code == "timeout"));
}

#[tokio::test]
async fn server_error_is_unknown_even_with_a_failure_code_in_the_body() {
    let s = server().await;
    let out = submit(&suka(&s.base, "/500", 2000)).await;
    assert!(matches!(out, Outcome::Unknown { reason } if reason.code == "http_5xx"));
}

#[tokio::test]
async fn garbage_is_unknown() {
    let s = server().await;
    let out = submit(&suka(&s.base, "/garbage", 2000)).await;
    assert!(matches!(out, Outcome::Unknown { reason } if reason.code == "unparsable"));
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_before_decoding() {
    let s = server().await;
    let exec = Executor::new().unwrap();
    for path in ["/big", "/chunked-big"] {
        let r = exec
            .execute(&get(format!("{}{path}", s.base)), &limits(2000, 4096))
            .await;
        assert!(matches!(r, Err(TransportError::TooLarge(4096))), "{path}");
        assert!(matches!(
            r.unwrap_err().to_outcome(),
            Outcome::Unknown { reason } if reason.code == "body_too_large"
        ));
    }
}

#[tokio::test]
async fn a_submit_whose_connection_was_never_made_is_a_refusal_that_may_fail_over() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    let out = submit(&suka(&base, "/ok", 2000)).await;
    assert!(
        matches!(&out, Outcome::Rejected { failover_allowed: true, reason } if reason.code == "not_connected"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_submit_to_an_unresolvable_host_is_a_refusal_that_may_fail_over() {
    // `.invalid` never resolves (RFC 6761).
    let out = submit(&suka("http://provider.invalid", "/ok", 2000)).await;
    assert!(
        matches!(&out, Outcome::Rejected { failover_allowed: true, reason } if reason.code == "not_connected"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_query_whose_connection_was_never_made_learns_nothing() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    let out = query(&suka(&base, "/ok", 2000)).await;
    assert!(
        matches!(&out, Outcome::Unknown { reason } if reason.code == "not_connected"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_server_that_resets_after_reading_the_request_leaves_the_submit_unknown() {
    let s = server().await;
    let out = submit(&suka(&s.base, "/reset", 2000)).await;
    assert!(
        matches!(&out, Outcome::Unknown { reason } if reason.code == "transport"),
        "{out:?}"
    );
}

#[tokio::test]
async fn one_client_reuses_its_connection() {
    let s = server().await;
    let exec = Executor::new().unwrap();
    for _ in 0..5 {
        let r = exec
            .execute(&get(format!("{}/ok", s.base)), &limits(2000, 4096))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
}
