//! One HTTP request: `/health`, the WebSocket upgrade at the cable path, or 404.
//!
//! The upgrade follows Rails: a request that is not a WebSocket upgrade, or whose
//! `Origin` fails the check, gets `404 Page not found`; the subprotocol is the first
//! offered of `actioncable-v1-json` / `actioncable-unsupported` (none offered: no
//! header, never a refusal); authentication runs after the 101, on the open socket.
//! An upgrade whose `Cookie` headers add up to more than `--max-cookie-bytes` gets
//! `431 Request Header Fields Too Large` (see `limits` for why).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use tokio_util::task::TaskTracker;

use super::{connection, State};
use crate::auth::HandshakeRequest;
use crate::broker::BrokerHealth;
use crate::config::OriginPolicy;
use crate::protocol::select_subprotocol;

/// The response body type.
pub type Body = Full<Bytes>;

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Rails' answer to anything it will not upgrade.
fn not_found() -> Response<Body> {
    plain(StatusCode::NOT_FOUND, "Page not found")
}

/// Whether the request came over TLS, as Rack decides it behind a proxy.
fn is_ssl(headers: &HeaderMap) -> bool {
    let is = |name: &str, want: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
    };
    is("x-forwarded-proto", "https")
        || is("x-forwarded-ssl", "on")
        || is("x-forwarded-scheme", "https")
}

/// The size of the cookie jar authentication would parse: every `Cookie` header,
/// joined by `; `.
fn cookie_bytes(headers: &HeaderMap) -> usize {
    headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.len() + 2)
        .sum::<usize>()
        .saturating_sub(2)
}

/// Rails' `allow_request_origin?`.
pub fn origin_allowed(policy: &OriginPolicy, headers: &HeaderMap) -> bool {
    if policy.disabled {
        return true;
    }
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if policy.same_as_host {
        if let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) {
            let scheme = if is_ssl(headers) { "https" } else { "http" };
            if origin.len() == scheme.len() + 3 + host.len()
                && origin.starts_with(scheme)
                && origin[scheme.len()..].starts_with("://")
                && &origin[scheme.len() + 3..] == host
            {
                return true;
            }
        }
    }
    policy.allowed.iter().any(|rule| rule.matches(origin))
}

