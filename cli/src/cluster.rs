//! Talking to the cluster: the cluster flags, the client from kubeconfig
//! flags, the published recipients file, and the controller's HTTP API
//! through the API server's service proxy. In the library because most
//! commands talk to the cluster, and `check` reads recipients files with
//! its parser.

use std::path::PathBuf;

use coffer_format::RecipientsFile;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{Failure, Result};

/// Name of the ConfigMap and key the controller publishes.
pub(crate) const RECIPIENTS_CONFIGMAP: &str = "coffer-recipients";
pub(crate) const RECIPIENTS_KEY: &str = "recipients.txt";
/// Service of the controller (deploy/), unless `--controller-name` says otherwise.
pub(crate) const SERVICE: &str = "coffer-controller";

/// The flags that say where the cluster and the controller are, taken by
/// every command that talks to them: after the command name, where its
/// help lists them, and before it (`coffer --context dr recipients`), where
/// `coffer --help` lists them. Not global, so the commands that need no
/// cluster do not list them; `keys` passes them on to its subcommands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG, which may list several files, or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Namespace where the controller runs and publishes its recipients [default: coffer-system].
    #[arg(long, env = "COFFER_CONTROLLER_NAMESPACE", value_name = "NS")]
    controller_namespace: Option<String>,
    /// Reach the controller's HTTP API at this URL (e.g. after `kubectl port-forward`) instead of through the API server's service proxy.
    #[arg(long, env = "COFFER_CONTROLLER_URL", value_name = "URL")]
    controller_url: Option<String>,
    /// Name of the controller's Service, reached through the API server's service proxy [default: coffer-controller].
    #[arg(long, env = "COFFER_CONTROLLER_NAME", value_name = "NAME")]
    controller_name: Option<String>,
}

impl ClusterArgs {
    /// The target these flags, given after the command, name; each one
    /// not given is taken from `before`, the flags given before it.
    pub fn target(&self, before: &ClusterArgs) -> Target {
        let or_before = |own: &Option<String>, top: &Option<String>| own.clone().or(top.clone());
        Target {
            kubeconfig: self.kubeconfig.clone().or(before.kubeconfig.clone()),
            context: or_before(&self.context, &before.context),
            controller_namespace: or_before(
                &self.controller_namespace,
                &before.controller_namespace,
            )
            .unwrap_or_else(|| CONTROLLER_NAMESPACE.into()),
            controller_url: or_before(&self.controller_url, &before.controller_url),
            service: or_before(&self.controller_name, &before.controller_name)
                .unwrap_or_else(|| SERVICE.into()),
        }
    }
}

/// Namespace of the controller (deploy/), unless `--controller-namespace`
/// says otherwise.
pub(crate) const CONTROLLER_NAMESPACE: &str = "coffer-system";

/// Kubeconfig selection, as kubectl does it.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) context: Option<String>,
    pub controller_namespace: String,
    /// Reach the controller's HTTP API directly (e.g. through
    /// `kubectl port-forward`) instead of through the API server's proxy.
    pub controller_url: Option<String>,
    /// Name of the controller's Service (`--controller-name`).
    pub(crate) service: String,
}

impl Target {
    fn kubeconfig(&self) -> Result<Option<Kubeconfig>> {
        match &self.kubeconfig {
            Some(p) => Kubeconfig::read_from(p).map(Some).map_err(|e| {
                Failure::input(format!("{}: not a readable kubeconfig: {e}", p.display()))
            }),
            None => Ok(Kubeconfig::read().ok()),
        }
    }

    /// The namespace of the current (or chosen) context, if any.
    pub fn context_namespace(&self) -> Option<String> {
        let kc = self.kubeconfig().ok()??;
        let name = self.context.clone().or(kc.current_context.clone())?;
        kc.contexts
            .iter()
            .find(|c| c.name == name)?
            .context
            .as_ref()?
            .namespace
            .clone()
    }

