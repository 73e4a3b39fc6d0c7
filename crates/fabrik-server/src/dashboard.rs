//! The dashboard: one page served by `fabrik serve` itself, plain HTML and JavaScript with no
//! build step and nothing fetched from the network. It reads `/v1/dashboard` with the token given
//! once as `?token=`: the page keeps it in the tab's session storage and removes it from the
//! address (so it stays out of history, bookmarks and Referer headers), then refreshes every
//! few seconds. A warning the executor announces (single-user mode) is shown on top.

/// The page: a file in the repository (`dashboard.html`), compiled in.
pub const PAGE: &str = include_str!("dashboard.html");
