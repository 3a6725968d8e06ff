//! A fake SMTP server (RFC 5321 with `AUTH PLAIN` and `AUTH LOGIN`): it keeps the messages it
//! accepted, checks a username and password when told to, and can answer the next messages with
//! a temporary failure (`451`) to prove a sender retries.
//!
//! Like a real submission server it offers `STARTTLS` (RFC 3207) on its plain port, and
//! [`FakeSmtp::start_implicit_tls`] speaks TLS from the first byte (RFC 8314, port 465's way).
//! Its certificate, for `localhost` and `127.0.0.1`, is issued by the test-only CA in
//! `tests/fakes/certs/ca.pem` ([`test_ca_path`]); a client trusts it only when told to.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const SERVER_CERT: &str = include_str!("../certs/server.pem");
const SERVER_KEY: &str = include_str!("../certs/server.key");

/// The PEM file of the test-only CA that issued the fake's certificate.
pub fn test_ca_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/ca.pem"))
}

fn acceptor() -> TlsAcceptor {
    let certs = CertificateDer::pem_slice_iter(SERVER_CERT.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the test certificate parses");
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).expect("the test key parses");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("the test certificate and key match");
    TlsAcceptor::from(Arc::new(config))
}

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and body), dot-unstuffed.
    pub data: String,
    /// Whether it came over TLS (after `STARTTLS`, or on the implicit-TLS port).
    pub tls: bool,
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    fail_next: usize,
    login: Option<(String, String)>,
    refused_logins: usize,
    /// TLS handshakes that failed (the client refused the certificate, or spoke no TLS).
    failed_handshakes: usize,
}

pub struct FakeSmtp {
    pub host: String,
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmtp {
    /// Listens on `127.0.0.1:0` on the current tokio runtime, in plain text with `STARTTLS`
    /// offered.
    pub async fn start() -> FakeSmtp {
        FakeSmtp::listen(false).await
    }

    /// Listens on `127.0.0.1:0` speaking TLS from the first byte (implicit TLS).
    pub async fn start_implicit_tls() -> FakeSmtp {
        FakeSmtp::listen(true).await
    }

    async fn listen(implicit_tls: bool) -> FakeSmtp {
        let acceptor = acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, implicit_tls, acceptor, state).await;
                });
            }
        });
        FakeSmtp {
            host: "127.0.0.1".into(),
            port,
            state,
            task,
        }
    }

    /// Accepts only this login from now on.
    pub fn require_login(&self, username: &str, password: &str) {
        self.state.lock().unwrap().login = Some((username.into(), password.into()));
    }

    /// Answers the next `n` messages with `451 4.3.0` (try again later).
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().unwrap().messages.clone()
    }

    pub fn refused_logins(&self) -> usize {
        self.state.lock().unwrap().refused_logins
    }

    /// TLS handshakes that failed, e.g. because the client did not trust the certificate.
    pub fn failed_handshakes(&self) -> usize {
        self.state.lock().unwrap().failed_handshakes
    }
}

async fn serve(
    stream: TcpStream,
    implicit_tls: bool,
    acceptor: TlsAcceptor,
    state: Arc<Mutex<State>>,
) -> std::io::Result<()> {
    let plain = if implicit_tls {
        stream
    } else {
        match session(stream, false, true, state.clone()).await? {
            Some(upgrading) => upgrading,
            None => return Ok(()),
        }
    };
    let secured = match acceptor.accept(plain).await {
        Ok(secured) => secured,
        Err(e) => {
            state.lock().unwrap().failed_handshakes += 1;
            return Err(e);
        }
    };
    // After STARTTLS the client speaks first (RFC 3207 4.2); on the implicit port the server
    // greets once the handshake is done.
    session(secured, true, implicit_tls, state)
        .await
        .map(|_| ())
}

