//! A fake SMTP server (RFC 5321, plaintext, with `AUTH PLAIN` and `AUTH LOGIN`): it keeps the
//! messages it accepted, checks a username and password when told to, and can answer the next
//! messages with a temporary failure (`451`) to prove a sender retries.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and body), dot-unstuffed.
    pub data: String,
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    fail_next: usize,
    login: Option<(String, String)>,
    refused_logins: usize,
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
    /// Listens on `127.0.0.1:0` on the current tokio runtime.
    pub async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = session(stream, state).await;
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
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 fake.smtp ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut authed = false;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let needs_login = state.lock().unwrap().login.is_some();
        let reply: String = if upper.starts_with("EHLO") {
            "250-fake.smtp\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
        } else if upper.starts_with("HELO") {
            "250 fake.smtp\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
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
            authed = check_login(&state, &user, &pass);
            if authed {
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if upper.starts_with("AUTH LOGIN") {
            write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let user = read_b64(&mut lines).await?;
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let pass = read_b64(&mut lines).await?;
            authed = check_login(&state, &user, &pass);
            if authed {
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
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
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(unstuffed);
            }
            let mut state = state.lock().unwrap();
            if state.fail_next > 0 {
                state.fail_next -= 1;
                "451 4.3.0 Temporary failure, try again later\r\n".into()
            } else {
                state.messages.push(Received {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
                "250 2.0.0 OK queued\r\n".into()
            }
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            "250 2.0.0 OK\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
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
