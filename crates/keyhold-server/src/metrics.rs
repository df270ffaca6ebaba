//! `/metrics`, in the Prometheus text format (prometheus-client): requests,
//! latency, bytes in and out and errors per route, and what is stored.
//! Labels are route templates (`/v1/packs/{id}`), methods and status codes,
//! never ids: an operator's dashboard learns no more about accounts than
//! its database already holds. The route answers only with the configured
//! bearer token (`metrics_token`), and is absent without one.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::app::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    bytes_in: Family<RouteLabels, Counter>,
    bytes_out: Family<RouteLabels, Counter>,
    store_errors: Family<StoreLabels, Counter>,
    stored_bytes: Family<RegionLabels, Gauge>,
    accounts: Family<RegionLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keyhold");
        let requests = Family::<RequestLabels, Counter>::default();
        // 1 ms to about 65 s: a sign-in to a maximum-size pack on a slow link.
        let latency =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 17)));
        let bytes_in = Family::<RouteLabels, Counter>::default();
        let bytes_out = Family::<RouteLabels, Counter>::default();
        let store_errors = Family::<StoreLabels, Counter>::default();
        let stored_bytes = Family::<RegionLabels, Gauge>::default();
        let accounts = Family::<RegionLabels, Gauge>::default();
        registry.register("http_requests", "HTTP requests answered, by method, route and status", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer, by route", latency.clone());
        registry.register("http_request_body_bytes", "Request body bytes announced, by route", bytes_in.clone());
        registry.register("http_response_body_bytes", "Response body bytes sent, by route", bytes_out.clone());
        registry.register("store_errors", "Failures of the metadata or blob store", store_errors.clone());
        registry.register(
            "stored_bytes",
            "Bytes charged to accounts (packs, revisions, wraps), by residency region",
            stored_bytes.clone(),
        );
        registry.register("accounts", "Accounts, by residency region", accounts.clone());
        Metrics { registry, requests, latency, bytes_in, bytes_out, store_errors, stored_bytes, accounts }
    }
}

impl Metrics {
    /// Counts a store failure (`"metadata"` or `"blobs"`).
    pub fn store_error(&self, store: &'static str) {
        self.store_errors.get_or_create(&StoreLabels { store }).inc();
    }
}

fn content_length(headers: &axum::http::HeaderMap) -> u64 {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Middleware: counts and times every request by its route template.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = req.method().as_str().to_owned();
    let bytes_in = content_length(req.headers());
    let response = next.run(req).await;
    let metrics = &state.metrics;
    let labels = RouteLabels { route: route.clone() };
    metrics.requests.get_or_create(&RequestLabels { method, route, status: response.status().as_u16() }).inc();
    metrics.latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    metrics.bytes_in.get_or_create(&labels).inc_by(bytes_in);
    metrics.bytes_out.get_or_create(&labels).inc_by(content_length(response.headers()));
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    let Some(token) = &state.metrics_token else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let offered = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compared as hashes: equal-length inputs, no early exit on the token.
    if offered.is_none_or(|o| blake3::hash(o.as_bytes()) != blake3::hash(token.as_bytes())) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let metrics = &state.metrics;
    for region in state.regions.all() {
        let labels = RegionLabels { region: region.name.clone() };
        match region.meta.totals().await {
            Ok((accounts, bytes)) => {
                metrics.accounts.get_or_create(&labels).set(i64::try_from(accounts).unwrap_or(i64::MAX));
                metrics.stored_bytes.get_or_create(&labels).set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            Err(e) => {
                metrics.store_error("metadata");
                tracing::error!(region = %region.name, error = %e, "metrics: cannot read the totals");
            }
        }
    }
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
