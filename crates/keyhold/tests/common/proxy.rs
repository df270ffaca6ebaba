//! The malicious server of the adversarial tests: an HTTP proxy in front of
//! a real `keyhold serve` that records every exchange and, on cue, rewrites
//! requests or responses, or drops a request and answers it itself
//! (SECURITY A–D, F4). Test support only: nothing here is in the binary.
//!
//! ```ignore
//! let proxy = Proxy::start(&server);
//! let b = proxy.device(&b); // b now talks to the server through the proxy
//! let rule = proxy.rewrite_json("GET", "/v1/keys", |_req, keys: &mut AccountKeys| keys.device_wraps.clear());
//! let out = b.run(&["sync", ...]);
//! assert!(rule.hits() > 0);
//! proxy.remove(&rule);
//! ```
//!
//! Paths are matched segment by segment; `*` stands for one segment
//! (`/v1/packs/*`). Per request: every matching request rule runs, in the
//! order installed; then the first matching answer rule answers, or else
//! the request goes to the server; then every matching response rule runs.
//! Rules run on the proxy's threads, without any of its locks held.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode, header};
use bytes::Bytes;

use super::{Device, Server};

/// A request as the proxy received it (request rules may change it before
/// it is forwarded; the log holds it as forwarded).
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// `GET`, `PUT`, …
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any (without `?`).
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl RequestInfo {
    /// Whether the request has this method and its path matches `pattern`.
    pub fn is(&self, method: &str, pattern: &str) -> bool {
        self.method.as_str().eq_ignore_ascii_case(method) && path_matches(pattern, &self.path)
    }

    /// Path segment `i` (`/v1/packs/ab` → 0 "v1", 1 "packs", 2 "ab").
    pub fn segment(&self, i: usize) -> Option<&str> {
        self.path.trim_start_matches('/').split('/').nth(i)
    }

    /// The value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| v.to_owned())
        })
    }

    /// The requested byte range (`Range: bytes=a-b`, the form the client
    /// sends), as a half-open range.
    pub fn range(&self) -> Option<Range<u64>> {
        let spec = self.headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?;
        let (start, end) = spec.split_once('-')?;
        let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
        Some(start..end + 1)
    }

    /// The session token the request carries.
    pub fn bearer(&self) -> Option<&str> {
        self.headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
    }
}

/// A response, from the server or made up by an answer rule.
#[derive(Clone, Debug)]
pub struct ResponseParts {
    /// The status.
    pub status: StatusCode,
    /// Response headers (`content-length` is recomputed from the body).
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// Cut the connection after sending this many bytes of the body, as a
    /// network failure would: the client sees the status and headers, then
    /// a connection closed mid-body.
    pub cut_after: Option<usize>,
}

impl ResponseParts {
    /// A response with this status and body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        ResponseParts {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.into(),
            cut_after: None,
        }
    }

    /// A JSON response.
    pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Self {
        let mut out = Self::new(status, serde_json::to_vec(value).unwrap());
        out.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        out
    }

    /// An error answer in the protocol's shape.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": { "code": code, "message": message } }))
    }

    /// Whether the status is a success.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body parsed as JSON.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not the expected JSON ({e}): {:?}", self.text()))
    }

    /// Replaces the body with `value` as JSON.
    pub fn set_json<T: serde::Serialize>(&mut self, value: &T) {
        self.body = serde_json::to_vec(value).unwrap();
    }

    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).chars().take(300).collect()
    }
}

/// One request and the response the client got.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The request, as forwarded (or answered).
    pub request: RequestInfo,
    /// The response, as delivered to the client.
    pub response: ResponseParts,
    /// Whether the server saw the request (false: an answer rule answered).
    pub forwarded: bool,
}

type RequestFn = dyn Fn(&mut RequestInfo) + Send + Sync;
type ResponseFn = dyn Fn(&RequestInfo, &mut ResponseParts) + Send + Sync;
type AnswerFn = dyn Fn(&RequestInfo) -> ResponseParts + Send + Sync;

