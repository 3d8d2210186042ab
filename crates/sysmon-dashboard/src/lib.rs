//! # sysmon-dashboard
//!
//! The web dashboard and HTTP API of sysmon (port 7861 by default): an axum
//! server with a JSON API (`docs/api.md`), live push over Server-Sent Events,
//! Prometheus `/metrics`, and a single-page front end embedded in the binary
//! (uPlot charts from npm, no CDN: it works on a LAN with no internet).
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn sysmon_dashboard::HistoryReader>) -> Result<(), sysmon_dashboard::DashboardError> {
//! use sysmon_dashboard::Dashboard;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7861").await.unwrap();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! Dashboard::new(store).serve(listener, shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! * What the dashboard reads is core's read side ([`HistoryReader`],
//!   [`AnalyticsReader`](sysmon_core::AnalyticsReader), [`LiveFeed`]); the
//!   backends implement it in `sysmon-sinks`, the binary picks one.
//! * [`live`]: the push feed (`/api/events`).
//! * [`auth`]: optional bearer token / login cookie.
//! * [`analytics`]: alerts, anomalies and forecasts as the API shows them.

pub mod analytics;
pub mod api;
pub mod assets;
pub mod auth;
pub mod cache;
pub mod error;
pub mod fleet;
pub mod guesses;
pub mod live;
pub mod metric;
pub mod prometheus;
pub mod stored_analytics;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sysmon_analytics::AnalyticsStats;
use sysmon_core::{Batch, IngestStats};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::info;

pub use analytics::{
    ActiveAlert, AnalyticsSource, Anomaly, ForecastView, MachineForecast, NoAnalytics,
};
pub use error::{ApiError, DashboardError};
pub use metric::{FleetAgg, Metric, Range};
pub use stored_analytics::StoredAnalytics;
pub use sysmon_core::read::{Buckets, HistoryReader, LiveFeed};

/// Seconds since the Unix epoch, now.
pub fn now_epoch_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Tunables of the server.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// A machine seen within this many seconds is online (legacy: 2 minutes).
    pub online_secs: f64,
    /// Beyond this many seconds unseen a machine is offline; in between, stale.
    pub offline_secs: f64,
    /// Longest time a request may take before it is answered with 408.
    pub request_timeout: Duration,
    /// Largest accepted request body, bytes (every route).
    pub body_limit: usize,
    /// How old the fleet index (`fleet.rs`) of a large fleet may get before
    /// it is reloaded in the background.
    pub fleet_index_max_age: Duration,
    /// Machines `/metrics` exposes per-machine gauges for when the scrape
    /// does not say (`?machines=`): `None` every machine, `Some(0)` none
    /// (fleet totals only), `Some(n)` the `n` busiest by CPU.
    pub metrics_machines: Option<usize>,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            online_secs: 120.0,
            offline_secs: 600.0,
            request_timeout: Duration::from_secs(10),
            body_limit: 16 * 1024,
            fleet_index_max_age: Duration::from_secs(2),
            metrics_machines: None,
        }
    }
}

/// A function reporting the consumer lag (messages), when known.
pub type LagFn = Arc<dyn Fn() -> Option<i64> + Send + Sync>;

/// A function rendering extra Prometheus text for `/metrics`.
pub type ExtraMetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Shared state of the handlers.
pub(crate) struct AppState {
    pub(crate) source: Arc<dyn HistoryReader>,
    pub(crate) analytics: Arc<dyn AnalyticsSource>,
    pub(crate) live: broadcast::Sender<Batch>,
    pub(crate) live_kind: &'static str,
    pub(crate) ingest_stats: Option<Arc<IngestStats>>,
    pub(crate) consumer_lag: Option<LagFn>,
    pub(crate) extra_metrics: Option<ExtraMetricsFn>,
    pub(crate) analytics_stats: Option<Arc<AnalyticsStats>>,
    pub(crate) auth_token: Option<String>,
    /// Wrong credentials per client address (the login limit).
    pub(crate) guesses: guesses::Guesses,
    pub(crate) options: DashboardOptions,
    /// The fleet's latest state (`fleet.rs`).
    pub(crate) fleet: fleet::FleetIndex,
    /// Slow fleet-wide answers kept briefly (`cache.rs`).
    pub(crate) slow: cache::SlowAnswers,
    pub(crate) live_clients: AtomicU64,
    pub(crate) shutdown: CancellationToken,
}

