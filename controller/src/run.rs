//! Wiring: client, key ring, controllers, shutdown.

use std::sync::Arc;

use anyhow::Context as _;
use coffer_core::SealedSecret;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::args::RunArgs;
use crate::keys::{self, KeyManager, Keys};
use crate::metrics::Metrics;
use crate::ratelimit::{Bucket, RateLimitLayer};
use crate::reconcile::{self, Context, digest_in_place};

/// Builds a client from the flags, with the QPS/burst limit and request counter.
pub async fn client(args: &RunArgs, metrics: &Metrics) -> anyhow::Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let opts = kube::config::KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    let layer = RateLimitLayer {
        bucket: Bucket::new(args.kube_qps, args.kube_burst),
        counter: metrics.api_requests.clone(),
    };
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(builder.with_layer(&layer).build())
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let client = client(&args, &metrics).await?;
    let keys = Keys::new();

    let key_secrets: Api<Secret> = Api::namespaced(client.clone(), &args.key_namespace);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &args.key_namespace);
    let manager = KeyManager {
        secrets: key_secrets.clone(),
        configmaps,
        keys: keys.clone(),
        renewal_period: args.key_renewal_period,
        cluster_name: args.cluster_name.clone(),
    };

    // Fail early with a clear message when the CRD is missing.
    let probe: Api<SealedSecret> = Api::all(client.clone());
    probe
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .context("cannot list SealedSecrets: is crds/sealedsecret.yaml installed and does RBAC allow it?")?;

    let watch = tokio::spawn(keys::watch_keys(key_secrets, keys.clone()));
    let manage = tokio::spawn(async move { manager.run().await });
    let key_metrics = tokio::spawn(key_metrics(keys.clone(), metrics.clone()));
    tracing::info!(namespace = %args.key_namespace, "waiting for the key ring");
    tokio::select! {
        _ = keys::wait_ready(&keys) => {}
        r = watch => { r??; anyhow::bail!("key watch ended"); }
    }
    tracing::info!(active = %keys.current().active().map(|k| k.id.to_string()).unwrap_or_default(), "key ring loaded");

    let reporter = Reporter {
        controller: "coffer-controller".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let salt = {
        let mut s = [0u8; 32];
        getrandom::getrandom(&mut s).context("no randomness")?;
        s
    };
    let namespaces: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let mut controllers = Vec::new();
    for ns in namespaces {
        let (sealed_api, secret_api): (Api<SealedSecret>, Api<Secret>) = match &ns {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let (store, writer) = reflector::store();
        let owned = watcher(
            secret_api,
            watcher::Config::default().labels(reconcile::owned_selector()),
        )
        .default_backoff()
        .modify(move |s: &mut Secret| digest_in_place(s, &salt))
        .reflect(writer)
        .touched_objects();
        let ctx = Arc::new(Context {
            client: client.clone(),
            keys: keys.clone(),
            secrets: store,
            recorder: Recorder::new(client.clone(), reporter.clone()),
            digest_salt: salt,
            metrics: metrics.clone(),
        });
        let (sealed_store, sealed_writer) = reflector::store();
        let sealed_stream = watcher(sealed_api, watch_config())
            .backoff(ShortBackoff::default())
            .modify(|s: &mut SealedSecret| s.metadata.managed_fields = None)
            .reflect(sealed_writer)
            .touched_objects();
        let controller = Controller::for_stream(sealed_stream, sealed_store)
            .with_config(kube::runtime::controller::Config::default().concurrency(args.concurrency))
            .owns_stream(owned)
            .reconcile_all_on(keys::changes(&keys))
            .shutdown_on_signal()
            .run(reconcile::reconcile, reconcile::error_policy, ctx)
            .for_each(|_| futures::future::ready(()));
        controllers.push(controller);
    }
    tracing::info!("controller started");
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        r = manage => { r??; }
    }
    key_metrics.abort();
    tracing::info!("controller stopped");
    Ok(())
}

async fn key_metrics(keys: Arc<Keys>, metrics: Arc<Metrics>) {
    loop {
        let s = keys.current();
        let retired = s.keys.iter().filter(|k| k.retired).count() as i64;
        let usable = s.keys.len() as i64 - retired;
        let age = s
            .active()
            .map(|k| {
                jiff::Timestamp::now()
                    .duration_since(k.created)
                    .as_secs_f64()
            })
            .unwrap_or(0.0);
        metrics.set_keys(i64::from(s.active().is_some()), usable, retired, age);
        tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    }
}

/// Watches list from the API server's watch cache ("any" resourceVersion).
/// Cheaper at scale, and after an API server restart a consistent list was
/// seen to return a resourceVersion older than the restarted cache can watch
/// from, looping on 410 Gone for a minute (kube-apiserver 1.36); the e2e
/// test `the_controller_recovers_when_the_api_server_restarts` covers it.
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().list_semantic(watcher::ListSemantic::Any)
}

/// Retry delay for watches: 0.25 s doubling to at most 5 s, so the
/// controller is back within seconds after an API outage (kube's default
/// grows to minutes).
#[derive(Debug, Default)]
pub struct ShortBackoff {
    attempt: u32,
}

impl Iterator for ShortBackoff {
    type Item = std::time::Duration;
    fn next(&mut self) -> Option<Self::Item> {
        let ms = 250u64.saturating_mul(1 << self.attempt.min(5)).min(5000);
        self.attempt = self.attempt.saturating_add(1);
        Some(std::time::Duration::from_millis(ms))
    }
}

impl kube::runtime::utils::Backoff for ShortBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}
