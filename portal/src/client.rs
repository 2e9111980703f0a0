//! Who a request comes from. Behind the portal's Ingress every TCP peer is the ingress
//! controller, so a per-client limit keyed on the peer would throttle everyone at once; the
//! controller names the client in `X-Forwarded-For`. That header is believed only when the peer
//! is a configured trusted proxy, since anyone else can write it.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// Networks whose addresses are trusted proxies, such as `10.0.0.0/8`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Reads a comma-separated list of addresses and CIDR networks; empty trusts no one.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (address, bits) = item.split_once('/').unwrap_or((item, ""));
            let address: IpAddr = address.parse().map_err(|_| {
                format!("{item:?} is not an address or network, such as 10.0.0.0/8 or ::1")
            })?;
            let most = if address.is_ipv4() { 32 } else { 128 };
            let bits = if bits.is_empty() {
                most
            } else {
                bits.parse::<u8>()
                    .ok()
                    .filter(|b| *b <= most)
                    .ok_or_else(|| format!("{item:?}: the prefix length must be 0 to {most}"))?
            };
            networks.push((address, bits));
        }
        Ok(Self(networks))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0
            .iter()
            .any(|(network, bits)| within(ip, *network, *bits))
    }

    /// The client: the peer itself, unless the peer is a trusted proxy; then the nearest
    /// address in `X-Forwarded-For` that is not one (each proxy appends the address it saw).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        forwarded
            .iter()
            .rev()
            .find(|a| !self.contains(**a))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer)
    }
}

fn within(ip: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_are_read_and_matched() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7, fd00::/8").unwrap();
        assert!(trusted.contains(ip("10.42.0.3")));
        assert!(trusted.contains(ip("192.168.1.7")));
        assert!(!trusted.contains(ip("192.168.1.8")));
        assert!(trusted.contains(ip("fd12::1")));
        assert!(!trusted.contains(ip("203.0.113.9")));
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
        assert!(TrustedProxies::parse("10.0.0.0/33")
            .unwrap_err()
            .contains("0 to 32"));
        assert!(TrustedProxies::parse("ingress")
            .unwrap_err()
            .contains("10.0.0.0/8"));
    }

    #[test]
    fn the_forwarded_client_is_believed_only_from_a_trusted_proxy() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // From the ingress controller: the address it saw.
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &headers("203.0.113.9")),
            ip("203.0.113.9")
        );
        // A client that writes its own header cannot pick the address it is limited by.
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &headers("198.51.100.1, 203.0.113.9")),
            ip("203.0.113.9")
        );
        // Through two trusted hops.
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &headers("203.0.113.9, 10.9.9.9")),
            ip("203.0.113.9")
        );
        // Straight from the internet: the header is ignored.
        assert_eq!(
            trusted.client(ip("203.0.113.50"), &headers("1.2.3.4")),
            ip("203.0.113.50")
        );
        // Trusting no one, the peer is the client.
        assert_eq!(
            TrustedProxies::default().client(ip("10.1.2.3"), &headers("1.2.3.4")),
            ip("10.1.2.3")
        );
    }
}