/// One SMTP conversation on `stream` (`greet`: it starts with the server's `220`). Returns the
/// stream when the client asked for `STARTTLS` (the `220` already sent), for the caller to
/// secure and talk on afresh; `None` when the conversation ended.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    tls: bool,
    greet: bool,
    state: Arc<Mutex<State>>,
) -> std::io::Result<Option<S>> {
    let mut lines = BufReader::new(stream);
    if greet {
        lines
            .get_mut()
            .write_all(b"220 fake.smtp ESMTP ready\r\n")
            .await?;
        lines.get_mut().flush().await?;
    }
    let mut from = String::new();
    let mut to = Vec::new();
    let mut authed = false;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let needs_login = state.lock().unwrap().login.is_some();
        let reply: String = if upper.starts_with("EHLO") {
            // A new EHLO starts the session afresh (after STARTTLS, RFC 3207 4.2).
            from.clear();
            to.clear();
            authed = false;
            if tls {
                "250-fake.smtp\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
            } else {
                "250-fake.smtp\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
            }
        } else if upper == "STARTTLS" {
            if tls {
                "503 5.5.1 TLS already active\r\n".into()
            } else {
                lines
                    .get_mut()
                    .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                    .await?;
                lines.get_mut().flush().await?;
                if !lines.buffer().is_empty() {
                    // Commands sent before the handshake are never taken as secured.
                    return Ok(None);
                }
                return Ok(Some(lines.into_inner()));
            }
        } else if upper.starts_with("HELO") {
            "250 fake.smtp\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            authed = auth_plain(&command, &state);
            auth_reply(authed)
        } else if upper.starts_with("AUTH LOGIN") {
            authed = auth_login(&mut lines, &state).await?;
            auth_reply(authed)
        } else if upper.starts_with("MAIL FROM:") {
            if needs_login && !authed {
                "530 5.7.0 Authentication required\r\n".into()
            } else {
                from = address(&command[10..]);
                to.clear();
                "250 2.1.0 OK\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command[8..]));
            "250 2.1.5 OK\r\n".into()
        } else if upper == "DATA" {
            match receive_data(&mut lines, &state, (&from, &to), tls).await? {
                Some(reply) => reply,
                None => return Ok(None),
            }
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            "250 2.0.0 OK\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            lines.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
            lines.get_mut().flush().await?;
            return Ok(None);
        } else {
            "502 5.5.2 Command not recognized\r\n".into()
        };
        lines.get_mut().write_all(reply.as_bytes()).await?;
        lines.get_mut().flush().await?;
    }
}

/// `AUTH PLAIN <base64 of \0user\0pass>`: whether the login holds.
fn auth_plain(command: &str, state: &Arc<Mutex<State>>) -> bool {
    let encoded = command.split_whitespace().nth(2).unwrap_or_default();
    let decoded = STANDARD.decode(encoded).unwrap_or_default();
    let parts: Vec<String> = decoded
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let (user, pass) = (
        parts.get(1).cloned().unwrap_or_default(),
        parts.get(2).cloned().unwrap_or_default(),
    );
    check_login(state, &user, &pass)
}

/// `AUTH LOGIN`: asks for the user name and the password in turn; whether the login holds.
async fn auth_login<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut BufReader<S>,
    state: &Arc<Mutex<State>>,
) -> std::io::Result<bool> {
    lines.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await?;
    lines.get_mut().flush().await?;
    let user = read_b64(lines).await?;
    lines.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
    lines.get_mut().flush().await?;
    let pass = read_b64(lines).await?;
    Ok(check_login(state, &user, &pass))
}

/// The answer to a login.
fn auth_reply(authed: bool) -> String {
    if authed {
        "235 2.7.0 Authentication successful\r\n".into()
    } else {
        "535 5.7.8 Authentication credentials invalid\r\n".into()
    }
}

/// `DATA`: reads the message up to its lone `.` and keeps it (or refuses it while `fail_next`
/// lasts); the reply, or `None` when the client hung up mid-message.
async fn receive_data<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut BufReader<S>,
    state: &Arc<Mutex<State>>,
    (from, to): (&str, &[String]),
    tls: bool,
) -> std::io::Result<Option<String>> {
    lines
        .get_mut()
        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        .await?;
    lines.get_mut().flush().await?;
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if line == ".\r\n" || line == ".\n" {
            break;
        }
        let unstuffed = line.strip_prefix('.').unwrap_or(&line);
        data.push_str(unstuffed);
    }
    let mut state = state.lock().unwrap();
    Ok(Some(if state.fail_next > 0 {
        state.fail_next -= 1;
        "451 4.3.0 Temporary failure, try again later\r\n".into()
    } else {
        state.messages.push(Received {
            from: from.to_string(),
            to: to.to_vec(),
            data,
            tls,
        });
        "250 2.0.0 OK queued\r\n".into()
    }))
}

fn check_login(state: &Arc<Mutex<State>>, user: &str, pass: &str) -> bool {
    let mut state = state.lock().unwrap();
    let ok = match &state.login {
        Some((u, p)) => u == user && p == pass,
        None => true,
    };
    if !ok {
        state.refused_logins += 1;
    }
    ok
}

async fn read_b64<R: AsyncBufReadExt + Unpin>(lines: &mut R) -> std::io::Result<String> {
    let mut line = String::new();
    lines.read_line(&mut line).await?;
    let decoded = STANDARD.decode(line.trim()).unwrap_or_default();
    Ok(String::from_utf8_lossy(&decoded).into_owned())
}

fn address(text: &str) -> String {
    let text = text.trim();
    let inner = text
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address)
        .unwrap_or(text);
    inner.to_string()
}
