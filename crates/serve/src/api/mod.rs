//! The HTTP surface: routes, shared state, the OpenAI-shaped error body, API keys, and the
//! small endpoints (page, health, readiness, metrics). Video endpoints are in [`videos`],
//! request parsing and submission in [`create`].

mod create;
mod videos;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{watch, Notify};

use crate::auth::{self, Keys};
use crate::generator::{Catalog, InputError, JobInput};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, VideoRow};

/// How long clients should wait between polls of a running job (`openai-poll-after-ms`).
const POLL_AFTER_MS: &str = "500";

/// The most of a refused request's body that is read and thrown away before the refusal (413,
/// 401) goes out, and how long that may take. Answering without reading closes the connection
/// under a client that is still writing, which then sees a broken pipe instead of the answer
/// (nginx's "lingering close" exists for the same reason). Past either bound the connection is
/// just closed.
const DRAIN_MAX_BYTES: u64 = 64 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of the API.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_upload_bytes: usize,
    /// Most queued jobs.
    pub max_queue: u64,
}

/// Whether the workers have loaded their models.
#[derive(Debug)]
pub struct Readiness {
    pub expected: usize,
    pub loaded: AtomicUsize,
}

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub catalog: Catalog,
    pub keys: Keys,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// Wakes this server's idle workers when a job arrives.
    pub wake: Arc<Notify>,
    pub readiness: Arc<Readiness>,
    /// Turns true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}

type Shared = Arc<AppState>;

/// Every route of the server.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/v1/videos", post(create::create).get(videos::list))
        .route("/v1/videos/sync", post(create::sync))
        .route(
            "/v1/videos/{id}",
            get(videos::retrieve).delete(videos::delete),
        )
        .route("/v1/videos/{id}/content", get(videos::content))
        .route("/v1/videos/{id}/events", get(videos::events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    let body_limit = state.limits.max_upload_bytes;
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such endpoint; the API is under /v1/videos") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that HTTP method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_oversize,
        ))
        .with_state(state)
}

/// 413 for a body whose declared length is over the limit, before any handler (or the key
/// check) runs, after reading and discarding it within the drain bounds. Bodies without a
/// length are cut off by the extractors' limit instead.
async fn refuse_oversize(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let limit = s.limits.max_upload_bytes;
    if declared_length(&req).is_none_or(|n| n <= limit as u64) {
        return next.run(req).await;
    }
    discard(req).await;
    ApiError::too_large(limit).into_response()
}

/// The body length a request declares (`Content-Length`), when it declares one.
fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads and throws away a request's body within the drain bounds, so that an answer given
/// without it reaches the client. A body declared longer than the bound is not read at all.
async fn discard(req: Request) {
    if declared_length(&req).is_some_and(|n| n > DRAIN_MAX_BYTES) {
        return;
    }
    let mut body = req.into_body().into_data_stream();
    let drain = async {
        let mut read = 0u64;
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_MAX_BYTES {
                break;
            }
        }
    };
    // A client too slow to finish in time gets the connection closed, as it would anyway.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
}

/// 401 unless the request carries one of the keys (when keys are configured).
async fn require_key(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let ok =
        !s.keys.required() || auth::presented(req.headers()).is_some_and(|k| s.keys.accepts(&k));
    if ok {
        return next.run(req).await;
    }
    discard(req).await;
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "missing or wrong API key; send it as `Authorization: Bearer KEY`",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The built-in page.
async fn page() -> Html<&'static str> {
    Html(include_str!("../page.html"))
}

/// 200 when every worker has loaded its models and the database answers, else 503.
async fn readyz(State(s): State<Shared>) -> Response {
    let loaded = s.readiness.loaded.load(Ordering::Relaxed);
    let database = s.store.ping().await;
    let stopping = *s.shutdown.borrow();
    let ready = loaded == s.readiness.expected && database && !stopping;
    let body = Json(json!({
        "ready": ready,
        "workers_loaded": loaded,
        "workers": s.readiness.expected,
        "database": database,
        "shutting_down": stopping,
        "models": s.catalog.model_names(),
    }));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn metrics(State(s): State<Shared>) -> Result<Response, ApiError> {
    let counts = s.store.counts().await?;
    let text = s.metrics.render(&counts);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// An error answer in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    param: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "the request is larger than this server's limit of {limit} bytes; send a \
                 smaller file (the limit is --max-upload-bytes)"
            ),
        )
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        Self {
            param: Some(e.param),
            ..Self::bad_request("invalid_value", e.message)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!("{e}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the job store failed ({e}); try again"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.status.as_u16() {
            401 => "authentication_error",
            429 => "rate_limit_error",
            500.. => "server_error",
            _ => "invalid_request_error",
        };
        let body = json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.code,
        }});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A video object as the OpenAI API returns it (times in Unix seconds).
#[derive(Debug, Serialize)]
pub struct VideoObject {
    id: String,
    object: &'static str,
    status: &'static str,
    progress: i64,
    created_at: i64,
    completed_at: Option<i64>,
    expires_at: Option<i64>,
    model: String,
    prompt: String,
    seconds: String,
    size: String,
    remixed_from_video_id: Option<String>,
    error: Option<serde_json::Value>,
    /// Cadence's own: the seed, to make the same clip again.
    seed: Option<u64>,
}

impl From<&VideoRow> for VideoObject {
    fn from(r: &VideoRow) -> Self {
        let seconds = |ms: i64| ms.div_euclid(1000);
        let v = &r.video;
        Self {
            id: v.id.clone(),
            object: "video",
            status: r.status.as_str(),
            progress: r.progress,
            created_at: seconds(v.created_at),
            completed_at: r.completed_at.map(seconds),
            expires_at: r.expires_at.map(seconds),
            model: v.model.clone(),
            prompt: v.prompt.clone(),
            seconds: v.seconds.clone(),
            size: v.size.clone(),
            remixed_from_video_id: None,
            error: r.error_code.as_ref().map(|code| {
                json!({"code": code, "message": r.error_message.clone().unwrap_or_default()})
            }),
            seed: serde_json::from_str::<JobInput>(&v.input).ok().map(|j| j.seed),
        }
    }
}

/// A video object with the poll-interval header the SDK's poller reads.
fn video_response(row: &VideoRow) -> Response {
    (
        [("openai-poll-after-ms", POLL_AFTER_MS)],
        Json(VideoObject::from(row)),
    )
        .into_response()
}

/// Whether `id` has the shape of the ids this server makes (`video_` and 32 hex digits); ids
/// are only ever looked up in the database, but nothing else is even tried.
fn check_id(id: &str) -> Result<(), ApiError> {
    let hex = id.strip_prefix("video_").unwrap_or("");
    if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            format!(
                "{:?} is not a video id; ids look like video_ followed by 32 hex digits",
                id.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// 404 naming the id.
fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no video with id {id} (it may have expired or been deleted)"
    ))
}