#[derive(Clone)]
enum Action {
    Request(Arc<RequestFn>),
    Response(Arc<ResponseFn>),
    Answer(Arc<AnswerFn>),
}

#[derive(Clone)]
struct RuleEntry {
    id: usize,
    method: String,
    pattern: String,
    action: Action,
    hits: Arc<AtomicUsize>,
}

/// An installed rule; `hits` counts the requests it acted on (a test
/// asserts its attack actually happened).
pub struct Rule {
    id: usize,
    hits: Arc<AtomicUsize>,
}

impl Rule {
    /// How many requests this rule acted on.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Everything that passed through, in order of completion. Cloneable, so a
/// rule can consult what came before (e.g. a message sent earlier).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Exchange>>>);

impl Log {
    /// Every exchange so far.
    pub fn all(&self) -> Vec<Exchange> {
        self.0.lock().unwrap().clone()
    }

    /// The exchanges whose request matches.
    pub fn matching(&self, method: &str, pattern: &str) -> Vec<Exchange> {
        self.0.lock().unwrap().iter().filter(|e| e.request.is(method, pattern)).cloned().collect()
    }

    /// How many requests matched.
    pub fn count(&self, method: &str, pattern: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|e| e.request.is(method, pattern)).count()
    }

    /// The newest matching exchange.
    pub fn last(&self, method: &str, pattern: &str) -> Option<Exchange> {
        self.0.lock().unwrap().iter().rev().find(|e| e.request.is(method, pattern)).cloned()
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    fn push(&self, exchange: Exchange) {
        self.0.lock().unwrap().push(exchange);
    }
}

#[derive(Default)]
struct Rules {
    next_id: usize,
    entries: Vec<RuleEntry>,
}

/// A recording, rewriting proxy; dropping it stops it.
pub struct Proxy {
    /// Base URL clients use (`http://127.0.0.1:port`).
    pub url: String,
    rules: Arc<Mutex<Rules>>,
    log: Log,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    rules: Arc<Mutex<Rules>>,
    log: Log,
}

/// Whether `path` matches `pattern` (`*` is one whole segment).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, s): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == s.len() && p.iter().zip(&s).all(|(p, s)| *p == "*" || p == s)
}

impl Proxy {
    /// A proxy in front of `server`.
    pub fn start(server: &Server) -> Proxy {
        Self::in_front_of(&server.url)
    }