/// Builds and runs the dashboard server.
pub struct Dashboard {
    source: Arc<dyn HistoryReader>,
    analytics: Arc<dyn AnalyticsSource>,
    live: Option<(broadcast::Sender<Batch>, &'static str)>,
    live_feed: Option<Arc<dyn LiveFeed>>,
    ingest_stats: Option<Arc<IngestStats>>,
    consumer_lag: Option<LagFn>,
    extra_metrics: Option<ExtraMetricsFn>,
    analytics_stats: Option<Arc<AnalyticsStats>>,
    auth_token: Option<String>,
    options: DashboardOptions,
}

impl Dashboard {
    /// A dashboard reading from `source`, with no live feed yet, no analytics,
    /// no authentication and default options.
    pub fn new(source: Arc<dyn HistoryReader>) -> Self {
        Dashboard {
            source,
            analytics: Arc::new(NoAnalytics),
            live: None,
            live_feed: None,
            ingest_stats: None,
            consumer_lag: None,
            extra_metrics: None,
            analytics_stats: None,
            auth_token: None,
            options: DashboardOptions::default(),
        }
    }

    /// Pushes every batch sent on `live` to the browsers; `kind` names the
    /// feed (`in-process`, `redis`, `poll`) in `/healthz` and the UI. Without
    /// a feed, [`Dashboard::serve`] tails the store once a second.
    pub fn with_live(mut self, live: broadcast::Sender<Batch>, kind: &'static str) -> Self {
        self.live = Some((live, kind));
        self
    }

    /// Pushes every batch of `feed` (the ingester's Redis channel, from
    /// another process) to the browsers; the feed's [`LiveFeed::kind`] names
    /// it in `/healthz` and the UI. [`Dashboard::serve`] follows it until shutdown.
    pub fn with_live_feed(mut self, feed: Arc<dyn LiveFeed>) -> Self {
        self.live = Some((broadcast::channel(256).0, feed.kind()));
        self.live_feed = Some(feed);
        self
    }

    /// Exports the ingester's counters at `/metrics` (same process only).
    pub fn with_ingest_stats(mut self, stats: Arc<IngestStats>) -> Self {
        self.ingest_stats = Some(stats);
        self
    }

    /// Exports the consumer lag at `/metrics`.
    pub fn with_consumer_lag(mut self, lag: LagFn) -> Self {
        self.consumer_lag = Some(lag);
        self
    }

    /// Appends `metrics()` (Prometheus text, `# HELP`/`# TYPE` lines included)
    /// to `/metrics`: gauges of the embedding process, e.g. the ingester's
    /// consumer-group membership.
    pub fn with_extra_metrics(mut self, metrics: ExtraMetricsFn) -> Self {
        self.extra_metrics = Some(metrics);
        self
    }

    /// Exports the analytics' counters at `/metrics` (same process only).
    pub fn with_analytics_stats(mut self, stats: Arc<AnalyticsStats>) -> Self {
        self.analytics_stats = Some(stats);
        self
    }

    /// Requires `token` on every route but `/healthz`; `None` or an empty
    /// token leaves the dashboard open.
    pub fn with_auth_token(mut self, token: Option<String>) -> Self {
        self.auth_token = token.filter(|t| !t.trim().is_empty());
        self
    }

    /// Shows alerts, anomalies and forecasts from `analytics`.
    pub fn with_analytics(mut self, analytics: Arc<dyn AnalyticsSource>) -> Self {
        self.analytics = analytics;
        self
    }

