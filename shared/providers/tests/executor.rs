//! The HTTP executor against a loopback HTTP/1.1 server started in the test: timeouts, 5xx, garbage, GBK
//! bodies, the body cap and connection reuse. Transport trouble must come out as `Outcome::Unknown`.

// Test helpers outside `#[test]` fns are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use recharge_core::Outcome;
use recharge_providers::{
    Executor, HttpRequest, Limits, Method, Provider, ProviderAccount, TransportError,
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

fn suka(base: &str) -> Provider {
    let acct = ProviderAccount::from_json(&format!(
        r#"{{"id":"dingyin-1","protocol":"suka-xml","secret_name":"s",
            "endpoints":{{"submit":"{base}/ok","query":"{base}/ok"}},
            "timeouts":{{"call_ms":500}},"max_body_bytes":4096}}"#
    ))
    .unwrap();
    Provider::load(acct, r#"{"userid":"10004927","key":"k"}"#).unwrap()
}

#[tokio::test]
async fn gbk_body_is_read_and_classified() {
    let s = server().await;
    let exec = Executor::new().unwrap();
    let p = suka(&s.base);
    let out = exec
        .call(&get(format!("{}/ok", s.base)), &p.account.limits(), |r| {
            p.adapter.parse_submit(r)
        })
        .await;
    assert_eq!(
        out,
        Outcome::Accepted {
            provider_ref: Some("XS1".to_owned())
        }
    );
}

#[tokio::test]
async fn timeout_is_unknown() {
    let s = server().await;
    let exec = Executor::new().unwrap();
    let p = suka(&s.base);
    let started = std::time::Instant::now();
    let out = exec
        .call(&get(format!("{}/slow", s.base)), &limits(300, 4096), |r| {
            p.adapter.parse_submit(r)
        })
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(out, Outcome::Unknown { reason } if reason.code == "timeout"));
}

#[tokio::test]
async fn server_error_is_unknown_even_with_a_failure_code_in_the_body() {
    let s = server().await;
    let exec = Executor::new().unwrap();
    let p = suka(&s.base);
    let out = exec
        .call(&get(format!("{}/500", s.base)), &limits(2000, 4096), |r| {
            p.adapter.parse_submit(r)
        })
        .await;
    assert!(matches!(out, Outcome::Unknown { reason } if reason.code == "http_5xx"));
}

#[tokio::test]
async fn garbage_is_unknown() {
    let s = server().await;
    let exec = Executor::new().unwrap();
    let p = suka(&s.base);
    let out = exec
        .call(
            &get(format!("{}/garbage", s.base)),
            &limits(2000, 4096),
            |r| p.adapter.parse_submit(r),
        )
        .await;
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
async fn connection_refused_is_unknown() {
    // Bind and drop to get a port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let exec = Executor::new().unwrap();
    let out = exec
        .call(
            &get(format!("http://127.0.0.1:{port}/ok")),
            &limits(2000, 4096),
            |_| Outcome::NotFound,
        )
        .await;
    assert!(matches!(out, Outcome::Unknown { reason } if reason.code == "transport"));
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
