//! OpenBao / HashiCorp Vault Transit (`transit:NAME`).
//!
//! - wrap: `POST /v1/<mount>/encrypt/<key>`; the stored bytes are Transit's
//!   ciphertext string (`vault:vN:...`).
//! - unwrap: `POST /v1/<mount>/decrypt/<key>`.
//! - the context (the Coffer key id) goes into both `associated_data` (the
//!   AEAD's associated data: aes256-gcm96, chacha20-poly1305 and the other
//!   AEAD key types authenticate it, and decrypting with another one fails)
//!   and `context` (used only by keys created with `derived=true`, which
//!   derive a per-context key from it; ignored otherwise). A ciphertext moved
//!   to another key's Secret does not open.
//! - rewrap: Transit's own `rewrap` endpoint takes no `associated_data`
//!   (OpenBao 2.7 fails with "message authentication failed"), so rewrap is
//!   a decrypt and an encrypt here: the plaintext passes through this
//!   process's memory (zeroized), as it does whenever the controller loads a
//!   key. When the new ciphertext's version is the old one's, the new one is
//!   dropped and rewrap returns `Ok(None)`.
//!
//! Auth: the Kubernetes auth method (a login, renewed before the lease ends
//! and after a 403), a token file (re-read after a 403), or `BAO_TOKEN` /
//! `VAULT_TOKEN`. HTTP is ureq (rustls with ring), blocking, run in tokio's
//! blocking pool: KEK calls are rare (once per key).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Kek, KekArgs, KekRef, KmsError, Result, blocking};

/// Every HTTP call's deadline, connection to last byte.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the server.
const MAX_RESPONSE: u64 = 1 << 20;
/// The largest ciphertext accepted for unwrap: a wrapped post-quantum
/// identity is a few kilobytes; anything this big is not one.
const MAX_WRAPPED: usize = 64 << 10;
/// The longest server message repeated in an error.
const MAX_DETAIL: usize = 400;

/// Connects to the Transit key `reference`: checks the flags, reads the
/// token (or logs in) once so a wrong setting shows at start.
pub(crate) async fn connect(reference: KekRef, args: &KekArgs) -> Result<Arc<dyn Kek>> {
    let inner = Arc::new(Inner::new(reference.clone(), args).map_err(|e| named(e, &reference))?);
    let first = Arc::clone(&inner);
    blocking(&inner.reference, move || first.token(None).map(drop)).await?;
    Ok(Arc::new(Transit { inner }))
}

/// A Transit key behind the [`Kek`] trait.
struct Transit {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transit")
            .field("kek", &self.inner.reference.to_string())
            .field("address", &self.inner.address)
            .field("mount", &self.inner.mount)
            .field("auth", &self.inner.auth.describe())
            .finish_non_exhaustive()
    }
}

/// How the token is obtained.
enum Auth {
    /// `POST /v1/auth/<mount>/login` with the ServiceAccount token.
    Kubernetes {
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
    /// A file holding a token, re-read after a 403.
    TokenFile(PathBuf),
    /// `BAO_TOKEN` / `VAULT_TOKEN`, read once.
    Env(&'static str, Zeroizing<String>),
}

impl Auth {
    fn describe(&self) -> String {
        match self {
            Auth::Kubernetes { mount, role, .. } => {
                format!("kubernetes auth at {mount:?}, role {role:?}")
            }
            Auth::TokenFile(path) => format!("token file {}", path.display()),
            Auth::Env(var, _) => format!("token from {var}"),
        }
    }
}

/// A token and when to stop using it.
struct Session {
    token: Zeroizing<String>,
    /// Log in again from then on (Kubernetes auth only).
    renew_at: Option<Instant>,
}

impl Session {
    /// A login's token with a lease of `lease` seconds (0: no expiry):
    /// renewed after three quarters of it, so a slow call still fits.
    fn leased(token: Zeroizing<String>, lease: u64, now: Instant) -> Session {
        let renew_at = (lease > 0).then(|| now + Duration::from_secs(lease) * 3 / 4);
        Session { token, renew_at }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }
}

struct Inner {
    reference: KekRef,
    agent: ureq::Agent,
    /// Without a trailing slash.
    address: String,
    mount: String,
    auth: Auth,
    session: Mutex<Option<Session>>,
}

/// What a call got back, before it becomes a [`KmsError`].
enum Reply {
    Ok(Zeroizing<Vec<u8>>),
    Forbidden(String),
    Failed(u16, String),
}

/// A configuration error, prefixed with the KEK it is about.
fn named(e: KmsError, kek: &KekRef) -> KmsError {
    match e {
        KmsError::Config(m) => KmsError::Config(format!("{kek}: {m}")),
        other => other,
    }
}

/// Which operation failed, to classify a 400.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Encrypt,
    Decrypt,
}

impl Inner {
    fn new(reference: KekRef, args: &KekArgs) -> Result<Inner> {
        check_name(&reference.key, "the Transit key name")?;
        let mount = check_mount(&args.kek_transit_mount, "--kek-transit-mount")?;
        let address = address(args)?;
        let auth = auth(args)?;
        let agent = agent(args.kek_ca_file.as_deref())?;
        if address.starts_with("http://") && !is_loopback(&address) {
            tracing::warn!(kek = %reference, %address, "the KEK server is reached over plain HTTP");
        }
        Ok(Inner {
            reference,
            agent,
            address,
            mount,
            auth,
            session: Mutex::new(None),
        })
    }

