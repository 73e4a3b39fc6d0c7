//! A `/metrics` endpoint for Prometheus text made elsewhere (`fabrik telemetry serve`'s
//! synthetic dcgm-exporter): the HTTP side of a text source that knows nothing of HTTP.

use std::sync::Arc;

/// Serves `render()`'s text at `GET /metrics` on `listener` until the task is dropped.
pub async fn serve_text(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = render();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}
