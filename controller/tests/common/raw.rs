//! HTTP/1.1 by hand over TCP, for clients that misbehave: headers that never
//! end, bodies announced and not sent, connections held open, other
//! loopback source addresses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What came back on a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A whole response: status code and body.
    Response(u16, String),
    /// The server closed (or reset) the connection without a whole response.
    Closed,
    /// Nothing complete within the time given; the connection is still open.
    Nothing,
}

impl Answer {
    /// The status code, failing on anything but a response.
    #[track_caller]
    pub fn code(&self) -> u16 {
        match self {
            Answer::Response(c, _) => *c,
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// A connection from `from`, another loopback address (127.0.0.0/8).
pub async fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    socket.connect(addr).await.expect("connect")
}

/// A request head; `body_len` goes into Content-Length when given.
pub fn head(method: &str, path: &str, body_len: Option<usize>, keep_alive: bool) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: coffer\r\n");
    if let Some(n) = body_len {
        h.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {n}\r\n"
        ));
    }
    if !keep_alive {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h
}

/// The head of a POST whose body follows in chunks (no Content-Length).
pub fn chunked_head(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: coffer\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

/// One chunk of a chunked body, sent in a single write; whether the server
/// still took it (a refused or closed connection stops reading).
pub async fn send_chunk(c: &mut TcpStream, data: &[u8]) -> bool {
    let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
    framed.extend_from_slice(data);
    framed.extend_from_slice(b"\r\n");
    c.write_all(&framed).await.is_ok()
}

/// Writes, ignoring a server that has stopped reading or closed.
pub async fn send(c: &mut TcpStream, bytes: &[u8]) {
    let _ = c.write_all(bytes).await;
}

/// Reads one response (its body by Content-Length), waiting at most `within`.
pub async fn answer(c: &mut TcpStream, within: Duration) -> Answer {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(a) = parse(&buf) {
                return a;
            }
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse(&buf).unwrap_or(Answer::Closed),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Answer::Nothing)
}

fn parse(buf: &[u8]) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    if (100..200).contains(&code) {
        // An interim response: the real one follows.
        return parse(&buf[end..]);
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let body = buf.get(end..end + len)?;
    Some(Answer::Response(
        code,
        String::from_utf8_lossy(body).into_owned(),
    ))
}

/// Whether the server ends the connection within `within` (whatever it
/// sends first).
pub async fn ends_within(c: &mut TcpStream, within: Duration) -> bool {
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

/// One request on a new connection.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut c = connect(addr).await;
    let len = (method == "POST").then_some(body.len());
    send(&mut c, head(method, path, len, false).as_bytes()).await;
    send(&mut c, body).await;
    answer(&mut c, Duration::from_secs(30)).await
}

/// One request on a new connection from `from`, another loopback address.
pub async fn request_from(
    from: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Answer {
    let mut c = connect_from(from, addr).await;
    let len = (method == "POST").then_some(body.len());
    send(&mut c, head(method, path, len, false).as_bytes()).await;
    send(&mut c, body).await;
    answer(&mut c, Duration::from_secs(30)).await
}
