//! Requests to hosts tenants name (CRM connections, http steps, alert channels, SMTP servers)
//! and the answers they bring back. Under `TRIBUTARY_VENDOR_URLS=official` a host name that
//! resolves only to private, loopback or link-local addresses is refused when the request
//! connects, and such addresses are never dialled: the URL checks see only literal addresses,
//! so without this a tenant could reach the internal network through a DNS name. Answers are
//! read up to a size limit, so a server that answers without end can't exhaust memory.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::settings::VendorUrls;

/// The most a vendor's or a tenant's server may answer: 1 MiB. A larger answer fails the call
/// (permanently: asking again brings the same answer) instead of being buffered.
pub const ANSWER_LIMIT: usize = 1024 * 1024;

/// How a refusal of an internal address ends, so it can be told from other failures.
const REFUSED: &str = "(TRIBUTARY_VENDOR_URLS=official)";

/// Resolves with the system resolver and keeps public addresses only.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public = resolve_public(&host, 0).await?;
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The public addresses `host` resolves to (a literal address is judged as it is); an error
/// naming the host when there are none.
pub async fn resolve_public(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port)).await?.collect(),
    };
    let public: Vec<SocketAddr> = found
        .into_iter()
        .filter(|address| !is_private(address.ip()))
        .collect();
    if public.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{host} resolves only to private or loopback addresses {REFUSED}"),
        ));
    }
    Ok(public)
}

/// Why an answer could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The answer is larger than the limit; what was read of it is dropped.
    TooLarge { limit: usize },
    /// The connection broke or timed out mid-answer.
    Cut(reqwest::Error),
}

impl ReadError {
    pub fn is_too_large(&self) -> bool {
        matches!(self, ReadError::TooLarge { .. })
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::TooLarge { limit } => {
                write!(f, "the answer is larger than {}", size(*limit))
            }
            ReadError::Cut(_) => write!(f, "the answer was cut off"),
        }
    }
}

impl std::error::Error for ReadError {}

/// `bytes` as people say it: `1 MiB`, `64 KiB`, `100 bytes`.
fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads `response`'s body, refusing it as soon as it is known to pass `limit` bytes: at once
/// when `Content-Length` says so, else when the chunks read add up to more.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Cut)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_limited`] as text; bytes that are not UTF-8 are replaced.
pub async fn read_text(response: reqwest::Response, limit: usize) -> Result<String, ReadError> {
    let body = read_limited(response, limit).await?;
    Ok(match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A private, loopback, link-local or otherwise internal address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => private_v4(ip),
        IpAddr::V6(ip) => private_v6(ip),
    }
}

/// The resolver's refusal behind a failed request, if that is why it failed.
pub fn refusal(error: &reqwest::Error) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains(REFUSED) {
            return Some(text);
        }
        source = cause.source();
    }
    None
}

/// Refuses a URL whose host is a literal internal address under `official`. The resolver never
/// sees literal addresses, and a URL stored before the setting changed was never checked.
pub fn check_literal(url: &url::Url, vendor_urls: VendorUrls) -> Result<(), String> {
    match url.host_str() {
        Some(host) if vendor_urls == VendorUrls::Official && is_private_host(host) => {
            Err(format!("{host} is a private or loopback address {REFUSED}"))
        }
        _ => Ok(()),
    }
}

/// `builder`, resolving public addresses only when connections must stay on vendors' hosts.
pub fn guarded(builder: reqwest::ClientBuilder, vendor_urls: VendorUrls) -> reqwest::ClientBuilder {
    match vendor_urls {
        VendorUrls::Official => builder.dns_resolver(PublicOnly),
        VendorUrls::Any => builder,
    }
}

/// A loopback, private or link-local address (or `localhost`).
pub fn is_private_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match url::Host::parse(host) {
        Ok(url::Host::Ipv4(ip)) => private_v4(ip),
        Ok(url::Host::Ipv6(ip)) => private_v6(ip),
        _ => {
            let host = host.to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        }
    }
}

/// An IPv4 address a tenant's request must not reach: anything but a public unicast address.
/// Covers this network (0/8), private (10/8, 172.16/12, 192.168/16), carrier-grade NAT
/// (100.64/10), loopback (127/8), link-local and cloud metadata (169.254/16), IETF protocol
/// assignments (192.0.0/24, where some clouds keep metadata too), documentation (192.0.2/24,
/// 198.51.100/24, 203.0.113/24), the 6to4 relay (192.88.99/24), benchmarking (198.18/15),
/// multicast (224/4) and reserved space including broadcast (240/4).
pub fn private_v4(ip: std::net::Ipv4Addr) -> bool {
    match ip.octets() {
        [0 | 10 | 127, ..] => true,
        [100, b, ..] if b & 0xc0 == 64 => true,
        [169, 254, ..] | [192, 168, ..] => true,
        [172, b, ..] if b & 0xf0 == 16 => true,
        [192, 0, 0 | 2, _] | [192, 88, 99, _] | [198, 51, 100, _] | [203, 0, 113, _] => true,
        [198, b, ..] if b & 0xfe == 18 => true,
        [a, ..] => a >= 224,
    }
}

/// An IPv6 address a tenant's request must not reach. Only global unicast (2000::/3) is
/// public, less its special-purpose blocks (2001::/23 with Teredo, documentation 2001:db8::/32
/// and 3fff::/20); addresses that carry an IPv4 address (mapped `::ffff:a.b.c.d`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that address. Everything else (loopback,
/// unspecified, IPv4-compatible `::a.b.c.d`, unique-local fc00::/7, link-local fe80::/10,
/// multicast ff00::/8, discard 100::/64, local NAT64 64:ff9b:1::/48) is refused.
pub fn private_v6(ip: std::net::Ipv6Addr) -> bool {
    let s = ip.segments();
    let v4 =
        |high: u16, low: u16| std::net::Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return private_v4(mapped);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return private_v4(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return private_v4(v4(s[1], s[2]));
    }
    s[0] & 0xe000 != 0x2000
        || (s[0] == 0x2001 && s[1] < 0x0200)
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x3fff && s[1] & 0xf000 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_of_internal_addresses_are_refused() {
        let refused = PublicOnly
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is loopback");
        assert!(
            refused.to_string().contains("private or loopback"),
            "{refused}"
        );
        assert!(is_private("10.1.2.3".parse().unwrap()));
        assert!(is_private("::1".parse().unwrap()));
        assert!(!is_private("93.184.216.34".parse().unwrap()));
    }

    #[tokio::test]
    async fn literal_addresses_are_judged_without_a_lookup() {
        for host in ["127.0.0.1", "169.254.169.254", "[::1]", "::ffff:10.0.0.1"] {
            assert!(resolve_public(host, 25).await.is_err(), "{host}");
        }
        let found = resolve_public("93.184.216.34", 25).await.unwrap();
        assert_eq!(found, ["93.184.216.34:25".parse().unwrap()]);
    }

    #[test]
    fn limits_read_as_people_say_them() {
        let too_large = ReadError::TooLarge {
            limit: ANSWER_LIMIT,
        };
        assert_eq!(too_large.to_string(), "the answer is larger than 1 MiB");
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(100), "100 bytes");
    }
}
