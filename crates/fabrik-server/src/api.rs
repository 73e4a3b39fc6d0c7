//! The REST API (axum). Handlers authenticate, parse, and forward to the engine; they hold no
//! policy. Errors are JSON `{"error": "..."}` with a 4xx/5xx status.
//!
//! Every resource a client can hold is bounded ([`Limits`]): connections (over the limit a new
//! one is closed at once), the time to send a request's headers and its body, the body's size,
//! and log reads (streamed in chunks, capped, a few at a time).

use crate::engine::{ApiErr, Cmd, ListFilter, NewToken, SubmitRequest};
use crate::metrics::{Metrics, RouteLabel};
use crate::store::{hash_token, Identity, Role, Store};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Bounds on what clients can hold of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections; one more is closed at once.
    pub max_connections: usize,
    /// Time to send a request's headers (also the most a kept-alive connection may idle).
    pub header_timeout: Duration,
    /// Time to send a request's body.
    pub body_timeout: Duration,
    /// The most `GET /v1/jobs/{id}/logs` returns, whatever `tail` asks.
    pub max_log_bytes: u64,
    /// Log reads in progress at once; more get 503.
    pub concurrent_log_reads: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_log_bytes: 16 << 20,
            concurrent_log_reads: 8,
        }
    }
}

pub struct AppState {
    pub engine: Mutex<mpsc::Sender<Cmd>>,
    pub metrics: Arc<Metrics>,
    /// Token lookups: a read connection to the store, asked on every request so that a
    /// revocation (through the API or `fabrik admin token revoke`) takes effect at once.
    pub tokens: Mutex<Store>,
    pub metrics_token: bool,
    pub announcement: Option<String>,
    pub log_reads: Arc<Semaphore>,
    pub limits: Limits,
}

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ApiErr> for ApiError {
    fn from(e: ApiErr) -> ApiError {
        match e {
            ApiErr::BadRequest(m) => ApiError(StatusCode::BAD_REQUEST, m),
            ApiErr::Forbidden(m) => ApiError(StatusCode::FORBIDDEN, m),
            ApiErr::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            ApiErr::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            ApiErr::Internal(m) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        ApiError(r.status(), format!("invalid request body: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, format!("invalid query: {}", r.body_text()))
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

impl AppState {
    fn identity(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, m.to_string());
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| unauthorized("missing bearer token"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("authorization must be 'Bearer TOKEN'"))?;
        let hash = hash_token(token.trim());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let found = self
            .tokens
            .lock()
            .expect("store lock")
            .identity(&hash, now)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        found.ok_or_else(|| unauthorized("unknown, revoked or expired token"))
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, ApiErr>>) -> Cmd) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.engine
            .lock()
            .expect("engine sender lock")
            .send(make(tx))
            .map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the engine has stopped".into()))?;
        rx.await
            .map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "the engine has stopped".into()))?
            .map_err(Into::into)
    }
}

type St = State<Arc<AppState>>;

async fn submit(
    State(s): St,
    h: HeaderMap,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = s.identity(&h)?;
    let Json(req) = body?;
    let rec = s.call(|r| Cmd::Submit(who, Box::new(req), r)).await?;
    Ok((StatusCode::CREATED, Json(rec)).into_response())
}

async fn list(
    State(s): St,
    h: HeaderMap,
    q: Result<Query<ListFilter>, QueryRejection>,
) -> ApiResult<serde_json::Value> {
    let who = s.identity(&h)?;
    let Query(f) = q?;
    let (jobs, next) = s.call(|r| Cmd::List(who, f, r)).await?;
    Ok(Json(json!({ "jobs": jobs, "next": next })))
}

async fn show(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::store::JobRecord> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Show(who, id, r)).await?))
}

async fn control(
    s: &AppState,
    h: &HeaderMap,
    id: i64,
    c: crate::engine::Control,
) -> ApiResult<crate::store::JobRecord> {
    let who = s.identity(h)?;
    Ok(Json(s.call(|r| Cmd::Control(who, id, c, r)).await?))
}

