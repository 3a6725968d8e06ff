//! Sending a call's requests: with the connection's auth and a timeout, once more after a
//! refresh when the vendor refuses the token, and token-endpoint forms without auth.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use super::Call;
use super::credentials::Session;
use super::wire::{Reply, Request, redact_url};
use crate::crm::config::Credentials;
use crate::crm::error::{CrmError, ErrorKind};

impl Call<'_> {
    /// Sends a request with the connection's auth; a 401 is answered by one refresh and one
    /// resend where the credentials allow it. Network failures and timeouts are transient.
    pub async fn send(&mut self, request: &Request) -> Result<Reply, CrmError> {
        loop {
            let session = self.session().await?;
            let url = self.request_url(request, &session)?;
            let body = request.body.as_ref().map(|b| b.to_string());
            let mut builder = self
                .connector
                .http
                .request(request.method.clone(), url.clone())
                .timeout(self.timeout)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = &body {
                builder = builder
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            } else if let Some((content_type, text)) = &request.text {
                let token = xml_escape(&session.access_token);
                builder = builder
                    .header(CONTENT_TYPE, content_type.as_str())
                    .body(text.replace(super::wire::SESSION_SLOT, &token));
            }
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            for (name, value) in self.auth_headers(&session, body.as_deref().unwrap_or(""))? {
                builder = builder.header(name, value);
            }
            // Held until the answer is read, or the request fails.
            let _lease = self.take_lease().await?;
            if !std::mem::take(&mut self.prepaid) {
                self.take_slot().await?;
            }
            self.trail.sent(&request.method, &url);
            let started = Instant::now();
            let response = builder.send().await;
            let provider = self.connection.provider.as_str();
            let response = match response {
                Ok(response) => response,
                Err(e) => return Err(self.send_failed(request, &url, &e, started)),
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = match tokio::time::timeout(
                self.timeout
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_secs(1)),
                crate::net::read_text(response, crate::net::ANSWER_LIMIT),
            )
            .await
            {
                Ok(Ok(text)) => text,
                Ok(Err(e)) if e.is_too_large() => {
                    crate::metrics::crm_request(
                        provider,
                        Some(status),
                        started.elapsed().as_secs_f64(),
                    );
                    return Err(CrmError::new(
                        ErrorKind::Permanent,
                        format!("{} {}: {e}", request.method, redact_url(&url)),
                    ));
                }
                _ => {
                    return Err(CrmError::new(
                        ErrorKind::Transient,
                        format!(
                            "{} {}: the answer was cut off",
                            request.method,
                            redact_url(&url)
                        ),
                    ));
                }
            };
            crate::metrics::crm_request(
                &self.connection.provider,
                Some(status),
                started.elapsed().as_secs_f64(),
            );
            tracing::debug!(
                connection_id = %self.connection.id,
                method = %request.method,
                path = url.path(),
                status,
                "vendor call"
            );
            self.trail.status = Some(status);
            let reply = Reply {
                status,
                headers,
                body: text,
            };
            self.note_limits(&reply).await;
            if status == 401 && self.credentials.can_refresh() && !self.refreshed {
                self.refreshed = true;
                let stale = Some(session.access_token.clone());
                self.refresh(stale).await?;
                continue;
            }
            return Ok(reply);
        }
    }

    /// The URL a request goes to: its path under the API base (or as given when absolute),
    /// with its query, checked against the addresses vendor calls may reach.
    fn request_url(&self, request: &Request, session: &Session) -> Result<url::Url, CrmError> {
        let url = if request.path.starts_with("http://") || request.path.starts_with("https://") {
            request.path.clone()
        } else if request.at_host {
            let base = self.api_base(session)?;
            let host = url::Url::parse(&base)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or(base);
            format!("{host}{}", request.path)
        } else {
            format!("{}{}", self.api_base(session)?, request.path)
        };
        let mut url = url::Url::parse(&url).map_err(|e| {
            CrmError::new(ErrorKind::Permanent, format!("bad vendor URL {url}: {e}"))
        })?;
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&request.query);
        }
        crate::net::check_literal(&url, self.connector.vendor_urls)
            .map_err(|e| CrmError::new(ErrorKind::Permanent, e))?;
        Ok(url)
    }

    /// The error for a request that got no answer (refused, timed out, not connected), counted
    /// in the vendor request metrics.
    fn send_failed(
        &self,
        request: &Request,
        url: &url::Url,
        e: &reqwest::Error,
        started: Instant,
    ) -> CrmError {
        let provider = self.connection.provider.as_str();
        crate::metrics::crm_request(provider, None, started.elapsed().as_secs_f64());
        if let Some(refused) = crate::net::refusal(e) {
            return CrmError::new(
                ErrorKind::Permanent,
                format!("{} {}: {refused}", request.method, redact_url(url)),
            );
        }
        let what = if e.is_timeout() {
            format!("no answer within {} s", self.timeout.as_secs())
        } else if e.is_connect() {
            "cannot connect".to_string()
        } else {
            "the request failed".to_string()
        };
        CrmError::new(
            ErrorKind::Transient,
            format!("{} {}: {what}", request.method, redact_url(url)),
        )
    }

    fn auth_headers(
        &self,
        session: &Session,
        body: &str,
    ) -> Result<Vec<(reqwest::header::HeaderName, HeaderValue)>, CrmError> {
        let bad = |_| {
            CrmError::new(
                ErrorKind::Permanent,
                "a credential is not a valid header value",
            )
        };
        let mut headers = Vec::new();
        let bearer = |token: &str, scheme: &str| -> Result<HeaderValue, CrmError> {
            let mut value = HeaderValue::from_str(&format!("{scheme} {token}")).map_err(bad)?;
            value.set_sensitive(true);
            Ok(value)
        };
        let scheme = crate::crm::providers::get(&self.connection.provider)
            .map_or("Bearer", |p| p.auth_scheme);
        match &self.credentials {
            Credentials::None => {}
            Credentials::Oauth { .. } => {
                return Err(CrmError::new(
                    ErrorKind::Auth,
                    "the connection is waiting for its OAuth authorization to be completed",
                ));
            }
            Credentials::Token { token, .. } => {
                headers.push((AUTHORIZATION, bearer(token, scheme)?))
            }
            Credentials::RefreshToken { .. } | Credentials::JwtBearer { .. } => {
                headers.push((AUTHORIZATION, bearer(&session.access_token, scheme)?));
            }
            Credentials::Basic { username, password } => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                headers.push((AUTHORIZATION, bearer(&encoded, "Basic")?));
            }
            Credentials::Header { name, value } => {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| CrmError::new(ErrorKind::Permanent, "bad header name"))?;
                let mut value = HeaderValue::from_str(value).map_err(bad)?;
                value.set_sensitive(true);
                headers.push((name, value));
            }
            Credentials::Hmac { secret, header } => {
                use hmac::{Hmac, Mac};
                let name = reqwest::header::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| CrmError::new(ErrorKind::Permanent, "bad header name"))?;
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                    .expect("HMAC takes keys of any length");
                mac.update(body.as_bytes());
                let signature = hex::encode(mac.finalize().into_bytes());
                headers.push((name, HeaderValue::from_str(&signature).map_err(bad)?));
            }
        }
        Ok(headers)
    }

    /// Posts a form to a token endpoint (no auth header, no refresh on 401).
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Reply, CrmError> {
        let body = serde_urlencoded::to_string(form).expect("a form of strings encodes");
        let parsed = url::Url::parse(url).map_err(|e| {
            CrmError::new(ErrorKind::Permanent, format!("bad token URL {url}: {e}"))
        })?;
        crate::net::check_literal(&parsed, self.connector.vendor_urls)
            .map_err(|e| CrmError::new(ErrorKind::Permanent, e))?;
        let response = self
            .connector
            .http
            .post(parsed.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if let Some(refused) = crate::net::refusal(&e) {
                    return CrmError::new(
                        ErrorKind::Permanent,
                        format!("token endpoint {}: {refused}", redact_url(&parsed)),
                    );
                }
                let what = if e.is_timeout() {
                    "no answer in time"
                } else {
                    "cannot connect"
                };
                CrmError::new(
                    ErrorKind::Transient,
                    format!("token endpoint {}: {what}", redact_url(&parsed)),
                )
            })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = crate::net::read_text(response, crate::net::ANSWER_LIMIT)
            .await
            .map_err(|e| match e {
                crate::net::ReadError::TooLarge { .. } => CrmError::new(
                    ErrorKind::Permanent,
                    format!("the token endpoint's answer: {e}"),
                ),
                crate::net::ReadError::Cut(_) => CrmError::new(
                    ErrorKind::Transient,
                    "the token endpoint's answer was cut off",
                ),
            })?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Posts the OAuth `refresh_token` grant with the connection's client to `url`.
    pub async fn refresh_grant(&self, url: &str, vendor: &str) -> Result<Reply, CrmError> {
        let Credentials::RefreshToken {
            client_id,
            client_secret,
            refresh_token,
            ..
        } = &self.credentials
        else {
            return Err(CrmError::new(
                ErrorKind::Auth,
                format!("these {vendor} credentials cannot be refreshed"),
            ));
        };
        // The operator's app (stored on the connection by the OAuth callback) goes only to the
        // vendor's own token endpoint or the operator's, even if the row says otherwise.
        let provider = self.connection.provider.as_str();
        if self.connector.oauth_apps.iter().any(|app| {
            crate::secrets::expose(&app.client_secret) == client_secret.as_str()
                && !(app.provider == provider && app.may_send_to(url))
        }) {
            let shown = url::Url::parse(url).map_or_else(|_| url.to_string(), |u| redact_url(&u));
            return Err(CrmError::new(
                ErrorKind::Auth,
                format!(
                    "this connection gets its tokens from {shown}, where this server's {vendor} \
                     OAuth app is never sent; reconnect it with your own app \
                     (auth.client_id and auth.client_secret)"
                ),
            ));
        }
        self.post_form(
            url,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }
}

/// Text escaped for an XML element's content or attribute.
pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