    /// The token to use. `refused`: the token the server just refused; a
    /// new one is obtained (a login, the file read again) unless another
    /// call already did.
    fn token(&self, refused: Option<&str>) -> Result<Zeroizing<String>> {
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = session.as_ref()
            && s.is_fresh(Instant::now())
            && refused.is_none_or(|r| r != s.token.as_str())
        {
            return Ok(s.token.clone());
        }
        let fresh = match &self.auth {
            Auth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => self.login(mount, role, jwt_file)?,
            Auth::TokenFile(path) => Session {
                token: read_secret(path, "--kek-token-file")
                    .map_err(|e| named(e, &self.reference))?,
                renew_at: None,
            },
            Auth::Env(_, token) => Session {
                token: token.clone(),
                renew_at: None,
            },
        };
        let token = fresh.token.clone();
        *session = Some(fresh);
        Ok(token)
    }

    /// The Kubernetes auth method's login.
    fn login(&self, mount: &str, role: &str, jwt_file: &Path) -> Result<Session> {
        let jwt =
            read_secret(jwt_file, "--kek-sa-token-file").map_err(|e| named(e, &self.reference))?;
        let body = json_body(&LoginRequest { role, jwt: &jwt }, jwt.len())?;
        let url = format!("{}/v1/auth/{mount}/login", self.address);
        let now = Instant::now();
        let reply = self.post(&url, None, &body)?;
        let refused = |detail: String| KmsError::Denied {
            kek: self.reference.clone(),
            detail: format!(
                "login with role {role:?} at auth/{mount}: {}",
                scrub(&detail, &[&jwt])
            ),
        };
        let data = match reply {
            Reply::Ok(data) => data,
            Reply::Forbidden(detail) => return Err(refused(detail)),
            Reply::Failed(status, detail) if is_transient(status) => {
                return Err(self.unavailable(status, &detail));
            }
            Reply::Failed(status, detail) => {
                return Err(refused(format!("HTTP {status}: {detail}")));
            }
        };
        let answer: LoginResponse =
            serde_json::from_slice(&data).map_err(|e| self.bad_answer("login", &json_error(&e)))?;
        let auth = answer
            .auth
            .ok_or_else(|| self.bad_answer("login", "no auth in the answer"))?;
        let token = Zeroizing::new(auth.client_token);
        if token.is_empty() {
            return Err(self.bad_answer("login", "an empty client token"));
        }
        tracing::debug!(kek = %self.reference, lease = auth.lease_duration, "logged in to the KEK server");
        Ok(Session::leased(token, auth.lease_duration, now))
    }

    /// One Transit call with the current token; after a 403, once more with
    /// a new login or a re-read token file.
    fn call(&self, op: Op, body: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let verb = match op {
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
        };
        let url = format!(
            "{}/v1/{}/{verb}/{}",
            self.address, self.mount, self.reference.key
        );
        let mut token = self.token(None)?;
        let mut retried = false;
        loop {
            match self.post(&url, Some(&token), body)? {
                Reply::Ok(data) => return Ok(data),
                Reply::Forbidden(detail) if retried || matches!(self.auth, Auth::Env(..)) => {
                    return Err(self.denied(op, &scrub(&detail, &[&token])));
                }
                Reply::Forbidden(_) => {
                    tracing::debug!(kek = %self.reference, "the KEK server refused the token; renewing it");
                    token = self.token(Some(&token))?;
                    retried = true;
                }
                Reply::Failed(status, detail) => return Err(self.classify(op, status, &detail)),
            }
        }
    }

