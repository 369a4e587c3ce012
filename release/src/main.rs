//! coffer-release: the release scripts' writer of reproducible artifacts
//! (see the crate's lib.rs and release/build).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coffer_release::oci::{self, ImageInput, Platform};
use coffer_release::tarball::{self, Entry, Kind};
use coffer_release::{krew, rootfs};

#[derive(Parser)]
#[command(
    name = "coffer-release",
    about = "Write Coffer's release artifacts reproducibly (release/build runs this)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the controller image as an OCI layout with one index of all
    /// platforms; print the digests.
    Image {
        /// The layout directory (replaced).
        #[arg(long)]
        out: PathBuf,
        /// ARCH=PATH: the static coffer-controller for linux/ARCH (amd64, arm64).
        #[arg(long = "binary", value_name = "ARCH=PATH", required = true)]
        binaries: Vec<String>,
        #[arg(long)]
        version: String,
        /// The commit the binaries were built from.
        #[arg(long)]
        revision: String,
        #[arg(long, default_value = "https://github.com/coffer-dev/coffer")]
        source: String,
        /// Every time in the image (the commit's time).
        #[arg(long, env = "SOURCE_DATE_EPOCH")]
        epoch: i64,
    },
    /// Print the digest of each platform's manifest and of the index of an
    /// image layout.
    Digests { layout: PathBuf },
    /// Write the image's files (around one binary) into a directory, for
    /// deploy/Dockerfile.
    Rootfs {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        binary: PathBuf,
    },
    /// Write a reproducible .tar.gz of files (executables 0755, others 0644).
    Archive {
        #[arg(long)]
        out: PathBuf,
        /// NAME=PATH: PATH stored as NAME.
        #[arg(long = "file", value_name = "NAME=PATH", required = true)]
        files: Vec<String>,
        #[arg(long, env = "SOURCE_DATE_EPOCH")]
        epoch: i64,
    },
    /// Print the krew plugin manifest for the CLI archives.
    Krew {
        #[arg(long)]
        version: String,
        /// URL of the directory the archives are downloaded from.
        #[arg(long)]
        url_base: String,
        #[arg(long, default_value = "https://github.com/coffer-dev/coffer")]
        homepage: String,
        /// OS/ARCH=PATH, e.g. linux/amd64=coffer-0.1.0-linux-amd64.tar.gz.
        #[arg(long = "archive", value_name = "OS/ARCH=PATH", required = true)]
        archives: Vec<String>,
    },
}

fn split(arg: &str) -> anyhow::Result<(&str, PathBuf)> {
    let (name, path) = arg
        .split_once('=')
        .with_context(|| format!("{arg:?} is not NAME=PATH"))?;
    Ok((name, PathBuf::from(path)))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

fn print_digests(layout: &oci::Layout) {
    for m in &layout.manifests {
        let platform = m.platform.as_ref().map(ToString::to_string);
        println!("{} {}", platform.as_deref().unwrap_or("?"), m.digest);
    }
    println!("index {}", layout.index.digest);
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Image {
            out,
            binaries,
            version,
            revision,
            source,
            epoch,
        } => {
            let created = coffer_release::rfc3339(epoch)?;
            let annotations = BTreeMap::from([
                ("org.opencontainers.image.created".to_string(), created),
                (
                    "org.opencontainers.image.licenses".into(),
                    "Apache-2.0".into(),
                ),
                ("org.opencontainers.image.revision".into(), revision),
                ("org.opencontainers.image.source".into(), source),
                (
                    "org.opencontainers.image.title".into(),
                    "coffer-controller".into(),
                ),
                ("org.opencontainers.image.version".into(), version.clone()),
            ]);
            let mut images = Vec::new();
            for b in &binaries {
                let (arch, path) = split(b)?;
                images.push(ImageInput {
                    platform: Platform::linux(arch)?,
                    files: rootfs::files(read(&path)?),
                    config: rootfs::exec_config(annotations.clone()),
                });
            }
            let layout = oci::write_layout(&out, &images, epoch, &version, &annotations)?;
            print_digests(&layout);
        }
        Command::Digests { layout } => print_digests(&oci::read_layout(&layout)?),
        Command::Rootfs { out, binary } => {
            std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
            let mut files = rootfs::files(read(&binary)?);
            // Each directory before what it holds.
            files.sort_by(|a, b| a.path.cmp(&b.path));
            for e in files {
                let path = out.join(&e.path);
                match &e.kind {
                    Kind::Dir => std::fs::create_dir_all(&path)?,
                    Kind::File(data) => std::fs::write(&path, data)?,
                }
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))
                    .with_context(|| format!("chmod {}", path.display()))?;
            }
        }
        Command::Archive { out, files, epoch } => {
            let mut entries = Vec::new();
            for f in &files {
                let (name, path) = split(f)?;
                let executable = std::fs::metadata(&path)
                    .with_context(|| format!("stat {}", path.display()))?
                    .permissions()
                    .mode()
                    & 0o111
                    != 0;
                let mode = if executable { 0o755 } else { 0o644 };
                entries.push(Entry::file(name, mode, read(&path)?));
            }
            let mtime = u64::try_from(epoch).context("SOURCE_DATE_EPOCH before 1970")?;
            let gz = tarball::gzip(&tarball::tar(&entries, mtime)?)?;
            std::fs::write(&out, gz).with_context(|| format!("write {}", out.display()))?;
        }
        Command::Krew {
            version,
            url_base,
            homepage,
            archives,
        } => {
            let mut list = Vec::new();
            for a in &archives {
                let (platform, path) = split(a)?;
                let (os, arch) = platform
                    .split_once('/')
                    .with_context(|| format!("{platform:?} is not OS/ARCH"))?;
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{} has no file name", path.display()))?;
                list.push(krew::Archive {
                    os: os.into(),
                    arch: arch.into(),
                    uri: format!("{}/{name}", url_base.trim_end_matches('/')),
                    sha256: coffer_release::sha256_hex(&read(&path)?),
                });
            }
            print!("{}", krew::manifest(&version, &homepage, &list));
        }
    }
    Ok(())
}