/// `/health`: always HTTP 200 while the process serves. A Redis outage makes it
/// `"status":"degraded"` with `"redis":"down"`, not a 503: the outage hits every node
/// alike, clients stay connected and local delivery goes on, so a load balancer taking
/// the whole fleet out would only make it worse.
fn health(state: &State) -> Response<Body> {
    let m = &state.metrics;
    // Redis is up when every client of it is: the broker's and the presence store's.
    let (status, mode, redis) = match state.channels.broker.health() {
        BrokerHealth::Embedded => ("ok", "embedded", ""),
        BrokerHealth::Redis { up: true } if state.presence.is_up() => {
            ("ok", "redis", ",\"redis\":\"up\"")
        }
        BrokerHealth::Redis { .. } => ("degraded", "redis", ",\"redis\":\"down\""),
    };
    let body = format!(
        "{{\"status\":\"{status}\",\"mode\":\"{mode}\"{redis},\"connections\":{},\"subscriptions\":{},\"streams\":{},\"dev_auth\":{}}}",
        m.open_connections(),
        m.live_subscriptions(),
        state.channels.hub.stream_count(),
        state.dev_auth,
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Answers one request; on an accepted upgrade, spawns the connection task on `tasks`.
pub fn handle(
    mut req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    state: Arc<State>,
    tasks: TaskTracker,
) -> Response<Body> {
    let path = req.uri().path();
    if path == "/health" && req.method() == Method::GET {
        return health(&state);
    }
    if path == "/metrics" && req.method() == Method::GET {
        if let BrokerHealth::Redis { up } = state.channels.broker.health() {
            state.metrics.redis_state(up);
        }
        let body = state.metrics.render(state.channels.hub.stream_count());
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return r;
    }
    if path != state.http.path {
        return not_found();
    }
    if req.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        tracing::debug!(peer = %peer, "not a WebSocket upgrade");
        return not_found();
    }
    let cookie_bytes = cookie_bytes(req.headers());
    if cookie_bytes > state.limits.max_cookie_bytes {
        state
            .metrics
            .headers_too_large("cookie_bytes", &peer, Some(cookie_bytes));
        return plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Cookie header too large",
        );
    }
    if !origin_allowed(&state.http.origins, req.headers()) {
        let origin = req
            .headers()
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info!(peer = %peer, origin = %crate::protocol::clip(origin), "request origin not allowed");
        return not_found();
    }
    if req
        .headers()
        .get("sec-websocket-version")
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        // Rails would fall back to the 2009 draft-75 protocol here; no Action Cable
        // client speaks it. RFC 6455 §4.4: 426 with the version we support.
        let mut r = plain(
            StatusCode::UPGRADE_REQUIRED,
            "Unsupported WebSocket version",
        );
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return r;
    }
    let Ok(permit) = state.slots.clone().try_acquire_owned() else {
        state
            .metrics
            .upgrade_refused("capacity", &peer, "connection limit reached");
        return plain(StatusCode::SERVICE_UNAVAILABLE, "Too many connections");
    };
    let protocol = select_subprotocol(
        req.headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let handshake = HandshakeRequest::new(
        req.headers().clone(),
        req.uri().query().map(str::to_owned),
        peer,
    );
    let (response, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(e) => {
            tracing::info!(peer = %peer, error = %e, "bad upgrade request");
            return plain(StatusCode::BAD_REQUEST, "Bad WebSocket upgrade request");
        }
    };
    let (mut parts, _) = response.into_parts();
    if let Some(p) = protocol {
        parts
            .headers
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    let tracker = tasks.clone();
    tasks.spawn(async move {
        match fut.await {
            Ok(ws) => {
                let drain = state.drain.clone();
                connection::run(ws.into_inner(), handshake, state, drain, permit, tracker).await
            }
            Err(e) => tracing::debug!(peer = %peer, error = %e, "upgrade did not complete"),
        }
    });
    Response::from_parts(parts, Full::new(Bytes::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OriginRule;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("valid header"));
        }
        h
    }

    #[test]
    fn origin_check_is_exact_like_rails() {
        // The cases of the reference's `origin_mismatch` scenario.
        let p = OriginPolicy {
            disabled: false,
            same_as_host: true,
            allowed: vec![OriginRule::Exact("http://localhost:3100".into())],
        };
        let host = ("host", "127.0.0.1:3100");
        for bad in [
            "http://evil.example",
            "http://localhost:3100/",
            "https://localhost:3100",
            "HTTP://LOCALHOST:3100",
        ] {
            assert!(
                !origin_allowed(&p, &headers(&[host, ("origin", bad)])),
                "{bad}"
            );
        }
        assert!(
            !origin_allowed(&p, &headers(&[host])),
            "missing Origin never matches"
        );
        assert!(origin_allowed(
            &p,
            &headers(&[host, ("origin", "http://127.0.0.1:3100")])
        ));
        assert!(origin_allowed(
            &p,
            &headers(&[host, ("origin", "http://localhost:3100")])
        ));
        assert!(!origin_allowed(
            &p,
            &headers(&[host, ("origin", "https://127.0.0.1:3100")])
        ));
        assert!(origin_allowed(
            &p,
            &headers(&[
                host,
                ("origin", "https://127.0.0.1:3100"),
                ("x-forwarded-proto", "https")
            ])
        ));
        let off = OriginPolicy {
            disabled: true,
            same_as_host: false,
            allowed: vec![],
        };
        assert!(origin_allowed(&off, &headers(&[])));
    }
}