    /// A POST of a JSON body; the answer's body on 2xx, else its errors.
    fn post(&self, url: &str, token: Option<&str>, body: &[u8]) -> Result<Reply> {
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        let mut response = request
            .send(body)
            .map_err(|e| self.unavailable(0, &e.to_string()))?;
        let status = response.status().as_u16();
        let capacity = response
            .body()
            .content_length()
            .map_or(4096, |n| n.min(MAX_RESPONSE))
            .try_into()
            .unwrap_or(4096);
        let mut data = Zeroizing::new(Vec::with_capacity(capacity));
        response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .reader()
            .read_to_end(&mut data)
            .map_err(|e| self.unavailable(status, &format!("reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(Reply::Ok(data));
        }
        let detail = server_errors(&data);
        Ok(if status == 403 {
            Reply::Forbidden(detail)
        } else {
            Reply::Failed(status, detail)
        })
    }

    fn classify(&self, op: Op, status: u16, detail: &str) -> KmsError {
        let kek = self.reference.clone();
        if is_transient(status) {
            return self.unavailable(status, detail);
        }
        let lower = detail.to_ascii_lowercase();
        let detail = format!("HTTP {status}: {detail}");
        if status == 404 {
            let detail = format!(
                "{detail} (is a Transit engine mounted at {:?}? --kek-transit-mount)",
                self.mount
            );
            return KmsError::KeyUnusable { kek, detail };
        }
        if status == 401 {
            return KmsError::Denied { kek, detail };
        }
        if KEY_UNUSABLE.iter().any(|m| lower.contains(m)) {
            return KmsError::KeyUnusable { kek, detail };
        }
        if REJECTED.iter().any(|m| lower.contains(m)) || op == Op::Decrypt {
            return KmsError::Rejected { kek, detail };
        }
        KmsError::KeyUnusable { kek, detail }
    }

    fn denied(&self, op: Op, detail: &str) -> KmsError {
        let hint = match op {
            Op::Encrypt => {
                "; the token needs `update` on the encrypt path; without `create`, a missing key reads as this"
            }
            Op::Decrypt => "; the token needs `update` on the decrypt path",
        };
        KmsError::Denied {
            kek: self.reference.clone(),
            detail: format!("HTTP 403: {detail} ({}{hint})", self.auth.describe()),
        }
    }

    fn unavailable(&self, status: u16, detail: &str) -> KmsError {
        let detail = if status == 0 {
            format!("{}: {detail}", self.address)
        } else {
            format!("{}: HTTP {status}: {detail}", self.address)
        };
        KmsError::Unavailable {
            kek: self.reference.clone(),
            detail,
        }
    }

    fn bad_answer(&self, what: &str, why: &str) -> KmsError {
        KmsError::Unavailable {
            kek: self.reference.clone(),
            detail: format!("{}: an unexpected {what} answer: {why}", self.address),
        }
    }

    fn encrypt(&self, plaintext: &[u8], context: &str) -> Result<(String, u64)> {
        let plaintext = Zeroizing::new(B64.encode(plaintext));
        let context = B64.encode(context);
        let request = EncryptRequest {
            plaintext: &plaintext,
            associated_data: &context,
            context: &context,
        };
        let body = json_body(&request, plaintext.len() + 2 * context.len())?;
        let data = self.call(Op::Encrypt, &body)?;
        let answer: Answer<EncryptData> = serde_json::from_slice(&data)
            .map_err(|e| self.bad_answer("encrypt", &json_error(&e)))?;
        let data = answer
            .data
            .ok_or_else(|| self.bad_answer("encrypt", "no data"))?;
        let version = version(data.ciphertext.as_bytes())
            .ok_or_else(|| self.bad_answer("encrypt", "a ciphertext without a vault:vN: prefix"))?;
        Ok((data.ciphertext, version))
    }

    fn decrypt(&self, wrapped: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>> {
        let ciphertext = self.check_wrapped(wrapped)?;
        let context = B64.encode(context);
        let request = DecryptRequest {
            ciphertext,
            associated_data: &context,
            context: &context,
        };
        let body = json_body(&request, ciphertext.len() + 2 * context.len())?;
        let data = self.call(Op::Decrypt, &body)?;
        let answer: Answer<DecryptData> = serde_json::from_slice(&data)
            .map_err(|e| self.bad_answer("decrypt", &json_error(&e)))?;
        let encoded = Zeroizing::new(
            answer
                .data
                .ok_or_else(|| self.bad_answer("decrypt", "no data"))?
                .plaintext,
        );
        B64.decode(encoded.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| self.bad_answer("decrypt", "a plaintext that is not base64"))
    }

    /// The ciphertext as Transit's string, or why it cannot be one.
    fn check_wrapped<'w>(&self, wrapped: &'w [u8]) -> Result<&'w str> {
        let rejected = |why: &str| KmsError::Rejected {
            kek: self.reference.clone(),
            detail: why.to_string(),
        };
        if wrapped.is_empty() {
            return Err(rejected("the wrapped key is empty"));
        }
        if wrapped.len() > MAX_WRAPPED {
            return Err(rejected(&format!(
                "the wrapped key is {} bytes, more than a Transit ciphertext of a key can be ({MAX_WRAPPED})",
                wrapped.len()
            )));
        }
        if version(wrapped).is_none() {
            return Err(rejected(
                "the wrapped key is not a Transit ciphertext (vault:vN:...)",
            ));
        }
        std::str::from_utf8(wrapped).map_err(|_| rejected("the wrapped key is not text"))
    }
}

/// Messages of a 400 that say the key cannot be used (OpenBao 2.7's, and
/// Vault's): missing, soft-deleted, of a type that cannot encrypt or bind
/// associated data, derived without a context, or a ciphertext version
/// below `min_decryption_version`.
const KEY_UNUSABLE: &[&str] = &[
    "key not found",
    "soft-deleted",
    "not supported for key type",
    "non-aead",
    "key derivation",
    "disallowed by policy",
    "min_encryption_version",
];

/// Messages of a 400 that say the ciphertext will not open: tampered,
/// truncated, another context, another key.
const REJECTED: &[&str] = &[
    "message authentication failed",
    "invalid ciphertext",
    "missing ciphertext",
    "could not decode",
    "illegal base64",
];

/// 5xx (503: sealed or standby), 429 (rate limit) and 412 (a replica that
/// is not yet consistent) pass; the rest needs a person.
fn is_transient(status: u16) -> bool {
    status >= 500 || status == 429 || status == 412 || status == 408
}

#[derive(Serialize)]
struct LoginRequest<'a> {
    role: &'a str,
    jwt: &'a str,
}

#[derive(Deserialize)]
struct LoginResponse {
    auth: Option<LoginAuth>,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
}

#[derive(Serialize)]
struct EncryptRequest<'a> {
    plaintext: &'a str,
    associated_data: &'a str,
    context: &'a str,
}

