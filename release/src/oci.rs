//! An OCI image layout (image-spec v1.1) holding one multi-platform image:
//! `index.json` names one image index blob (tagged with the version through
//! `org.opencontainers.image.ref.name`), which lists one image manifest per
//! platform, each with its config and its single gzipped layer. `crane push
//! LAYOUT REF` pushes that index as it is, so the digest printed here is the
//! one a registry serves.
//!
//! The JSON is written from the structs below (field order fixed, maps
//! sorted), not through a generic OCI crate, so the bytes and therefore the
//! digests depend only on the inputs (docs/decisions.md).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::tarball::{self, Entry};

pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A platform as OCI names it (`linux/amd64`, `linux/arm64/v8`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64` or `linux/arm64` (arm64 gets variant v8, as registries
    /// and `docker buildx` label it).
    pub fn linux(arch: &str) -> anyhow::Result<Platform> {
        let variant = match arch {
            "amd64" => None,
            "arm64" => Some("v8".to_string()),
            _ => bail!("unsupported architecture {arch:?} (amd64, arm64)"),
        };
        Ok(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (also the layout's `index.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub config: ExecConfig,
    pub rootfs: RootFs,
    pub history: Vec<History>,
}

/// How a container of the image runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    pub user: String,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub exposed_ports: BTreeMap<String, BTreeMap<String, String>>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub created: String,
    pub created_by: String,
}

/// One platform's image: its files and how it runs.
pub struct ImageInput {
    pub platform: Platform,
    pub files: Vec<Entry>,
    pub config: ExecConfig,
}

/// What was written: the index and each platform's manifest.
#[derive(Clone, Debug)]
pub struct Layout {
    pub index: Descriptor,
    pub manifests: Vec<Descriptor>,
}

/// Writes `images` as a fresh OCI layout in `dir` (anything there before
/// is removed), every time and date being `epoch` (SOURCE_DATE_EPOCH),
/// the index tagged `ref_name` and annotated with `annotations`.
pub fn write_layout(
    dir: &Path,
    images: &[ImageInput],
    epoch: i64,
    ref_name: &str,
    annotations: &BTreeMap<String, String>,
) -> anyhow::Result<Layout> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("create {}", blobs.display()))?;
    let created = crate::rfc3339(epoch)?;
    let mtime = u64::try_from(epoch).context("SOURCE_DATE_EPOCH before 1970")?;
    let put = |media_type: &str, data: &[u8]| -> anyhow::Result<Descriptor> {
        let digest = crate::digest(data);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(blobs.join(hex), data)?;
        Ok(Descriptor {
            media_type: media_type.into(),
            digest,
            size: data.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        })
    };
    let mut manifests = Vec::new();
    for image in images {
        let layer = tarball::tar(&image.files, mtime)?;
        let diff_id = crate::digest(&layer);
        let layer = put(LAYER, &tarball::gzip(&layer)?)?;
        let config = ImageConfig {
            created: created.clone(),
            architecture: image.platform.architecture.clone(),
            os: image.platform.os.clone(),
            variant: image.platform.variant.clone(),
            config: image.config.clone(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
            history: vec![History {
                created: created.clone(),
                created_by: "coffer-release image".into(),
            }],
        };
        let config = put(CONFIG, &serde_json::to_vec(&config)?)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST.into(),
            config,
            layers: vec![layer],
            annotations: annotations.clone(),
        };
        let mut desc = put(MANIFEST, &serde_json::to_vec(&manifest)?)?;
        desc.platform = Some(image.platform.clone());
        manifests.push(desc);
    }
    let index = Index {
        schema_version: 2,
        media_type: INDEX.into(),
        manifests: manifests.clone(),
        annotations: annotations.clone(),
    };
    let mut index_desc = put(INDEX, &serde_json::to_vec(&index)?)?;
    index_desc
        .annotations
        .insert(REF_NAME.into(), ref_name.into());
    let top = Index {
        schema_version: 2,
        media_type: INDEX.into(),
        manifests: vec![index_desc.clone()],
        annotations: BTreeMap::new(),
    };
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    index_desc.annotations.clear();
    Ok(Layout {
        index: index_desc,
        manifests,
    })
}

/// A blob of the layout in `dir`, checked against its digest.
pub fn read_blob(dir: &Path, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
    let hex = desc
        .digest
        .strip_prefix("sha256:")
        .with_context(|| format!("not a sha256 digest: {}", desc.digest))?;
    let path = dir.join("blobs/sha256").join(hex);
    let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    if crate::digest(&data) != desc.digest || data.len() as u64 != desc.size {
        bail!("{} does not match its descriptor", path.display());
    }
    Ok(data)
}

/// Reads the layout in `dir` as [`write_layout`] writes it: one index in
/// `index.json`, and its manifests.
pub fn read_layout(dir: &Path) -> anyhow::Result<Layout> {
    let path = dir.join("index.json");
    let top: Index = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("read {}", path.display()))?,
    )?;
    let [index] = top.manifests.as_slice() else {
        bail!(
            "{} names {} entries, not one index",
            path.display(),
            top.manifests.len()
        );
    };
    if index.media_type != INDEX {
        bail!(
            "{} names a {}, not an index",
            path.display(),
            index.media_type
        );
    }
    let inner: Index = serde_json::from_slice(&read_blob(dir, index)?)?;
    let mut index = index.clone();
    index.annotations.clear();
    Ok(Layout {
        index,
        manifests: inner.manifests,
    })
}
