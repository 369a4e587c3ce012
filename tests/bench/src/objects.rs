//! The objects of a benchmark: its namespaces, the plain Secrets it seals
//! and what their Secrets must hold, and creating many objects at once.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::report::say;

/// The names of `k` benchmark namespaces: `bench-000`, `bench-001`, …
pub fn namespaces(k: u32) -> Vec<String> {
    (0..k).map(|i| format!("bench-{i:03}")).collect()
}

/// Creates namespace `name` unless it exists.
pub async fn ensure_namespace(admin: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(admin.clone());
    let obj = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating namespace"),
    }
}

/// `bytes` random bytes in hex.
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).context("no randomness")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// One Secret of a benchmark and the plaintext its Secret must hold.
#[derive(Clone, Debug)]
pub struct Item {
    pub namespace: String,
    pub name: String,
    pub expected: BTreeMap<String, Vec<u8>>,
}

impl Item {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// `n` Secrets `app-NNNNNN` of `k` items each (a database user, a random
/// password and a URL holding both, then random `item-NN`), spread over
/// `namespaces` in turn.
pub fn make_items(n: usize, k: usize, namespaces: &[String]) -> anyhow::Result<Vec<Item>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let namespace = namespaces[i % namespaces.len()].clone();
        let name = format!("app-{i:06}");
        let password = random_hex(18)?;
        let user = format!("user-{i}");
        let mut all: Vec<(String, String)> = vec![
            ("password".into(), password.clone()),
            (
                "url".into(),
                format!(
                    "postgres://{user}:{password}@db-{i}.{namespace}.svc:5432/app?sslmode=require"
                ),
            ),
            ("username".into(), user),
        ];
        for j in 3..k {
            all.push((format!("item-{j:02}"), random_hex(16)?));
        }
        all.truncate(k);
        out.push(Item {
            namespace,
            name,
            expected: all.into_iter().map(|(k, v)| (k, v.into_bytes())).collect(),
        });
    }
    Ok(out)
}

/// Creates `objs`, `concurrency` at a time, each through `api(obj)`; a
/// refused create is retried five times, 200 ms × attempt apart.
pub async fn create_all<K>(
    objs: impl IntoIterator<Item = K>,
    concurrency: usize,
    api: impl Fn(&K) -> Api<K>,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    futures::stream::iter(objs)
        .map(|obj| {
            let api = api(&obj);
            async move {
                let mut attempt = 0;
                loop {
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => return anyhow::Ok(()),
                        Err(e) if attempt < 5 => {
                            attempt += 1;
                            say(format!("create {} failed ({e}); retrying", obj.name_any()));
                            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        }
                        Err(e) => return Err(anyhow::Error::new(e).context("creating")),
                    }
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await
}