#[derive(Serialize)]
struct DecryptRequest<'a> {
    ciphertext: &'a str,
    associated_data: &'a str,
    context: &'a str,
}

#[derive(Deserialize)]
struct Answer<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
struct EncryptData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct DecryptData {
    plaintext: String,
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

/// A request body, in a buffer sized up front (no copy left behind by a
/// reallocation) and zeroized when dropped.
fn json_body<T: Serialize>(value: &T, secret_len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut body = Zeroizing::new(Vec::with_capacity(secret_len + 512));
    serde_json::to_writer(&mut *body, value)
        .map_err(|e| KmsError::Config(format!("encoding a request: {e}")))?;
    Ok(body)
}

/// The server's `errors`, joined and cut short; the raw start of the body
/// when it is not OpenBao's JSON (a proxy's page).
fn server_errors(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
        _ => String::from_utf8_lossy(&body[..body.len().min(MAX_DETAIL)]).into_owned(),
    };
    let text: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_DETAIL)
        .collect();
    if text.is_empty() {
        "no message".to_string()
    } else {
        text
    }
}

/// Where an answer stopped being what was expected, without serde's
/// message, which can quote the answer (a plaintext, a token).
fn json_error(e: &serde_json::Error) -> String {
    format!(
        "not the expected JSON (line {}, column {})",
        e.line(),
        e.column()
    )
}

/// `detail` without any of `secrets` in it (a server that echoes a JWT).
fn scrub(detail: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .fold(detail.to_string(), |d, s| d.replace(*s, "[redacted]"))
}

