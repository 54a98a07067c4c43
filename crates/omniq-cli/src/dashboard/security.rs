//! The dashboard's security model (see `docs/cli.md`):
//!
//! - **Who may connect.** Bound to a loopback address, only this machine reaches it, and
//!   the `Host` header must name that address (`127.0.0.1:PORT`, `localhost:PORT`,
//!   `[::1]:PORT`), which stops DNS-rebinding pages from reading it. Bound to any other
//!   address it refuses to start without `OMNIQ_DASHBOARD_TOKEN`.
//! - **The token.** When set, every page and action needs it: a browser signs in once at
//!   `/login` (an `HttpOnly`, `SameSite=Strict` session cookie follows), a scraper sends
//!   `Authorization: Bearer TOKEN`. Compared in constant time.
//! - **CSRF.** Every form carries a per-process random token in a hidden field, checked
//!   on every POST, and a POST whose `Origin` (or `Sec-Fetch-Site`) says another site
//!   sent it is refused.
//! - **Escaping.** Every value from storage goes through maud, which escapes by default;
//!   and a `Content-Security-Policy` with no script source means nothing injected could
//!   run anyway.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;

/// The cookie a signed-in browser carries.
pub(crate) const SESSION_COOKIE: &str = "omniq_session";

/// Paths that need no token (the sign-in page itself, its stylesheet, the health check).
const OPEN_PATHS: [&str; 3] = ["/login", "/static/style.css", "/healthz"];

/// The smallest token accepted.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// What the guard checks, fixed at start.
#[derive(Debug)]
pub(crate) struct Security {
    token: Option<String>,
    csrf: String,
    session: String,
    allowed_hosts: Option<Vec<String>>,
}

/// 256 random bits as hex (two v4 UUIDs: 244 bits from the OS's random source).
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Equal strings, compared without an early exit.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

impl Security {
    /// The checks for a dashboard bound to `bind`; `Err` explains a refused start.
    pub(crate) fn new(bind: SocketAddr, token: Option<String>) -> Result<Self, String> {
        let token = token.filter(|t| !t.trim().is_empty());
        if let Some(t) = &token {
            if t.chars().count() < MIN_TOKEN_LEN {
                return Err(format!(
                    "OMNIQ_DASHBOARD_TOKEN is too short ({} characters): use at least {MIN_TOKEN_LEN}, e.g. the output of `openssl rand -hex 32`",
                    t.chars().count()
                ));
            }
        }
        let loopback = bind.ip().is_loopback();
        if !loopback && token.is_none() {
            return Err(format!(
                "--bind {bind} listens beyond this machine, so retry, cancel and purge need a token: \
                 set OMNIQ_DASHBOARD_TOKEN to a long random secret (e.g. `openssl rand -hex 32`), \
                 or bind a loopback address such as 127.0.0.1:{}",
                bind.port()
            ));
        }
        let allowed_hosts = loopback.then(|| {
            let port = bind.port();
            let ip = match bind {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            };
            let mut names = vec![ip, "localhost".to_string()];
            if bind.is_ipv4() {
                names.push("127.0.0.1".into());
            } else {
                names.push("[::1]".into());
            }
            let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
            if port == 80 {
                hosts.extend(names);
            }
            hosts
        });
        Ok(Self {
            token,
            csrf: random_hex(),
            session: random_hex(),
            allowed_hosts,
        })
    }

    /// The CSRF token every form carries.
    pub(crate) fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether a token is required.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Checks a submitted CSRF token.
    pub(crate) fn csrf_ok(&self, submitted: &str) -> bool {
        constant_time_eq(submitted, &self.csrf)
    }

    /// Checks a submitted login token.
    pub(crate) fn token_ok(&self, submitted: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| constant_time_eq(submitted, t))
    }

    /// The `Set-Cookie` value that signs a browser in.
    pub(crate) fn session_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            self.session
        )
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim(), token));
        bearer
            || cookie(headers, SESSION_COOKIE).is_some_and(|s| constant_time_eq(&s, &self.session))
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(|h| h.trim().to_ascii_lowercase())
            .is_some_and(|h| allowed.contains(&h))
    }
}

/// One cookie's value from the `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether a POST came from another site, by `Sec-Fetch-Site` and `Origin`.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if fetch_site == "cross-site" || fetch_site == "same-site" {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin = origin.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    origin != format!("http://{host}") && origin != format!("https://{host}")
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_string(),
    )
        .into_response()
}

/// The guard every request passes: host, token, cross-site POSTs; then the security
/// headers on the response.
pub(crate) async fn guard(
    State(security): State<std::sync::Arc<Security>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let headers = req.headers();
    if !security.host_ok(headers) {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "unexpected Host header: open the dashboard at the address it is bound to",
        );
    }
    let path = req.uri().path().to_string();
    if !OPEN_PATHS.contains(&path.as_str()) && !security.authorized(headers) {
        if req.method() == Method::GET {
            let next_path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            let to = format!("/login?next={}", encode_component(&next_path));
            return Redirect::to(&to).into_response();
        }
        return plain(
            StatusCode::UNAUTHORIZED,
            "this action needs the dashboard token: sign in at /login or send Authorization: Bearer TOKEN",
        );
    }
    if req.method() == Method::POST && cross_site(headers) {
        return plain(
            StatusCode::FORBIDDEN,
            "refused: this form was sent from another site",
        );
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Percent-encodes a query component.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A redirect target from a `next` parameter: only a path on this site.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_binds_need_a_long_token() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let err = Security::new(any, None).expect_err("no token");
        assert!(err.contains("OMNIQ_DASHBOARD_TOKEN"), "{err}");
        let err = Security::new(any, Some("short".into())).expect_err("short");
        assert!(err.contains("too short"), "{err}");
        assert!(Security::new(any, Some("x".repeat(32))).is_ok());
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let s = Security::new(local, None).expect("loopback");
        assert!(!s.has_token());
        assert_ne!(s.csrf(), Security::new(local, None).expect("again").csrf());
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert!(!constant_time_eq("", "a"));
    }

    #[test]
    fn next_must_stay_on_this_site() {
        assert_eq!(
            safe_next(Some("/tasks?status=failed")),
            "/tasks?status=failed"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