async fn hold(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::store::JobRecord> {
    control(&s, &h, id, crate::engine::Control::Hold).await
}

async fn release(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::store::JobRecord> {
    control(&s, &h, id, crate::engine::Control::Release).await
}

async fn requeue(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::store::JobRecord> {
    control(&s, &h, id, crate::engine::Control::Requeue).await
}

async fn cancel(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::store::JobRecord> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Cancel(who, id, r)).await?))
}

async fn why(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::engine::WhyView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Why(who, id, r)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    stream: Option<String>,
    /// Return at most this many bytes from the end.
    tail: Option<u64>,
}

async fn logs(
    State(s): St,
    h: HeaderMap,
    Path(id): Path<i64>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let who = s.identity(&h)?;
    let Query(q) = q?;
    let stream = q.stream.unwrap_or_else(|| "stdout".into());
    let file = s.call(|r| Cmd::OpenLog(who, id, stream, r)).await?;
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    let Some(file) = file else { return Ok((text, Vec::<u8>::new()).into_response()) };
    let permit = s.log_reads.clone().try_acquire_owned().map_err(|_| {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "too many log reads in progress; try again shortly".into())
    })?;
    let tail = q.tail.unwrap_or(1 << 20).min(s.limits.max_log_bytes);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    // Streams what the log held when asked, from `tail` bytes before its end, in 64 KiB chunks:
    // memory per read is a few chunks, whatever the log's size.
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let _permit = permit;
        let mut f = file;
        let mut run = || -> std::io::Result<()> {
            let len = f.metadata()?.len();
            let from = len.saturating_sub(tail);
            f.seek(SeekFrom::Start(from))?;
            let mut left = len - from;
            let mut buf = vec![0u8; 64 << 10];
            while left > 0 {
                let n = f.read(&mut buf[..(left.min(64 << 10)) as usize])?;
                if n == 0 {
                    break;
                }
                left -= n as u64;
                if tx.blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n]))).is_err() {
                    break; // the client went away
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Ok((text, axum::body::Body::from_stream(body)).into_response())
}

async fn accounts(State(s): St, h: HeaderMap) -> ApiResult<serde_json::Value> {
    let who = s.identity(&h)?;
    let a = s.call(|r| Cmd::Accounts(who, r)).await?;
    Ok(Json(json!({ "accounts": a })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    path: String,
    shares: f64,
}

async fn add_account(
    State(s): St,
    h: HeaderMap,
    body: Result<Json<NewAccount>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = s.identity(&h)?;
    let Json(a) = body?;
    let v = s.call(|r| Cmd::AddAccount(who, a.path, a.shares, r)).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn create_token(
    State(s): St,
    h: HeaderMap,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = s.identity(&h)?;
    let Json(t) = body?;
    let (name, account, role): (String, Option<String>, Role) = (t.name.clone(), t.account.clone(), t.role);
    let token: String = s.call(|r| Cmd::CreateToken(who, t, r)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token, "name": name, "account": account, "role": role })))
        .into_response())
}

async fn list_tokens(State(s): St, h: HeaderMap) -> ApiResult<serde_json::Value> {
    let who = s.identity(&h)?;
    let t = s.call(|r| Cmd::Tokens(who, r)).await?;
    Ok(Json(json!({ "tokens": t })))
}

async fn revoke_token(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::store::TokenInfo> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::RevokeToken(who, id, r)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    reason: String,
}

async fn drain_node(
    State(s): St,
    h: HeaderMap,
    Path(node): Path<String>,
    body: Result<Json<DrainBody>, JsonRejection>,
) -> ApiResult<crate::engine::NodeView> {
    let who = s.identity(&h)?;
    let Json(b) = body?;
    Ok(Json(s.call(|r| Cmd::Drain(who, node, Some(b.reason), r)).await?))
}

async fn resume_node(State(s): St, h: HeaderMap, Path(node): Path<String>) -> ApiResult<crate::engine::NodeView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Drain(who, node, None, r)).await?))
}

async fn nodes(State(s): St, h: HeaderMap) -> ApiResult<crate::engine::NodesView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Nodes(who, r)).await?))
}

async fn whoami(State(s): St, h: HeaderMap) -> ApiResult<Identity> {
    Ok(Json(s.identity(&h)?))
}

async fn facility(State(s): St, h: HeaderMap) -> ApiResult<crate::engine::FacilityView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Facility(who, r)).await?))
}

