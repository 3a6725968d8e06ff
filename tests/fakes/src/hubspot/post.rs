//! What the fake HubSpot needs to deliver a webhook: HubSpot's signatures (v3 and the legacy
//! v1, with an HMAC-SHA256 built on `sha2`, the crate's one hash dependency) and a minimal
//! HTTP/1.1 client for `http://` targets over a tokio socket, so the fakes need no HTTP client
//! dependency of their own.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// The escapes HubSpot decodes in the URI before signing (v3), in either case, and their
/// characters; every other escape stays as it is.
const DECODED: [(&str, char); 12] = [
    ("3A", ':'),
    ("2F", '/'),
    ("3F", '?'),
    ("40", '@'),
    ("21", '!'),
    ("24", '$'),
    ("27", '\''),
    ("28", '('),
    ("29", ')'),
    ("2A", '*'),
    ("2C", ','),
    ("3B", ';'),
];

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `uri` with HubSpot's twelve escapes decoded, as HubSpot signs it.
pub fn decode_uri(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let decoded = rest.get(at + 1..at + 3).and_then(|hex| {
            DECODED
                .iter()
                .find(|(code, _)| code.eq_ignore_ascii_case(hex))
                .map(|(_, c)| *c)
        });
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `X-HubSpot-Signature-v3`: base64 of HMAC-SHA256 keyed with the client secret over
/// `method + decoded uri + body + timestamp`.
pub fn signature_v3(method: &str, uri: &str, body: &[u8], timestamp: &str, secret: &str) -> String {
    let mut message = Vec::with_capacity(method.len() + uri.len() + body.len() + timestamp.len());
    message.extend_from_slice(method.as_bytes());
    message.extend_from_slice(decode_uri(uri).as_bytes());
    message.extend_from_slice(body);
    message.extend_from_slice(timestamp.as_bytes());
    STANDARD.encode(hmac_sha256(secret.as_bytes(), &message))
}

/// The legacy `X-HubSpot-Signature` (version `v1`) HubSpot still sends with webhook
/// notifications: lowercase hex SHA-256 of `client secret + body`.
pub fn signature_v1(body: &[u8], secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(secret.as_bytes());
    hash.update(body);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a target answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// POSTs `body` as `application/json` with `headers` to an `http://` `url`, and reads the
/// answer; all of it must happen within `timeout`. `Err` says why no answer was had.
pub async fn post(
    url: &Url,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, String> {
    if url.scheme() != "http" {
        return Err(format!(
            "the fake HubSpot posts to http:// targets only, not {}",
            url.scheme()
        ));
    }
    let host = url.host_str().ok_or("the target URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let exchange = async {
        let mut stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("could not connect to {host}:{port}: {e}"))?;
        stream
            .write_all(&request(url, headers, body))
            .await
            .map_err(|e| format!("could not send the request: {e}"))?;
        read_answer(&mut stream).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
}

fn request(url: &Url, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut target = url.path().to_string();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut head = format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads an HTTP/1.1 answer: the status line, the headers, and the body by `Content-Length`,
/// by chunks, or up to the end of the connection.
async fn read_answer(stream: &mut TcpStream) -> Result<Answer, String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err("the connection closed before an answer".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:.80}"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let mut body = buf.split_off(head_end + 4);
    match length {
        Some(length) => {
            while body.len() < length && read_more(stream, &mut body).await? > 0 {}
            body.truncate(length);
        }
        None => while read_more(stream, &mut body).await? > 0 {},
    }
    if chunked {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 4096];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("could not read the answer: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(raw, b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        let start = line_end + 2;
        if size == 0 || raw.len() < start + size {
            break;
        }
        out.extend_from_slice(&raw[start..start + size]);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    out
}
