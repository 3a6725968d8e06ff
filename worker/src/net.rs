//! Name resolution for requests to URLs tenants give (CRM connections, http steps, alert
//! channels). Under `TRIBUTARY_VENDOR_URLS=official` a host name that resolves only to private,
//! loopback or link-local addresses is refused when the request connects, and such addresses
//! are never dialled: the URL checks see only literal addresses, so without this a tenant could
//! reach the internal network through a DNS name.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::settings::VendorUrls;

/// Resolves with the system resolver and keeps public addresses only.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found
                .into_iter()
                .filter(|address| !is_private(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to private or loopback addresses (TRIBUTARY_VENDOR_URLS=official)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// A private, loopback, link-local or otherwise internal address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => crate::crm::config::private_v4(ip),
        IpAddr::V6(ip) => crate::crm::config::private_v6(ip),
    }
}

/// `builder`, resolving public addresses only when connections must stay on vendors' hosts.
pub fn guarded(builder: reqwest::ClientBuilder, vendor_urls: VendorUrls) -> reqwest::ClientBuilder {
    match vendor_urls {
        VendorUrls::Official => builder.dns_resolver(PublicOnly),
        VendorUrls::Any => builder,
    }
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
}