async fn snapshot(State(s): St, h: HeaderMap) -> ApiResult<Box<fabrik_sched::Snapshot>> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Snapshot(who, r)).await?))
}

/// A what-if from the live state: the snapshot comes from the engine, the twin runs on a
/// blocking thread beside it (admins).
async fn whatif(
    State(s): St,
    h: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = s.identity(&h)?;
    let Json(req) = body?;
    let (snap, facility, twin) = s.call(|r| Cmd::WhatifInput(who, r)).await?;
    let out = tokio::task::spawn_blocking(move || twin.whatif(&snap, &facility, &req.to_string()))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("what-if: {e}")))?;
    let json = out.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], json).into_response())
}

async fn forecast_all(State(s): St, h: HeaderMap) -> ApiResult<crate::engine::ForecastView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Forecast(who, None, r)).await?))
}

async fn forecast_one(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::engine::ForecastView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Forecast(who, Some(id), r)).await?))
}

async fn dashboard_data(State(s): St, h: HeaderMap) -> ApiResult<crate::engine::DashboardView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Dashboard(who, r)).await?))
}

async fn metrics(State(s): St, h: HeaderMap) -> Result<Response, ApiError> {
    if s.metrics_token {
        s.identity(&h)?;
    }
    // the gauges are computed when scraped, not on every tick (they walk every job); a stopped
    // engine leaves them as they were
    let _ = s.call(Cmd::RefreshMetrics).await;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
        .into_response())
}

/// 200 "ok" while the store takes writes; 503 with the last error while it refuses them (the
/// engine then starts nothing new).
async fn healthz(State(s): St) -> Response {
    match s.metrics.store_error.lock().expect("health lock").clone() {
        // telemetry does not make the control plane unhealthy; it is reported beside
        None => match s.metrics.telemetry_error.lock().expect("health lock").clone() {
            None => "ok".into_response(),
            Some(e) => format!("ok; telemetry degraded (no drain decisions): {e}").into_response(),
        },
        Some(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": format!("store failing: {e}") }))).into_response()
        }
    }
}

async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}

async fn index() -> Html<&'static str> {
    Html(crate::dashboard::PAGE)
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint (see /openapi.json)".into())
}

async fn track(State(s): St, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let t = Instant::now();
    let resp = next.run(req).await;
    let label = RouteLabel { method, route, status: resp.status().as_u16().to_string() };
    s.metrics.api_seconds.get_or_create(&label).observe(t.elapsed().as_secs_f64());
    resp
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/whoami", get(whoami))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(show).delete(cancel))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/hold", post(hold))
        .route("/v1/jobs/{id}/release", post(release))
        .route("/v1/jobs/{id}/requeue", post(requeue))
        .route("/v1/jobs/{id}/why", get(why))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/accounts", get(accounts).post(add_account))
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/v1/facility", get(facility))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{node}/drain", post(drain_node))
        .route("/v1/nodes/{node}/resume", post(resume_node))
        .route("/v1/dashboard", get(dashboard_data))
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/forecast", get(forecast_all))
        .route("/v1/whatif", post(whatif))
        .route("/v1/jobs/{id}/forecast", get(forecast_one))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), body_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Reads the whole (size-limited) body within `body_timeout`: a client that trickles its body
/// gets 408 instead of holding a connection and a handler.
async fn body_deadline(State(s): St, req: Request, next: Next) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(s.limits.body_timeout, axum::body::to_bytes(body, MAX_BODY)).await;
    let bytes = match read {
        Err(_) => return Err(ApiError(StatusCode::REQUEST_TIMEOUT, "request body not received in time".into())),
        Ok(Err(e)) => return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}"))),
        Ok(Ok(b)) => b,
    };
    Ok(next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await)
}

/// Serves `app` on `listener` until `shutdown`, within `limits`: HTTP/1.1, a header-read
/// timeout on every request (which also ends idle kept-alive connections), and at most
/// `max_connections` at once — one more is closed as soon as it is accepted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // out of file descriptors and the like: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut close = close_rx.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = close.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
                }
            }
        });
    }
    // Graceful: requests in flight finish (for at most 10 s), then every connection is gone.
    let _ = close_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(11), conns.acquire_many(limits.max_connections as u32)).await;
}
