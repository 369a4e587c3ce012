//! Everything that talks to the API server: the gateway every Secret,
//! status and Event write goes through, how watches are run, Events, the
//! client-side rate limit and the count of requests by verb and code.

pub(crate) mod api_count;
pub(crate) mod events;
pub(crate) mod gateway;
#[cfg(test)]
pub(crate) mod mock;
pub(crate) mod ratelimit;
pub(crate) mod watch;

use std::sync::Arc;

use anyhow::Context as _;
use kube::Client;

use crate::args::RunArgs;
use crate::client::api_count::CountLayer;
use crate::client::ratelimit::{Bucket, Priority, RateLimitLayer};
use crate::metrics::Metrics;

/// API clients built from the flags, sharing one QPS/burst limit and the
/// request counters.
pub struct Clients {
    pub main: Client,
    /// Takes only the tokens `main` leaves free (Normal Events).
    pub background: Client,
}

/// Builds the clients from the flags.
pub async fn build(args: &RunArgs, metrics: &Arc<Metrics>) -> anyhow::Result<Clients> {
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
        priority: Priority::Normal,
    };
    let background = RateLimitLayer {
        priority: Priority::Background,
        ..layer.clone()
    };
    let count = CountLayer(metrics.clone());
    let main = kube::client::ClientBuilder::try_from(config.clone())?
        .with_layer(&count)
        .with_layer(&layer)
        .build();
    let background = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .with_layer(&background)
        .build();
    Ok(Clients { main, background })
}