/// N of a `vault:vN:` ciphertext.
fn version(ciphertext: &[u8]) -> Option<u64> {
    let rest = ciphertext.strip_prefix(b"vault:v")?;
    let end = rest.iter().position(|&b| b == b':')?;
    let digits = std::str::from_utf8(&rest[..end]).ok()?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A token or JWT from a file, trimmed.
fn read_secret(path: &Path, flag: &str) -> Result<Zeroizing<String>> {
    let raw = Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| KmsError::Config(format!("{flag} {}: {e}", path.display())))?,
    );
    let text = std::str::from_utf8(&raw)
        .map_err(|_| KmsError::Config(format!("{flag} {}: not text", path.display())))?
        .trim();
    if text.is_empty() {
        return Err(KmsError::Config(format!(
            "{flag} {}: the file is empty",
            path.display()
        )));
    }
    Ok(Zeroizing::new(text.to_string()))
}

fn address(args: &KekArgs) -> Result<String> {
    let (address, from) = match &args.kek_address {
        Some(a) => (a.clone(), "--kek-address"),
        None => match ["BAO_ADDR", "VAULT_ADDR"].into_iter().find_map(|v| {
            std::env::var(v)
                .ok()
                .filter(|a| !a.is_empty())
                .map(|a| (a, v))
        }) {
            Some(found) => found,
            None => {
                return Err(KmsError::Config(
                    "no OpenBao/Vault address: give --kek-address (or BAO_ADDR / VAULT_ADDR)"
                        .to_string(),
                ));
            }
        },
    };
    let address = address.trim().trim_end_matches('/').to_string();
    let rest = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .ok_or_else(|| {
            KmsError::Config(format!("{from} {address:?}: expected https://HOST[:PORT]"))
        })?;
    if rest.is_empty()
        || rest.contains(['/', '?', '#', '@'])
        || rest.chars().any(char::is_whitespace)
    {
        return Err(KmsError::Config(format!(
            "{from} {address:?}: expected https://HOST[:PORT], without a path"
        )));
    }
    Ok(address)
}

fn auth(args: &KekArgs) -> Result<Auth> {
    if let Some(role) = &args.kek_kubernetes_role {
        check_name(role, "--kek-kubernetes-role")?;
        let mount = check_mount(&args.kek_kubernetes_mount, "--kek-kubernetes-mount")?;
        return Ok(Auth::Kubernetes {
            mount,
            role: role.clone(),
            jwt_file: args.kek_sa_token_file.clone(),
        });
    }
    if let Some(path) = &args.kek_token_file {
        return Ok(Auth::TokenFile(path.clone()));
    }
    for var in ["BAO_TOKEN", "VAULT_TOKEN"] {
        if let Ok(token) = std::env::var(var) {
            let token = Zeroizing::new(token);
            if !token.trim().is_empty() {
                return Ok(Auth::Env(var, Zeroizing::new(token.trim().to_string())));
            }
        }
    }
    Err(KmsError::Config(
        "no OpenBao/Vault credentials: give --kek-kubernetes-role (in a cluster) or --kek-token-file \
         (or set BAO_TOKEN / VAULT_TOKEN)"
            .to_string(),
    ))
}

/// A Transit key or role name: what OpenBao's name patterns accept, and
/// nothing that would change the URL.
fn check_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(KmsError::Config(format!(
            "{what} {name:?}: use letters, digits and _ - . @ only"
        )))
    }
}

/// A mount path: segments of name characters, slashes trimmed.
fn check_mount(mount: &str, flag: &str) -> Result<String> {
    let mount = mount.trim_matches('/');
    let ok = !mount.is_empty()
        && mount.len() <= 256
        && mount.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        });
    if ok {
        Ok(mount.to_string())
    } else {
        Err(KmsError::Config(format!(
            "{flag} {mount:?}: use path segments of letters, digits and _ - ."
        )))
    }
}

fn is_loopback(address: &str) -> bool {
    let host = address.trim_start_matches("http://");
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|h| host == *h || host.starts_with(&format!("{h}:")))
}

