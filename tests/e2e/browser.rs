//! The sample H5 page (`examples/h5/index.html`) driven in headless Chromium (issue 18): the merchant's server
//! creates a carrier-billing order and hands its client secret to the page, served from its own loopback origin;
//! the page follows the order cross-origin (CORS preflights and all) and the "user" types the code into it.
//!
//! Chromium is driven through chromedriver's W3C WebDriver protocol over plain HTTP (no client library); the
//! operator console's test (`console.rs`) drives it with the same `Driver` and `Session`.
//! `./scripts/test` installs Debian's `chromium` and `chromium-driver` when they are missing; the paths can be
//! given with `RECHARGE_CHROMIUM` and `RECHARGE_CHROMEDRIVER`.

use crate::helpers::*;
use recharge_local::LocalConfig;
use recharge_local::demo::DEMO_VERIFICATION_CODE;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) fn tool(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found (set {var}): run ./scripts/test, which installs Debian's chromium and chromium-driver",
        path.display()
    );
    path
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a loopback port; killed on drop.
pub(crate) struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub(crate) async fn start() -> Driver {
        let port = free_port();
        let child = Command::new(tool("RECHARGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        poll_async(Duration::from_secs(10), "chromedriver answers", || async {
            let r = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await;
        driver
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (ok, v) = self.try_call(method, path, body).await;
        assert!(ok, "WebDriver {path}: {v}");
        v["value"].clone()
    }

    /// A WebDriver command whose failure the caller handles: (succeeded, whole answer).
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (bool, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        (status.is_success(), v)
    }

    pub(crate) async fn session(&self, profile: &Path) -> Session<'_> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": tool("RECHARGE_CHROMIUM", "/usr/bin/chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-proxy-server", "--no-first-run",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = self
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        Session {
            driver: self,
            id: v["sessionId"].as_str().unwrap().to_owned(),
        }
    }
}

pub(crate) struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    pub(crate) async fn get(&self, path: &str) -> Value {
        self.driver
            .call(
                reqwest::Method::GET,
                &format!("/session/{}{path}", self.id),
                None,
            )
            .await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        self.driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}{path}", self.id),
                Some(body),
            )
            .await
    }

    pub(crate) async fn element(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    pub(crate) async fn attribute(&self, css: &str, name: &str) -> Value {
        let e = self.element(css).await;
        self.get(&format!("/element/{e}/attribute/{name}")).await
    }

    pub(crate) async fn displayed(&self, css: &str) -> bool {
        let e = self.element(css).await;
        self.get(&format!("/element/{e}/displayed")).await == true
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        let e = self.element(css).await;
        self.get(&format!("/element/{e}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the page's status element says `status`.
    pub(crate) async fn wait_status(&self, status: &str, timeout: Duration) {
        let started = Instant::now();
        loop {
            let now = self.attribute("#status", "data-status").await;
            if now == status {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the page did not show {status} within {timeout:?}: status {now}, error {:?}",
                self.text("#error").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `css`; if the page re-rendered it between finding and clicking (a
    /// stale element), finds it again.
    pub(crate) async fn click(&self, css: &str) {
        for _ in 0..5 {
            let e = self.element(css).await;
            let (ok, v) = self
                .driver
                .try_call(
                    reqwest::Method::POST,
                    &format!("/session/{}/element/{e}/click", self.id),
                    Some(json!({})),
                )
                .await;
            if ok {
                return;
            }
            assert_eq!(
                v["value"]["error"], "stale element reference",
                "click {css}: {v}"
            );
        }
        panic!("{css} went stale five times in a row");
    }

    /// Types `text` into the first element matching `css`.
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }

    /// Whether an element matches `css` now.
    pub(crate) async fn exists(&self, css: &str) -> bool {
        let v = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        v.as_array().is_some_and(|a| !a.is_empty())
    }

    /// Waits until an element matches `css` (the page renders asynchronously); panics with `what` after
    /// `timeout`, showing the page's error line.
    pub(crate) async fn wait_for(&self, css: &str, what: &str, timeout: Duration) {
        let started = Instant::now();
        while !self.exists(css).await {
            assert!(
                started.elapsed() < timeout,
                "the page did not show {what} ({css}) within {timeout:?}; error line: {:?}",
                self.text("#error").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page with `args` and returns what it returns (one atomic read: nothing can go stale).
    pub(crate) async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Sets the window's size (a laptop screen for the console).
    pub(crate) async fn window(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// A PNG of the visible page.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        let v = self.get("/screenshot").await;
        data_encoding::BASE64
            .decode(v.as_str().unwrap().as_bytes())
            .unwrap()
    }

    pub(crate) async fn close(self) {
        self.driver
            .call(
                reqwest::Method::DELETE,
                &format!("/session/{}", self.id),
                None,
            )
            .await;
    }
}

/// Serves `examples/h5/index.html` (as a merchant's H5 host would) on its own loopback origin.
async fn serve_page() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let page = crate::common::workspace_root().join("examples/h5/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let app = axum::Router::new().route(
        "/index.html",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_h5_page_follows_a_code_order_and_sends_the_code_in_headless_chromium() {
    let (page_addr, page_task) = serve_page().await;
    let page_origin = format!("http://{page_addr}");
    let mut options = options();
    options.config = Some(
        serde_json::from_value::<LocalConfig>(json!({"apps": [
            {"id": "demo", "role": "merchant", "secret": "demo-secret",
             "client": {"allowed_origins": [page_origin]}}
        ]}))
        .unwrap(),
    );
    let h = Harness::start_with(options).await;

    // The merchant's server: its own payment succeeded, so it creates the order and hands the page the secret.
    let no = order_no("h5");
    let created = h
        .demo()
        .create_order(
            &json!({"merchant_order_no": no, "product_code": "billing.code.demo",
                               "account": "13800138000"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let order_id = created.body["order_id"].as_str().unwrap();
    let secret = created.body["client_secret"].as_str().unwrap();
    let url = format!(
        "{page_origin}/index.html?api={}&order={order_id}#secret={secret}",
        h.stack.base_url().replace(':', "%3A").replace('/', "%2F")
    );

    let driver = Driver::start().await;
    let profile = std::env::temp_dir().join(format!("recharge-h5-{}", order_no("profile")));
    let session = driver.session(&profile).await;
    session.post("/url", json!({ "url": url })).await;

    // The page shows the carrier-billing step and asks for the code; the secret left the address bar.
    session
        .wait_status("action_required", Duration::from_secs(15))
        .await;
    assert!(session.displayed("#code-form").await);
    assert_eq!(session.text("#account").await, "138****8000");
    assert_eq!(session.text("#amount").await, "2.00 元");
    let address = session.get("/url").await;
    assert!(!address.as_str().unwrap().contains("secret"), "{address}");

    let input = session.element("#code").await;
    session
        .post(
            &format!("/element/{input}/value"),
            json!({ "text": DEMO_VERIFICATION_CODE }),
        )
        .await;
    let button = session.element("#submit").await;
    session
        .post(&format!("/element/{button}/click"), json!({}))
        .await;
    session
        .wait_status("succeeded", Duration::from_secs(20))
        .await;
    assert!(!session.displayed("#code-form").await);
    assert_eq!(session.text("#error").await, "");
    session.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    page_task.abort();

    // What the page did is what the gateway recorded: the order succeeded, delivered once.
    let stored = h.stored(DEMO.0, &no).await;
    assert_eq!(stored.public_view().status.as_str(), "succeeded");
    assert_eq!(deliveries(&h.ledger_of(&stored)), 1);
}
