//! What every response of the portal, the directory and the storefront says to the browser about
//! itself: no framing by another site (so a withdraw or redeem button cannot be clickjacked), no
//! script, style or connection from anywhere but itself (images may come from the product's
//! URL), no guessing of content types, and HTTPS only once reached over HTTPS.

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue},
    middleware::Next,
    response::Response,
};

/// The Content-Security-Policy of every page: its own scripts, styles (inline styles allowed: the
/// directory's sheet is inline), workers and connections only; images also from the web; no
/// framing, plugins, `<base>` or form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' https: http: data:; connect-src 'self'; \
    worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// A year of HTTPS only, for responses that went out over HTTPS.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Whether the request reached the platform over HTTPS, as the ingress in front says
/// (`X-Forwarded-Proto`). A client that lies about it over plain HTTP only gets a header
/// browsers ignore there.
pub fn arrived_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// Puts the headers on `response`; HSTS when `https`.
pub fn apply(response: &mut HeaderMap, https: bool) {
    response.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if https {
        response.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        );
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) putting the headers on every response;
/// HSTS when the request arrived over HTTPS, or on every response when the service is only ever
/// reached over HTTPS (`always_https`: the portal with Secure cookies).
pub async fn security_headers(
    State(always_https): State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let https = always_https || arrived_over_https(request.headers());
    let mut response = next.run(request).await;
    apply(response.headers_mut(), https);
    response
}
