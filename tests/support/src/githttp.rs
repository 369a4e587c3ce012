//! A Git server over HTTP on loopback, as a user's Git host serves a
//! repository: git's own smart-HTTP server, `git http-backend`, run as a
//! CGI program per request by a small host here (threads, HTTP/1.1, one
//! request per connection). Clients (Flux's source-controller, `git
//! clone`) speak the smart protocol to it: `GET
//! /REPO/info/refs?service=git-upload-pack`, then `POST
//! /REPO/git-upload-pack`.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, bail};

/// The largest request body accepted (a fetch's want/have list).
const MAX_BODY: usize = 16 << 20;

/// A running server; stopped on drop.
pub struct GitHttpServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GitHttpServer {
    /// Serves every repository under `root` (`root/NAME` or
    /// `root/NAME/.git`) at `http://ADDR/NAME`, read-only.
    pub fn start(root: &Path) -> anyhow::Result<GitHttpServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_path_buf();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, peer)) => {
                        let root = root.clone();
                        std::thread::spawn(move || {
                            if let Err(e) = serve(conn, peer, &root) {
                                eprintln!("git http server: {e:#}");
                            }
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) => eprintln!("git http server: accept: {e}"),
                }
            }
        });
        Ok(GitHttpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The URL of the repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request as read off the connection.
struct Request {
    method: String,
    target: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// One request: parsed, handed to `git http-backend` (CGI/1.1), its
/// answer relayed with the status line the CGI `Status:` header names.
fn serve(conn: TcpStream, peer: SocketAddr, root: &Path) -> anyhow::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let request = read_request(&conn)?;
    let answer = http_backend(&request, peer, root)?;
    respond(conn, &answer)
}

fn read_request(conn: &TcpStream) -> anyhow::Result<Request> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        bail!("bad request line {line:?}");
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            bail!("connection closed in the headers");
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(&mut reader)?
    } else {
        let len: usize = header("content-length").unwrap_or("0").parse()?;
        if len > MAX_BODY {
            bail!("body of {len} bytes");
        }
        let mut b = vec![0; len];
        reader.read_exact(&mut b)?;
        b
    };
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

/// Runs `git http-backend` on the request; returns its CGI output.
fn http_backend(request: &Request, peer: SocketAddr, root: &Path) -> anyhow::Result<Vec<u8>> {
    let Request {
        method,
        target,
        headers,
        body,
    } = request;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "coffer-test-git-http")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in headers {
        match k.as_str() {
            "content-type" => {
                cmd.env("CONTENT_TYPE", v);
            }
            "content-length" | "transfer-encoding" | "connection" => {}
            // Content-Encoding (gzip), Git-Protocol (v2), ... as CGI's HTTP_*.
            _ => {
                cmd.env(
                    format!("HTTP_{}", k.to_ascii_uppercase().replace('-', "_")),
                    v,
                );
            }
        }
    }
    let mut child = cmd.spawn().context("run git http-backend")?;
    let mut stdin = child.stdin.take().unwrap();
    let body = body.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.stderr.is_empty() {
        eprintln!(
            "git http-backend {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }

    if !out.status.success() && out.stdout.is_empty() {
        bail!("git http-backend: {}", out.status);
    }
    Ok(out.stdout)
}

/// Relays a CGI answer (headers, a blank line, the body) as HTTP/1.1.
fn respond(mut conn: TcpStream, text: &[u8]) -> anyhow::Result<()> {
    let split = find(text, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(text, b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        bail!("git http-backend gave no headers");
    };
    let head = String::from_utf8_lossy(&text[..end]);
    let mut status = "200 OK".to_string();
    let mut reply = Vec::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => reply.extend_from_slice(format!("{h}\r\n").as_bytes()),
            None => {}
        }
    }
    let body = &text[end + sep..];
    conn.write_all(format!("HTTP/1.1 {status}\r\n").as_bytes())?;
    conn.write_all(&reply)?;
    conn.write_all(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    conn.write_all(body)?;
    conn.flush()?;
    Ok(())
}

fn read_chunked(r: &mut impl std::io::BufRead) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .context("chunk size")?;
        if body.len() + size > MAX_BODY {
            bail!("chunked body too large");
        }
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        r.read_exact(&mut crlf)?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A directory to serve: `root/NAME` a Git repository with one commit of
/// `files` (path in the repository, source on disk: a file or a directory
/// copied whole) on branch `main`.
pub struct GitRepo {
    pub root: PathBuf,
    pub name: String,
}

impl GitRepo {
    pub fn init(root: &Path, name: &str) -> GitRepo {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("create the repository dir");
        crate::git(&dir, &["init", "-q", "-b", "main"]);
        GitRepo {
            root: root.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// Copies `from` (a file or directory) to `path` in the work tree.
    pub fn copy(&self, from: &Path, path: &str) {
        let to = self.dir().join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let ok = Command::new("cp")
            .arg("-R")
            .arg(from)
            .arg(&to)
            .status()
            .expect("cp")
            .success();
        assert!(ok, "cp -R {} {}", from.display(), to.display());
    }

    /// Writes `text` at `path` in the work tree.
    pub fn write(&self, path: &str, text: &str) {
        let to = self.dir().join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, text).unwrap();
    }

    /// Commits everything; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        crate::git(&self.dir(), &["add", "-A"]);
        crate::git(&self.dir(), &["commit", "-q", "-m", message]);
        crate::git(&self.dir(), &["rev-parse", "HEAD"])
            .trim()
            .to_string()
    }
}
