//! The REST API (axum). Handlers authenticate, parse, and forward to the engine; they hold no
//! policy. Errors are JSON `{"error": "..."}` with a 4xx/5xx status.

use crate::engine::{ApiErr, Cmd, ListFilter, SubmitRequest};
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
use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::sync::oneshot;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

pub struct AppState {
    pub engine: Mutex<mpsc::Sender<Cmd>>,
    pub metrics: Arc<Metrics>,
    /// Token lookups: a read connection to the store and a cache of known hashes.
    pub tokens: Mutex<Store>,
    pub cache: RwLock<HashMap<String, Identity>>,
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
        if let Some(id) = self.cache.read().expect("cache lock").get(&hash) {
            return Ok(id.clone());
        }
        let found = self
            .tokens
            .lock()
            .expect("store lock")
            .identity(&hash)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        match found {
            Some(id) => {
                self.cache.write().expect("cache lock").insert(hash, id.clone());
                Ok(id)
            }
            None => Err(unauthorized("unknown token")),
        }
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
    let jobs = s.call(|r| Cmd::List(who, f, r)).await?;
    Ok(Json(json!({ "jobs": jobs })))
}

async fn show(State(s): St, h: HeaderMap, Path(id): Path<i64>) -> ApiResult<crate::store::JobRecord> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Show(who, id, r)).await?))
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
    let path = s.call(|r| Cmd::LogPath(who, id, stream, r)).await?;
    let tail = q.tail.unwrap_or(1 << 20);
    let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(tail)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("reading log: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    account: Option<String>,
    role: Role,
}

async fn create_token(
    State(s): St,
    h: HeaderMap,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    let who = s.identity(&h)?;
    let Json(t) = body?;
    let (name, account, role) = (t.name.clone(), t.account.clone(), t.role);
    let token = s.call(|r| Cmd::CreateToken(who, t.name, t.account, t.role, r)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "token": token, "name": name, "account": account, "role": role })))
        .into_response())
}

async fn whoami(State(s): St, h: HeaderMap) -> ApiResult<Identity> {
    Ok(Json(s.identity(&h)?))
}

async fn facility(State(s): St, h: HeaderMap) -> ApiResult<crate::engine::FacilityView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Facility(who, r)).await?))
}

async fn dashboard_data(State(s): St, h: HeaderMap) -> ApiResult<crate::engine::DashboardView> {
    let who = s.identity(&h)?;
    Ok(Json(s.call(|r| Cmd::Dashboard(who, r)).await?))
}

async fn metrics(State(s): St) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/whoami", get(whoami))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(show))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/why", get(why))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/accounts", get(accounts).post(add_account))
        .route("/v1/tokens", post(create_token))
        .route("/v1/facility", get(facility))
        .route("/v1/dashboard", get(dashboard_data))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