    /// Replaces the default [`DashboardOptions`].
    pub fn with_options(mut self, options: DashboardOptions) -> Self {
        self.options = options;
        self
    }

    /// The axum router (for embedding or tests). Live streams end when
    /// `shutdown` fires. When no live feed was given, the caller must feed
    /// the returned sender (see [`Dashboard::serve`], which tails the store).
    pub fn into_router(self, shutdown: CancellationToken) -> (Router, broadcast::Sender<Batch>) {
        let (live, live_kind) = self
            .live
            .unwrap_or_else(|| (broadcast::channel(64).0, "poll"));
        let state = Arc::new(AppState {
            source: self.source,
            analytics: self.analytics,
            live: live.clone(),
            live_kind,
            ingest_stats: self.ingest_stats,
            consumer_lag: self.consumer_lag,
            extra_metrics: self.extra_metrics,
            analytics_stats: self.analytics_stats,
            auth_token: self.auth_token,
            guesses: guesses::Guesses::default(),
            fleet: fleet::FleetIndex::new(self.options.fleet_index_max_age),
            slow: cache::SlowAnswers::new(self.options.fleet_index_max_age),
            options: self.options.clone(),
            live_clients: AtomicU64::new(0),
            shutdown,
        });
        (router(state, &self.options), live)
    }

    /// Serves on `listener` until `shutdown` fires (open live streams are
    /// closed, in-flight requests finish).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), DashboardError> {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        let poll = self.live.is_none();
        let source = self.source.clone();
        let feed = self.live_feed.clone();
        let (app, live) = self.into_router(shutdown.clone());
        if let Some(feed) = feed {
            tokio::spawn(live::forward(
                feed.subscribe(shutdown.clone()),
                live.clone(),
            ));
        }
        if poll {
            tokio::spawn(live::poll_store(
                source,
                live,
                Duration::from_secs(1),
                shutdown.clone(),
            ));
        }
        info!(%addr, "dashboard listening");
        // Connection info: the login limit counts wrong credentials per address.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(|source| DashboardError::Serve { addr, source })
    }
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'";

fn router(state: Arc<AppState>, options: &DashboardOptions) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/index.html", get(assets::index))
        .route("/assets/{*path}", get(assets::asset))
        .route("/login", get(auth::login_page).post(auth::login_submit))
        .route("/logout", post(auth::logout))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/api/machines", get(api::machines))
        .route("/api/overview", get(api::overview))
        .route("/api/machines/{id}/latest", get(api::latest))
        .route("/api/machines/{id}/series", get(api::series))
        .route("/api/machines/{id}/cores", get(api::cores))
        .route("/api/machines/{id}/processes", get(api::processes))
        .route("/api/machines/{id}/forecast", get(api::forecast))
        .route("/api/fleet", get(api::fleet))
        .route("/api/fleet/summary", get(api::fleet_summary))
        .route("/api/top", get(api::top))
        .route("/api/map", get(api::map))
        .route("/api/scatter", get(api::scatter))
        .route("/api/alerts", get(api::alerts))
        .route("/api/anomalies", get(api::anomalies))
        .route("/api/episodes", get(api::episodes))
        .route("/api/events", get(live::events))
        .fallback(api::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ))
        .layer(middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(options.body_limit))
        .layer(RequestBodyLimitLayer::new(options.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ))
        .layer(middleware::from_fn(json_errors))
        // gzip for clients that ask (never for the event stream: tower-http's
        // default predicate leaves text/event-stream alone).
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .with_state(state)
}

/// Turns any error answer that is not already JSON or a page (axum's 405,
/// tower-http's 408 and 413, extractor rejections) into the API's JSON error.
async fn json_errors(req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let ct = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") || ct.starts_with("text/html") {
        return r;
    }
    let message = match status.as_u16() {
        405 => "method not allowed on this endpoint".to_string(),
        408 => "the request took too long and was cancelled".to_string(),
        413 => "request body too large".to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let allow = r.headers().get(header::ALLOW).cloned();
    let mut out = ApiError::status(status, message).into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}