    /// Which cluster the published recipients come from, for notes: the
    /// controller at `--controller-url`, else the kubeconfig context.
    pub fn describe(&self) -> String {
        if let Some(url) = &self.controller_url {
            return format!("the controller at {url}");
        }
        let current = self
            .kubeconfig()
            .ok()
            .flatten()
            .and_then(|kc| kc.current_context);
        match self.context.clone().or(current) {
            Some(name) => format!("the cluster of kubeconfig context {name:?}"),
            None => "the cluster of the in-cluster config (no kubeconfig context)".into(),
        }
    }

    /// A client for the chosen context.
    pub async fn client(&self) -> Result<Client> {
        let opts = KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match self.kubeconfig()? {
            // Every error here is local: a context, cluster or user the
            // kubeconfig does not hold, or a certificate it cannot load.
            // The cluster was not contacted, so it is not a cluster error.
            Some(kc) => Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| {
                Failure::input(format!("cannot use the kubeconfig: {e}")).hint(
                    "check --context and --kubeconfig (`kubectl config get-contexts` lists the contexts)",
                )
            })?,
            None if self.context.is_some() => {
                return Err(Failure::input(
                    "--context was given, but no kubeconfig was found to hold it",
                )
                .hint("pass --kubeconfig FILE or set KUBECONFIG"));
            }
            None => Config::infer().await.map_err(|e| {
                Failure::input(format!("no kubeconfig found and not inside a cluster: {e}"))
                    .hint("pass --kubeconfig, or seal offline with --recipients FILE")
            })?,
        };
        Client::try_from(config)
            .map_err(|e| Failure::cluster(format!("cannot build a client: {e}")))
    }

    /// Fetches the recipients file: the ConfigMap through the Kubernetes API
    /// (works where the service proxy is blocked), else `/v1/recipients`
    /// through the service proxy.
    pub async fn recipients_text(&self) -> Result<String> {
        if let Some(base) = &self.controller_url {
            let url = format!("{}/v1/recipients", base.trim_end_matches('/'));
            return tokio::task::spawn_blocking(move || direct_get(&url))
                .await
                .map_err(|e| Failure::new(1, e.to_string()))?;
        }
        let client = self.client().await?;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &self.controller_namespace);
        let from_cm = match cms.get_opt(RECIPIENTS_CONFIGMAP).await {
            Ok(Some(cm)) => cm.data.and_then(|mut d| d.remove(RECIPIENTS_KEY)),
            Ok(None) => None,
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(text) = from_cm {
            return Ok(text);
        }
        match self.proxy_get(&client, "/v1/recipients").await {
            Ok(text) => Ok(text),
            Err(_) => Err(Failure::cluster(format!(
                "no recipients published in namespace {} (ConfigMap {RECIPIENTS_CONFIGMAP}, or /v1/recipients of service {})",
                self.controller_namespace, self.service
            ))
            .hint("is the controller installed? use --controller-namespace, or seal offline with --recipients FILE")),
        }
    }

    fn proxy_path(&self, path: &str) -> String {
        format!(
            "/api/v1/namespaces/{}/services/http:{}:http/proxy{path}",
            self.controller_namespace, self.service
        )
    }

    async fn proxy_get(&self, client: &Client, path: &str) -> Result<String> {
        if let Some(base) = &self.controller_url {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            return tokio::task::spawn_blocking(move || direct_get(&url))
                .await
                .map_err(|e| Failure::new(1, e.to_string()))?;
        }
        let req = http::Request::get(self.proxy_path(path))
            .body(Vec::new())
            .map_err(|e| Failure::new(1, e.to_string()))?;
        client.request_text(req).await.map_err(Failure::from)
    }

    /// GETs `path` of the controller's HTTP API (directly with
    /// --controller-url, else through the service proxy), retrying while it
    /// answers 429 (its rate limit) or 503 (not ready, or a replica that is
    /// not the leader), up to a minute. Returns the status code and body
    /// (a refusal's reason alone); transport errors are failures.
    /// `header`, when given, is sent with each try.
    pub async fn get_with_retry(
        &self,
        path: &str,
        header: Option<(&'static str, String)>,
    ) -> Result<(u16, String)> {
        let client = match &self.controller_url {
            Some(_) => None,
            None => Some(self.client().await?),
        };
        retrying(&[429, 503], || {
            self.call(client.as_ref(), path, None, header.clone())
        })
        .await
    }

    /// POSTs JSON to the controller (directly with --controller-url, else
    /// through the service proxy), waiting and retrying while it answers
    /// 429 (its per-client rate limit), up to a minute. Returns the status
    /// code and body; transport errors are failures.
    pub async fn post_with_retry(
        &self,
        client: Option<&Client>,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String)> {
        retrying(&[429], || self.call(client, path, Some(body.clone()), None)).await
    }

    /// One request to the controller: a GET, or a POST of JSON `body`,
    /// with `header` if given. Returns the status code and the body (a
    /// refusal's reason alone).
    async fn call(
        &self,
        client: Option<&Client>,
        path: &str,
        body: Option<Vec<u8>>,
        header: Option<(&'static str, String)>,
    ) -> Result<(u16, String)> {
        if let Some(base) = &self.controller_url {
            let url = format!("{}{path}", base.trim_end_matches('/'));
            return tokio::task::spawn_blocking(move || {
                direct_call(&url, body.as_deref(), header.as_ref())
            })
            .await
            .map_err(|e| Failure::new(1, e.to_string()))?;
        }
        let client = match client {
            Some(c) => c,
            None => &self.client().await?,
        };
        let mut req = if body.is_some() {
            http::Request::post(self.proxy_path(path)).header("content-type", "application/json")
        } else {
            http::Request::get(self.proxy_path(path))
        };
        if let Some((name, value)) = &header {
            req = req.header(*name, value.as_str());
        }
        let req = req
            .body(body_of(body))
            .map_err(|e| Failure::new(1, e.to_string()))?;
        let res = client.send(req).await.map_err(Failure::from)?;
        let code = res.status().as_u16();
        let bytes =
            res.into_body().collect_bytes().await.map_err(|e| {
                Failure::cluster(format!("cannot read the controller's answer: {e}"))
            })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(f) = self.api_server_refusal(client, code, &text).await {
            return Err(f);
        }
        Ok((code, controller_message(text)))
    }

    /// An error answered by the API server's service proxy itself (a
    /// Kubernetes `Status`), not by the controller: the Service is missing
    /// or has no ready endpoints, or the caller may not use the proxy.
    /// The proxy answers `services "…" not found` (404) both for a missing
    /// Service and for one without endpoints, so the Service is looked up.
    async fn api_server_refusal(&self, client: &Client, code: u16, body: &str) -> Option<Failure> {
        if (200..300).contains(&code) {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        if v.get("kind").and_then(|k| k.as_str()) != Some("Status") {
            return None;
        }
        let message = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
        let reason = v.get("reason").and_then(|m| m.as_str()).unwrap_or("");
        let about_service = v
            .pointer("/details/kind")
            .and_then(|k| k.as_str())
            .is_some_and(|k| k == "services" || k == "endpoints");
        let ns = &self.controller_namespace;
        let svc = &self.service;
        let service_exists = if code == 404 && about_service {
            let services: Api<Service> = Api::namespaced(client.clone(), ns);
            matches!(services.get_opt(&self.service).await, Ok(Some(_)))
        } else {
            false
        };
        Some(match code {
            503 => Failure::cluster(format!(
                "the controller Service {ns}/{svc} has no ready endpoints (is coffer-controller running?)"
            ))
            .hint(format!(
                "the API server answered for it: {message}; check `kubectl -n {ns} get pods,endpoints`"
            )),
            404 if service_exists || message.contains("endpoints") => Failure::cluster(format!(
                "the controller Service {ns}/{svc} has no ready endpoints (is coffer-controller running?)"
            ))
            .hint(format!("check `kubectl -n {ns} get pods,endpoints`")),
            404 if about_service || reason == "NotFound" => Failure::cluster(format!(
                "the API server has no Service {ns}/{svc} (is coffer-controller installed?)"
            ))
            .hint("pass --controller-namespace and --controller-name if it runs elsewhere, or --controller-url"),
            403 => Failure::cluster(format!("the cluster refused the request: {message}"))
                .hint(format!("it needs create on services/proxy in namespace {ns}")),
            _ => Failure::cluster(format!(
                "the API server answered HTTP {code} for the controller's Service: {message}"
            )),
        })
    }
}

/// The controller's refusals come as `{"error": "…"}`; keep the reason alone.
fn controller_message(text: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if v.get("error").is_some() => v["error"].as_str().unwrap_or_default().to_string(),
        _ => text,
    }
}

/// Parses recipients text with a name for errors.
pub fn parse_recipients(name: &str, text: &str) -> Result<RecipientsFile> {
    RecipientsFile::parse(text).map_err(|e| Failure::input(format!("{name}: {e}")))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// Waits and calls `f` again while it answers one of `codes`, up to a
/// minute, backing off from 200 ms to 3 s.
async fn retrying<F, Fut>(codes: &[u16], mut f: F) -> Result<(u16, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(u16, String)>>,
{
    let mut delay = std::time::Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (code, text) = f().await?;
        if !codes.contains(&code) || tokio::time::Instant::now() > deadline {
            return Ok((code, text));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(3));
    }
}

/// A request's body for the service proxy: the JSON given, or none.
fn body_of(body: Option<Vec<u8>>) -> kube::client::Body {
    match body {
        Some(b) => kube::client::Body::from(b),
        None => kube::client::Body::empty(),
    }
}

/// A GET, or a POST of JSON `body`, straight to `url` (--controller-url),
/// with `header` if given.
fn direct_call(
    url: &str,
    body: Option<&[u8]>,
    header: Option<&(&'static str, String)>,
) -> Result<(u16, String)> {
    let answer = match (body, header) {
        (Some(body), _) => agent()
            .post(url)
            .header("content-type", "application/json")
            .send(body),
        (None, Some((name, value))) => agent().get(url).header(*name, value.as_str()).call(),
        (None, None) => agent().get(url).call(),
    };
    let mut r = answer
        .map_err(|e| Failure::cluster(format!("cannot reach the controller at {url}: {e}")))?;
    let text = r.body_mut().read_to_string().unwrap_or_default();
    Ok((r.status().as_u16(), controller_message(text)))
}

/// Fetches a recipients file given as `-r https://…`.
pub fn fetch_recipients(url: &str) -> Result<String> {
    get_text(url, &format!("cannot fetch {url}"), |code| {
        format!("cannot fetch {url}: the server answered HTTP {code}")
    })
}

fn direct_get(url: &str) -> Result<String> {
    get_text(
        url,
        &format!("cannot reach the controller at {url}"),
        |code| format!("the controller answered HTTP {code} for {url}"),
    )
}

/// `GET`s `url` as text: `failed` prefixes a transport error, `refused`
/// says what an answer other than 200 means.
fn get_text(url: &str, failed: &str, refused: impl Fn(u16) -> String) -> Result<String> {
    let mut r = agent()
        .get(url)
        .call()
        .map_err(|e| Failure::cluster(format!("{failed}: {e}")))?;
    if r.status() != 200 {
        return Err(Failure::cluster(refused(r.status().as_u16())));
    }
    r.body_mut()
        .read_to_string()
        .map_err(|e| Failure::cluster(format!("{failed}: {e}")))
}

/// The SealedSecret a controller endpoint answered with (`/v1/reencrypt`,
/// `/v1/bitnami/convert`), or one error naming the file.
pub fn sealed_reply(label: &str, text: &str) -> Result<coffer_core::SealedSecret> {
    serde_json::from_str(text)
        .map_err(|e| e.to_string())
        .and_then(|v| match coffer_core::api::read_sealed_secret(v) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("not a SealedSecret".to_string()),
            Err(e) => Err(e.to_string()),
        })
        .map_err(|e| Failure::cluster(format!("{label}: bad reply from the controller: {e}")))
}