    /// A proxy in front of the server at `upstream`.
    pub fn in_front_of(upstream: &str) -> Proxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let rules = Arc::new(Mutex::new(Rules::default()));
        let log = Log::default();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            rules: rules.clone(),
            log: log.clone(),
        });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(move |method: Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move { handle(&shared, method, uri, headers, body).await }
            })
            // Packs are larger than axum's default body limit.
            .layer(axum::extract::DefaultBodyLimit::disable());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Proxy { url: format!("http://{addr}"), rules, log, runtime: Some(runtime) }
    }

    /// `device` (same home and folder) talking to the server through this proxy.
    pub fn device(&self, device: &Device) -> Device {
        Device { name: device.name.clone(), home: device.home.clone(), folder: device.folder.clone(), server: self.url.clone() }
    }

    /// The log (a handle that stays valid while the proxy runs).
    pub fn log(&self) -> Log {
        self.log.clone()
    }

    fn install(&self, method: &str, pattern: &str, action: Action) -> Rule {
        let mut rules = self.rules.lock().unwrap();
        rules.next_id += 1;
        let id = rules.next_id;
        let hits = Arc::new(AtomicUsize::new(0));
        rules.entries.push(RuleEntry { id, method: method.to_owned(), pattern: pattern.to_owned(), action, hits: hits.clone() });
        Rule { id, hits }
    }

    /// Rewrites matching requests before they are forwarded (or answered).
    pub fn rewrite_request(&self, method: &str, pattern: &str, f: impl Fn(&mut RequestInfo) + Send + Sync + 'static) -> Rule {
        self.install(method, pattern, Action::Request(Arc::new(f)))
    }

    /// Rewrites the responses to matching requests: body, status, headers.
    pub fn rewrite_response(
        &self,
        method: &str,
        pattern: &str,
        f: impl Fn(&RequestInfo, &mut ResponseParts) + Send + Sync + 'static,
    ) -> Rule {
        self.install(method, pattern, Action::Response(Arc::new(f)))
    }

    /// Rewrites successful JSON answers as the protocol type `T`.
    pub fn rewrite_json<T>(&self, method: &str, pattern: &str, f: impl Fn(&RequestInfo, &mut T) + Send + Sync + 'static) -> Rule
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.rewrite_response(method, pattern, move |req, resp| {
            if resp.is_success() {
                let mut value: T = resp.parse();
                f(req, &mut value);
                resp.set_json(&value);
            }
        })
    }

    /// Drops matching requests (the server never sees them) and answers
    /// them with what `f` returns.
    pub fn answer(&self, method: &str, pattern: &str, f: impl Fn(&RequestInfo) -> ResponseParts + Send + Sync + 'static) -> Rule {
        self.install(method, pattern, Action::Answer(Arc::new(f)))
    }

    /// Uninstalls a rule.
    pub fn remove(&self, rule: &Rule) {
        self.rules.lock().unwrap().entries.retain(|r| r.id != rule.id);
    }

    /// Uninstalls every rule: from now on the proxy is honest.
    pub fn clear(&self) {
        self.rules.lock().unwrap().entries.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn handle(
    shared: &Shared,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut request =
        RequestInfo { method, path: uri.path().to_owned(), query: uri.query().map(str::to_owned), headers, body: body.to_vec() };
    let matching: Vec<RuleEntry> = {
        let rules = shared.rules.lock().unwrap();
        rules.entries.iter().filter(|r| request.is(&r.method, &r.pattern)).cloned().collect()
    };
    for rule in &matching {
        if let Action::Request(f) = &rule.action {
            rule.hits.fetch_add(1, Ordering::SeqCst);
            f(&mut request);
        }
    }
    let answer = matching.iter().find_map(|r| if let Action::Answer(f) = &r.action { Some((r, f.clone())) } else { None });
    let (mut response, forwarded) = match answer {
        Some((rule, f)) => {
            rule.hits.fetch_add(1, Ordering::SeqCst);
            (f(&request), false)
        }
        None => (forward(shared, &request).await, true),
    };
    for rule in &matching {
        if let Action::Response(f) = &rule.action {
            rule.hits.fetch_add(1, Ordering::SeqCst);
            f(&request, &mut response);
        }
    }
    shared.log.push(Exchange { request, response: response.clone(), forwarded });
    let body = match response.cut_after {
        None => axum::body::Body::from(response.body),
        Some(n) => {
            let mut sent = response.body;
            sent.truncate(n);
            let pieces: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(Bytes::from(sent)), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut by the proxy"))];
            axum::body::Body::from_stream(futures::stream::iter(pieces))
        }
    };
    let mut out = axum::response::Response::new(body);
    *out.status_mut() = response.status;
    for (name, value) in &response.headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out
}

async fn forward(shared: &Shared, request: &RequestInfo) -> ResponseParts {
    let url = match &request.query {
        Some(q) => format!("{}{}?{q}", shared.upstream, request.path),
        None => format!("{}{}", shared.upstream, request.path),
    };
    let mut upstream = shared.http.request(request.method.clone(), url).body(request.body.clone());
    for (name, value) in &request.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.send().await {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            ResponseParts { status, headers, body, cut_after: None }
        }
        Err(e) => ResponseParts::error(502, "bad_gateway", &format!("proxy: upstream failed: {e}")),
    }
}
