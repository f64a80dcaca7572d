//! Where deliveries may go. A webhook URL is chosen by a tenant and called by the
//! server, so it could aim the server at its own network (SSRF): URLs must be
//! `https`, and the addresses they reach public. `http`, and private, loopback,
//! link-local and other non-public addresses, are allowed only when the operator says
//! so (`HARK_WEBHOOK_ALLOW_PRIVATE`). A URL is checked when it is set, and its
//! addresses again on every attempt, after DNS resolution (`PublicOnly`), since a
//! name may resolve elsewhere later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlRefusal {
    /// Not a URL.
    #[error("the URL cannot be parsed")]
    Unparsable,
    /// Not https (or http where allowed).
    #[error("the URL must be https")]
    Scheme,
    /// User and password in the URL.
    #[error("the URL must not carry a user or password")]
    Credentials,
    /// A host that is not public.
    #[error("the URL's host is not a public address")]
    NotPublic,
}

/// Checks a webhook URL as given: its scheme, and its host when it is an address or a
/// local name. Answers the parsed URL.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, UrlRefusal> {
    let url = Url::parse(raw).map_err(|_| UrlRefusal::Unparsable)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlRefusal::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let public = match url.host() {
        None => return Err(UrlRefusal::Unparsable),
        Some(url::Host::Ipv4(ip)) => is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name.contains('.') && name != "localhost" && !name.ends_with(".localhost")
        }
    };
    if public || allow_private {
        Ok(url)
    } else {
        Err(UrlRefusal::NotPublic)
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// shared (carrier-grade NAT), unspecified, broadcast, multicast, documentation or
/// otherwise reserved, in IPv4 or IPv6 (IPv4-mapped addresses as their IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(mapped) => is_public_v4(mapped),
            None => is_public_v6(ip),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// A resolver that answers only public addresses: a name that resolves to none fails
/// the attempt, so a DNS answer cannot turn a delivery towards a private network.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| is_public(address.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addresses: Addrs = Box::new(found.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip} counted as public");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "1.1.1.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public(ip), "{ip} counted as not public");
        }
    }

    #[test]
    fn urls_must_be_https_to_a_public_host_unless_private_ones_are_allowed() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(matches!(
            check_url("http://hooks.example.com/x", false),
            Err(UrlRefusal::Scheme)
        ));
        assert!(matches!(
            check_url("https://127.0.0.1/x", false),
            Err(UrlRefusal::NotPublic)
        ));
        assert!(matches!(
            check_url("https://localhost/x", false),
            Err(UrlRefusal::NotPublic)
        ));
        assert!(matches!(
            check_url("https://user:pw@hooks.example.com/", false),
            Err(UrlRefusal::Credentials)
        ));
        assert!(matches!(
            check_url("ftp://x.example/", true),
            Err(UrlRefusal::Scheme)
        ));
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
    }
}
