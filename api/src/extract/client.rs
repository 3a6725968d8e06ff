//! The client's address: the TCP peer, or, when the peer is a trusted proxy
//! (`TRIBUTARY_TRUSTED_PROXIES`), the right-most address of `X-Forwarded-For` that is not
//! itself a trusted proxy. A header from any other peer is ignored, so a client cannot choose
//! the address it is throttled under.

use std::net::{IpAddr, SocketAddr};

use actix_web::dev::Payload;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest};
use futures::future::{Ready, ready};
use tributary_worker::settings::{Cidr, canonical_ip};

use crate::error::ApiError;
use crate::state::AppState;

/// Where a request came from, as far as the trusted proxies say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress(pub String);

impl FromRequest for ClientAddress {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(ClientAddress(from_request_parts(req))))
    }
}

/// The client's address of `req`, or `unknown`.
pub fn from_request_parts(req: &HttpRequest) -> String {
    {
        let trusted = req
            .app_data::<Data<AppState>>()
            .map(|state| state.settings.trusted_proxies.clone())
            .unwrap_or_default();
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect();
        let address = client_address(req.peer_addr().map(|a| a.ip()), &forwarded, &trusted);
        address.map_or_else(|| "unknown".into(), |a| a.to_string())
    }
}

/// The client behind `peer`, given the `X-Forwarded-For` header lines in order.
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded: &[&str],
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let is_trusted = |a: IpAddr| trusted.iter().any(|c| c.contains(a));
    let mut current = canonical_ip(peer?);
    if !is_trusted(current) {
        return Some(current);
    }
    // Each proxy appends the address it received from; walk back until someone untrusted.
    let hops = forwarded
        .iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .rev();
    for hop in hops {
        match parse_hop(hop) {
            Some(address) => {
                current = address;
                if !is_trusted(address) {
                    return Some(address);
                }
            }
            // A trusted proxy passed on something unreadable: believe no further.
            None => return Some(current),
        }
    }
    Some(current)
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        // Untrusted peer: the header is the client's own claim and is ignored.
        assert_eq!(
            client_address(Some(ip("203.0.113.5")), &["198.51.100.1"], &trusted),
            Some(ip("203.0.113.5"))
        );
        // Trusted peer: the right-most untrusted hop, whatever the client put on the left.
        assert_eq!(
            client_address(
                Some(ip("10.0.0.2")),
                &["1.1.1.1, 198.51.100.7", "10.0.0.9"],
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        // Only trusted hops: the left-most of them.
        assert_eq!(
            client_address(Some(ip("10.0.0.2")), &["10.0.0.3"], &trusted),
            Some(ip("10.0.0.3"))
        );
        // No header: the peer.
        assert_eq!(
            client_address(Some(ip("10.0.0.2")), &[], &trusted),
            Some(ip("10.0.0.2"))
        );
        // Garbage after a trusted hop: stop at the last address a trusted proxy vouched for.
        assert_eq!(
            client_address(Some(ip("10.0.0.2")), &["nonsense, 10.0.0.4"], &trusted),
            Some(ip("10.0.0.4"))
        );
        // Ports and IPv4-mapped forms are normalised.
        assert_eq!(
            client_address(
                Some(ip("::ffff:10.0.0.2")),
                &["198.51.100.9:4711"],
                &trusted
            ),
            Some(ip("198.51.100.9"))
        );
    }
}