/// The HTTP client: 10 s deadlines, statuses as answers, no redirects, no
/// pooled connections, Mozilla's roots plus `ca_file`'s.
fn agent(ca_file: Option<&Path>) -> Result<ureq::Agent> {
    let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| KmsError::Config(format!("--kek-ca-file {}: {e}", path.display())))?;
        let mut roots: Vec<ureq::tls::Certificate<'static>> =
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()))
                .collect();
        let before = roots.len();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => roots.push(cert),
                Ok(_) => {}
                Err(e) => {
                    return Err(KmsError::Config(format!(
                        "--kek-ca-file {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        if roots.len() == before {
            return Err(KmsError::Config(format!(
                "--kek-ca-file {}: no PEM certificate in it",
                path.display()
            )));
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        // A connection per call: calls are rare (once per key), and a
        // pooled connection idle for hours is one the server or a load
        // balancer may have dropped.
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .user_agent(concat!("coffer-kms/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

impl Kek for Transit {
    fn reference(&self) -> &KekRef {
        &self.inner.reference
    }

    fn wrap<'a>(&'a self, plaintext: &'a [u8], context: &'a str) -> BoxFuture<'a, Result<Vec<u8>>> {
        let inner = Arc::clone(&self.inner);
        let plaintext = Zeroizing::new(plaintext.to_vec());
        let context = context.to_string();
        Box::pin(async move {
            let (ciphertext, _) = blocking(&self.inner.reference, move || {
                inner.encrypt(&plaintext, &context)
            })
            .await?;
            Ok(ciphertext.into_bytes())
        })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        context: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>>> {
        let inner = Arc::clone(&self.inner);
        let wrapped = wrapped.to_vec();
        let context = context.to_string();
        Box::pin(blocking(&self.inner.reference, move || {
            inner.decrypt(&wrapped, &context)
        }))
    }

    /// Decrypts and encrypts again (Transit's `rewrap` cannot carry the
    /// associated data); `Ok(None)` when the key's newest version is the
    /// one `wrapped` is under.
    fn rewrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        context: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        let inner = Arc::clone(&self.inner);
        let wrapped = wrapped.to_vec();
        let context = context.to_string();
        Box::pin(blocking(&self.inner.reference, move || {
            let plaintext = inner.decrypt(&wrapped, &context)?;
            let old = version(&wrapped).unwrap_or(0);
            let (ciphertext, new) = inner.encrypt(&plaintext, &context)?;
            Ok((new != old).then(|| ciphertext.into_bytes()))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(version(b"vault:v1:abc"), Some(1));
        assert_eq!(version(b"vault:v12:"), Some(12));
        for bad in [
            &b"vault:v:x"[..],
            b"vault:vx:y",
            b"vault:v1",
            b"v1:x",
            b"",
            b"vault:v-1:x",
            b"vault:v+1:x",
        ] {
            assert_eq!(version(bad), None, "{bad:?}");
        }
        assert_eq!(version(b"vault:v99999999999999999999:x"), None);
    }

    #[test]
    fn login_body_has_the_role_and_jwt() {
        let body = json_body(
            &LoginRequest {
                role: "coffer",
                jwt: "eyJ.a\"b",
            },
            8,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"role": "coffer", "jwt": "eyJ.a\"b"}));
    }

    #[test]
    fn a_lease_is_renewed_before_it_ends() {
        let now = Instant::now();
        let s = Session::leased(Zeroizing::new("t".into()), 100, now);
        assert!(s.is_fresh(now + Duration::from_secs(74)));
        assert!(!s.is_fresh(now + Duration::from_secs(75)));
        let forever = Session::leased(Zeroizing::new("t".into()), 0, now);
        assert!(forever.is_fresh(now + Duration::from_secs(1 << 30)));
    }

    #[test]
    fn server_messages_are_cut_and_secrets_scrubbed() {
        assert_eq!(
            server_errors(br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#),
            "1 error occurred: * permission denied"
        );
        assert_eq!(server_errors(b""), "no message");
        assert_eq!(server_errors(&[b'x'; 5000]).len(), MAX_DETAIL);
        assert_eq!(
            scrub("bad jwt eyJhbGciOi here", &["eyJhbGciOi"]),
            "bad jwt [redacted] here"
        );
    }

    #[test]
    fn names_and_mounts_cannot_change_the_url() {
        assert!(check_name("coffer-kek_1.v2@x", "k").is_ok());
        for bad in ["", "a/b", "a?b", "a#b", "..", ".x", "a%2f"] {
            assert!(check_name(bad, "k").is_err(), "{bad}");
        }
        assert_eq!(check_mount("/team/transit/", "m").unwrap(), "team/transit");
        for bad in ["", "/", "a//b", "a/../b", "a?b", "a b"] {
            assert!(check_mount(bad, "m").is_err(), "{bad}");
        }
    }

    #[test]
    fn transient_statuses() {
        for s in [500, 502, 503, 429, 412] {
            assert!(is_transient(s));
        }
        for s in [400, 401, 403, 404] {
            assert!(!is_transient(s));
        }
    }
}
