//! Optional token authentication: when a token is configured, every route but
//! `/healthz` (and the login form itself) needs either `Authorization: Bearer
//! <token>` or the HttpOnly session cookie that `POST /login` sets. Tokens are
//! compared in constant time (`subtle`); only the length can leak. Wrong
//! credentials are limited per client address ([`crate::guesses`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "sysmon_session";

/// How long the login cookie lasts, in seconds (30 days).
const COOKIE_MAX_AGE: u64 = 30 * 86_400;

/// True when `given` equals `expected`, in time independent of where they differ.
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    bool::from(given.ct_eq(expected))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The cookie value for `token` (hex, so any token is a valid cookie value).
pub fn cookie_value(token: &str) -> String {
    hex(token.as_bytes())
}

/// True when the request carries the token as a bearer header or as the cookie.
pub fn is_authorized(headers: &HeaderMap, token: &str) -> bool {
    let mut ok = false;
    for v in headers.get_all(header::AUTHORIZATION) {
        if let Some(given) = v.to_str().ok().and_then(|s| {
            s.strip_prefix("Bearer ")
                .or_else(|| s.strip_prefix("bearer "))
        }) {
            ok |= tokens_match(given.trim().as_bytes(), token.as_bytes());
        }
    }
    if ok {
        return true;
    }
    let expected = cookie_value(token);
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for pair in s.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == COOKIE_NAME {
                    ok |= tokens_match(value.as_bytes(), expected.as_bytes());
                }
            }
        }
    }
    ok
}

/// True when the request carries a credential: a bearer header or our cookie.
fn carries_credential(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION)
        || headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(';'))
            .any(|pair| {
                pair.trim()
                    .split_once('=')
                    .is_some_and(|(n, _)| n == COOKIE_NAME)
            })
}

/// The refusal for an address that used up its wrong credentials.
fn too_many(wait: Duration, login_form: bool) -> Response {
    let mut r = if login_form {
        let msg = format!(
            "Too many wrong tokens from this address. Try again in {} s.",
            wait.as_secs().max(1)
        );
        (StatusCode::TOO_MANY_REQUESTS, Html(login_html(Some(&msg)))).into_response()
    } else {
        ApiError::too_many_guesses(wait).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Middleware: lets a request through when no token is configured, when it is
/// `/healthz` or the login form, or when it is authorized. A browser asking for
/// a page is sent to the login form; everything else gets a 401 JSON error.
/// Wrong credentials (bearer, cookie, login form) count against the client's
/// address; past the limit its credentials are refused unchecked (429).
pub(crate) async fn require_auth(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = state.auth_token.as_deref() else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/healthz" {
        return next.run(req).await;
    }
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let login_form = path == "/login" && req.method() == Method::POST;
    let carries = login_form || carries_credential(req.headers());
    if carries {
        if let Some(wait) = state.guesses.blocked(addr, Instant::now()) {
            return too_many(wait, login_form);
        }
    }
    if login_form {
        let r = next.run(req).await;
        if r.status() == StatusCode::UNAUTHORIZED {
            state.guesses.failed(addr, Instant::now());
        }
        return r;
    }
    if path == "/login" || is_authorized(req.headers(), token) {
        return next.run(req).await;
    }
    if carries {
        state.guesses.failed(addr, Instant::now());
    }
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let mut r =
        if req.method() == Method::GET && wants_html && (path == "/" || path == "/index.html") {
            Redirect::to("/login").into_response()
        } else {
            ApiError::unauthorized().into_response()
        };
    if carries_credential(req.headers()) {
        // A stale cookie (the token changed) is dropped, so a browser stops
        // sending it and does not use up its address's allowance.
        r.headers_mut()
            .insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
    }
    r
}

/// The `Set-Cookie` value that removes the session cookie.
const CLEAR_COOKIE: &str = "sysmon_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0";

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// `GET /login`.
pub(crate) async fn login_page(State(state): State<Arc<AppState>>) -> Response {
    if state.auth_token.is_none() {
        return Redirect::to("/").into_response();
    }
    Html(login_html(None)).into_response()
}

/// `POST /login`: sets the HttpOnly cookie and goes to the dashboard, or shows
/// the form again with a 401.
pub(crate) async fn login_submit(
    State(state): State<Arc<AppState>>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(token) = state.auth_token.as_deref() else {
        return Redirect::to("/").into_response();
    };
    let Ok(Form(form)) = form else {
        return ApiError::bad_request("expected a form with a `token` field").into_response();
    };
    if !tokens_match(form.token.trim().as_bytes(), token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_html(Some("That token is not valid."))),
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={COOKIE_MAX_AGE}",
        cookie_value(token)
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /logout`: clears the cookie.
pub(crate) async fn logout() -> Response {
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
    r
}

fn login_html(error: Option<&str>) -> String {
    // `error` is one of our own messages (constant text, at most a number of
    // seconds), never request data.
    let error = error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{e}</p>"))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>sysmon · sign in</title>
<style>
body{{margin:0;min-height:100vh;display:grid;place-items:center;background:#0f1420;color:#e6e9ef;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}}
form{{background:#171d2b;border:1px solid #273048;border-radius:10px;padding:28px 32px;width:320px;box-shadow:0 8px 30px #0006}}
h1{{font-size:18px;margin:0 0 4px}} p{{color:#9aa4b8;margin:0 0 18px;font-size:13px}}
label{{display:block;font-size:13px;margin-bottom:6px;color:#c3cad8}}
input{{box-sizing:border-box;width:100%;padding:9px 10px;border-radius:6px;border:1px solid #34405c;background:#0f1420;color:#e6e9ef;font:inherit}}
button{{margin-top:16px;width:100%;padding:9px;border:0;border-radius:6px;background:#4f8cff;color:#fff;font:inherit;font-weight:600;cursor:pointer}}
.err{{color:#ff7a7a;margin:0 0 12px}}
</style></head>
<body><form method="post" action="/login">
<h1>sysmon</h1><p>This dashboard is protected. Enter the token given to <code>--auth-token</code>.</p>
{error}<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Sign in</button>
</form></body></html>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_cookie_are_accepted_and_others_are_not() {
        let mut h = HeaderMap::new();
        assert!(!is_authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(is_authorized(&h, "s3cret"));
        assert!(!is_authorized(&h, "s3cret2"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE_NAME}={}", cookie_value("s3cret")))
                .unwrap(),
        );
        assert!(is_authorized(&h, "s3cret"));
        assert!(!is_authorized(&h, "other"));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic czNjcmV0"),
        );
        assert!(!is_authorized(&h, "s3cret"));
    }
}
