//! The security headers every page of the portal, the directory and the storefront must carry,
//! checked as a browser would read them.

/// What is missing or wrong in `headers` for a page, if anything: a policy that forbids framing
/// and scripts from elsewhere, `nosniff`, and HSTS exactly when the page went out over HTTPS.
pub fn problem(headers: &http::HeaderMap, https: bool) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut problems = Vec::new();
    match get("content-security-policy") {
        None => problems.push("no Content-Security-Policy".to_owned()),
        Some(policy) => {
            let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
            for wanted in [
                "frame-ancestors 'none'",
                "script-src 'self'",
                "object-src 'none'",
            ] {
                if !directives.contains(&wanted) {
                    problems.push(format!("the policy lacks {wanted:?}: {policy}"));
                }
            }
        }
    }
    if get("x-content-type-options") != Some("nosniff") {
        problems.push("no X-Content-Type-Options: nosniff".into());
    }
    let hsts = get("strict-transport-security");
    match (https, hsts) {
        (true, None) => problems.push("no Strict-Transport-Security over HTTPS".into()),
        (true, Some(v)) if !v.starts_with("max-age=") => {
            problems.push(format!("Strict-Transport-Security is {v:?}"))
        }
        (false, Some(v)) => problems.push(format!("Strict-Transport-Security over HTTP: {v}")),
        _ => {}
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}
