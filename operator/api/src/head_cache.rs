//! Caching the public head (`/api/queue/head`) in nginx: the location snippet the operator puts
//! on each deal's head Ingress (ingress-nginx), and the `proxy_cache_path` line the controller
//! declares the zone with. Shared so that the test running them in a real nginx runs exactly
//! what the operator writes.

/// The public head's path: the same bytes for everyone, cacheable.
pub const HEAD_PATH: &str = "/api/queue/head";

/// The snippet of the head's location: cache the head in `zone` for as long as the storefront's
/// `Cache-Control` says, one request to the storefront per expiry (`proxy_cache_lock`), the old
/// copy served meanwhile and while the storefronts are away. A request carrying a cookie, a
/// session or a sign-in is never answered from the cache nor stored in it: the head needs none,
/// so such a request is not the page's, and whatever it gets stays its own. The key is the
/// scheme, host and path, separated (no two deals' hosts can meet in it) and without the query
/// (a made-up query neither misses the cache nor fills its keys).
pub fn snippet(zone: &str) -> String {
    format!(
        "proxy_cache {zone};\n\
         proxy_cache_key $scheme://$host$uri;\n\
         proxy_cache_lock on;\n\
         proxy_cache_lock_timeout 2s;\n\
         proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;\n\
         proxy_cache_background_update on;\n\
         proxy_cache_revalidate on;\n\
         proxy_cache_bypass $http_cookie $http_authorization $http_x_timedeal_session;\n\
         proxy_no_cache $http_cookie $http_authorization $http_x_timedeal_session;\n\
         add_header X-Cache-Status $upstream_cache_status always;\n"
    )
}

/// The line the ingress controller's `http-snippet` needs for `zone`: where the cache lives.
/// One key per deal host; a megabyte of keys holds about 8,000.
pub fn zone_line(zone: &str, path: &str) -> String {
    format!(
        "proxy_cache_path {path} levels=1 keys_zone={zone}:1m max_size=16m inactive=1m \
         use_temp_path=off;"
    )
}

/// Whether `zone` can name an nginx cache zone (and so be put into a snippet unquoted).
pub fn valid_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 63
        && zone
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_name_goes_into_nginx_unquoted_so_only_plain_names_pass() {
        assert!(valid_zone("timedeal_head"));
        for bad in ["", "Head", "head;", "a b", "x{}", &"a".repeat(64)] {
            assert!(!valid_zone(bad), "{bad:?}");
        }
        assert!(snippet("timedeal_head").starts_with("proxy_cache timedeal_head;\n"));
        assert!(zone_line("z", "/tmp/c").contains("keys_zone=z:1m"));
        assert!(snippet("z").contains("proxy_cache_key $scheme://$host$uri;"));
    }
}
