//! The release artifacts: the scripts and the workflow that make them
//! (cheap, every run), and what `release/build` wrote (the tests marked
//! `#[ignore]`: they need its artifacts, a 20-minute build; `release/check`
//! builds them and runs these with `--ignored`, and `tests/run` runs them
//! when the artifacts exist).
//!
//! The image: its config (nonroot, entrypoint, no shell), each platform's
//! controller a static ELF for its architecture, and the amd64 one run
//! from the unpacked image as in a Pod: chrooted into the image's files as
//! user 65532, configured only by what the kubelet gives a Pod (the
//! KUBERNETES_SERVICE_* variables and a ServiceAccount token, CA and
//! namespace at /var/run/secrets/kubernetes.io/serviceaccount), it creates
//! its key and unseals a SealedSecret. Then the layout pushed with crane to
//! crane's own registry keeps its digests; the CLI archives match
//! SHA256SUMS and the krew manifest, and `kubectl coffer` runs the archived
//! CLI as a plugin; the packaged chart names the image by the index digest.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use coffer_core::manifest::read_secrets;
use coffer_core::transform::seal_secret;
use coffer_format::Scope;
use coffer_release::oci::{self, Descriptor, ImageConfig, Manifest};
use coffer_test_support::tools::{Scratch, run, tool};
use coffer_test_support::{
    Cluster, ControllerProcess, LOG_LEVEL, Server, WAIT, free_port, grant_key_namespace,
    kubectl_bin, namespace, root, target_dir, token, yaml_objects,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SCRIPTS: &[&str] = &[
    "release/build",
    "release/binaries",
    "release/toolchain",
    "release/chart",
    "release/digests",
    "release/check",
    "tests/crane/build",
];

/// Where release/build wrote the artifacts.
fn artifacts() -> PathBuf {
    std::env::var_os("COFFER_RELEASE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("release-artifacts"))
}

fn run_ok(cmd: &mut Command) -> String {
    run(cmd, None)
}

fn sha256(path: &Path) -> String {
    coffer_release::sha256_hex(&std::fs::read(path).unwrap())
}

// ---- cheap: the scripts and the workflow ----

#[test]
fn the_release_scripts_are_executable_and_parse() {
    for script in SCRIPTS {
        let path = root().join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
        run_ok(Command::new("bash").arg("-n").arg(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#!/usr/bin/env bash\n") && text.contains("set -euo pipefail"),
            "{script} is not a strict bash script"
        );
    }
}

#[test]
fn the_release_workflow_runs_the_scripts_that_exist_and_publishes_all_three() {
    let path = root().join(".github/workflows/release.yaml");
    let text = std::fs::read_to_string(&path).expect("the release workflow");
    let doc: serde_json::Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // `on` is a plain key in YAML 1.2 (1.1 parsers read a boolean).
    let on = doc
        .get("on")
        .or_else(|| doc.get("true"))
        .expect("an `on` trigger");
    assert!(on["push"]["tags"].is_array(), "runs on pushed tags: {on}");
    let jobs = doc["jobs"].as_object().expect("jobs");
    let mut runs = String::new();
    for (name, job) in jobs {
        assert!(job["runs-on"].is_string(), "job {name} has no runs-on");
        for step in job["steps"].as_array().expect("steps") {
            if let Some(run) = step["run"].as_str() {
                runs.push_str(run);
                runs.push('\n');
            }
        }
    }
    let mut called = Vec::new();
    for word in runs.split(|c: char| c.is_whitespace() || c == '"' || c == '(' || c == ')') {
        let word = word.trim_start_matches("./");
        if word.starts_with("release/") || (word.starts_with("tests/") && word.ends_with("/build"))
        {
            let script = root().join(word);
            assert!(
                script.is_file() && script.metadata().unwrap().permissions().mode() & 0o111 != 0,
                "the workflow runs {word}, which is not an executable script"
            );
            called.push(word.to_string());
        }
    }
    for needed in ["release/build", "tests/crane/build", "tests/helm/build"] {
        assert!(
            called.iter().any(|c| c == needed),
            "the workflow does not run {needed}"
        );
    }
    for publish in ["crane\" push", "helm\" push", "gh release upload"] {
        assert!(runs.contains(publish), "the workflow does not `{publish}`");
    }
}

// ---- the artifacts ----

/// What an ELF file says about itself.
#[derive(Debug)]
struct Elf {
    machine: u16,
    interpreter: bool,
    needed: usize,
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// Reads the ELF header and program headers (64-bit little-endian only):
/// the machine, whether a program interpreter (a dynamic loader) is asked
/// for, and how many shared libraries the dynamic section needs.
fn elf(bytes: &[u8]) -> Elf {
    assert!(
        bytes.len() > 64 && &bytes[..4] == b"\x7fELF",
        "not an ELF file"
    );
    assert_eq!((bytes[4], bytes[5]), (2, 1), "not 64-bit little-endian");
    let u16_at = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54) as usize, u16_at(56) as usize);
    let mut e = Elf {
        machine: u16_at(18),
        interpreter: false,
        needed: 0,
    };
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        match u32_at(ph) {
            3 => e.interpreter = true, // PT_INTERP
            2 => {
                // PT_DYNAMIC: (d_tag, d_val) pairs; DT_NEEDED is 1.
                let (off, size) = (u64_at(ph + 8), u64_at(ph + 32));
                e.needed += (off..off + size)
                    .step_by(16)
                    .filter(|&d| u64_at(d) == 1)
                    .count();
            }
            _ => {}
        }
    }
    e
}

#[test]
fn the_elf_reader_sees_a_dynamic_loader_and_shared_libraries() {
    // This test binary is linked against the host's libc: the reader that
    // finds nothing in the release binaries finds both here.
    let e = elf(&std::fs::read(std::env::current_exe().unwrap()).unwrap());
    assert!(e.interpreter, "{e:?}");
    assert!(e.needed > 0, "{e:?}");
    #[cfg(target_arch = "x86_64")]
    assert_eq!(e.machine, EM_X86_64);
}

fn assert_static_for(bytes: &[u8], arch: &str, what: &str) {
    let e = elf(bytes);
    let machine = match arch {
        "amd64" => EM_X86_64,
        "arm64" => EM_AARCH64,
        _ => panic!("unknown architecture {arch}"),
    };
    assert_eq!(e.machine, machine, "{what} is not built for {arch}: {e:?}");
    assert!(!e.interpreter, "{what} asks for a dynamic loader");
    assert_eq!(e.needed, 0, "{what} needs shared libraries");
}

/// The platform images of the layout: (architecture, manifest, config, layer tar).
fn images(layout: &Path) -> Vec<(String, Manifest, ImageConfig, Vec<u8>)> {
    let index = oci::read_layout(layout).expect("read the image layout");
    index
        .manifests
        .iter()
        .map(|m: &Descriptor| {
            let manifest: Manifest =
                serde_json::from_slice(&oci::read_blob(layout, m).unwrap()).unwrap();
            let config: ImageConfig =
                serde_json::from_slice(&oci::read_blob(layout, &manifest.config).unwrap()).unwrap();
            let [layer] = manifest.layers.as_slice() else {
                panic!("{} has {} layers", m.digest, manifest.layers.len())
            };
            assert_eq!(layer.media_type, oci::LAYER);
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&oci::read_blob(layout, layer).unwrap()[..])
                .read_to_end(&mut tar)
                .unwrap();
            let arch = m
                .platform
                .as_ref()
                .expect("a platform")
                .architecture
                .clone();
            (arch, manifest, config, tar)
        })
        .collect()
}

/// path -> (mode, contents) of every entry of a tar.
fn tar_files(tar: &[u8]) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mode = e.header().mode().unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, (mode, data))
        })
        .collect()
}

fn revision(config: &ImageConfig) -> String {
    config.config.labels["org.opencontainers.image.revision"].clone()
}

#[test]
#[ignore = "needs release/build's artifacts; release/check runs it"]
fn the_image_runs_as_nonroot_without_a_shell_and_each_binary_is_static_for_its_platform() {
    let layout = artifacts().join("image");
    let images = images(&layout);
    let arches: Vec<&str> = images.iter().map(|i| i.0.as_str()).collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    for (arch, manifest, config, tar) in &images {
        assert_eq!(config.os, "linux");
        assert_eq!(&config.architecture, arch);
        assert_eq!(config.config.user, "65532:65532", "{arch}: not nonroot");
        assert_eq!(config.config.entrypoint, ["/coffer-controller"]);
        assert_eq!(
            config.config.labels["org.opencontainers.image.version"],
            VERSION
        );
        let rev = revision(config);
        assert!(
            rev.len() == 12 && rev.bytes().all(|b| b.is_ascii_hexdigit()),
            "{arch}: the image names no commit ({rev:?})"
        );
        assert_eq!(
            manifest.annotations["org.opencontainers.image.revision"],
            rev
        );
        let files = tar_files(tar);
        for path in files.keys() {
            let name = path.trim_end_matches('/').rsplit('/').next().unwrap();
            assert!(
                ![
                    "sh", "bash", "dash", "ash", "zsh", "ksh", "busybox", "toybox"
                ]
                .contains(&name)
                    && !path.starts_with("bin/")
                    && !path.starts_with("usr/")
                    && !path.starts_with("sbin/"),
                "{arch}: the image has {path}"
            );
        }
        let (mode, binary) = &files["coffer-controller"];
        assert_eq!(mode & 0o777, 0o755);
        assert_static_for(binary, arch, &format!("{arch} coffer-controller"));
        let certs =
            String::from_utf8(files["etc/ssl/certs/ca-certificates.crt"].1.clone()).unwrap();
        assert!(
            certs.matches("BEGIN CERTIFICATE").count() > 100,
            "{arch}: no CA bundle"
        );
        let passwd = String::from_utf8(files["etc/passwd"].1.clone()).unwrap();
        assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    }
    // release/digests prints what release/build printed, and what the
    // layout holds.
    let printed = run_ok(Command::new(root().join("release/digests")).arg(&layout));
    let written = std::fs::read_to_string(artifacts().join("digests.txt")).unwrap();
    assert_eq!(printed, written);
    let index = oci::read_layout(&layout).unwrap();
    assert_eq!(
        written,
        format!(
            "linux/amd64 {}\nlinux/arm64/v8 {}\nindex {}\n",
            index.manifests[0].digest, index.manifests[1].digest, index.index.digest
        )
    );
}

/// Unpacks the amd64 image's layer into a scratch directory; returns it and
/// the image's commit.
fn unpack_amd64() -> (Scratch, PathBuf, String) {
    let images = images(&artifacts().join("image"));
    let (_, _, config, tar) = images.into_iter().find(|i| i.0 == "amd64").expect("amd64");
    let scratch = Scratch::new("image-amd64");
    let rootfs = scratch.0.join("rootfs");
    let mut archive = tar::Archive::new(&tar[..]);
    archive.set_preserve_permissions(true);
    archive.unpack(&rootfs).expect("unpack the layer");
    (scratch, rootfs, revision(&config))
}

/// `chroot --userspec=65532:65532 ROOTFS /coffer-controller`, with an
/// empty environment: the image's user, files and nothing of this host.
fn in_image(rootfs: &Path) -> Command {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "running the image's binary under its own root directory and user needs root (chroot)"
    );
    // Found on this PATH (or sbin) now: the command's own PATH is empty.
    let chroot = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join("chroot"))
        .find(|p| p.is_file())
        .expect("chroot (coreutils)");
    let mut cmd = Command::new(chroot);
    cmd.arg("--userspec=65532:65532")
        .arg(rootfs)
        .arg("/coffer-controller")
        .env_clear();
    cmd
}

#[tokio::test]
#[ignore = "needs release/build's artifacts; release/check runs it"]
async fn the_amd64_image_runs_as_in_a_pod_creates_its_key_and_unseals() {
    let (_scratch, rootfs, commit) = unpack_amd64();
    let version = run_ok(in_image(&rootfs).arg("--version"));
    assert_eq!(
        version,
        format!("coffer-controller {VERSION} (commit {commit})\n")
    );

    let server = Server::shared().clone();
    server.install_deploy();
    let admin = server.admin().await;
    let ns = namespace(&admin, "image").await;
    let key_ns = namespace(&admin, "image-keys").await;
    grant_key_namespace(&admin, &key_ns).await;

    // The ServiceAccount volume the kubelet mounts into the Pod of
    // deploy/'s Deployment: a token of its ServiceAccount, the cluster CA,
    // the namespace.
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster.certificate_authority_data.as_ref().unwrap())
        .unwrap();
    let server_url = cluster.server.as_ref().unwrap();
    let (host, port) = server_url
        .strip_prefix("https://")
        .and_then(|hp| hp.rsplit_once(':'))
        .unwrap_or_else(|| panic!("server {server_url}"));
    let sa_dir = rootfs.join("var/run/secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(&sa_dir).unwrap();
    let sa_token = token(&admin, "coffer-system", "coffer-controller")
        .await
        .unwrap();
    for (name, data) in [
        ("token", sa_token.as_bytes()),
        ("ca.crt", &ca[..]),
        ("namespace", b"coffer-system"),
    ] {
        let path = sa_dir.join(name);
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    // The Deployment's container: its args and env, plus listeners on
    // loopback, the watched namespace, and a key ring of the test's own
    // (the flag wins over POD_NAMESPACE) so runs do not share one.
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = in_image(&rootfs);
    cmd.args(["--log-format=json", "--listen", &http.to_string()])
        .args(["--namespaces", &ns, "--key-namespace", &key_ns])
        .env("KUBERNETES_SERVICE_HOST", host)
        .env("KUBERNETES_SERVICE_PORT", port)
        .env("POD_NAMESPACE", "coffer-system")
        .env("POD_NAME", format!("coffer-controller-{ns}"))
        .env("COFFER_KEY_RENEWAL_PERIOD", "720h")
        .env("COFFER_PROBE_LISTEN", "127.0.0.1:0")
        .env("COFFER_LOG_LEVEL", LOG_LEVEL);
    let ctrl = ControllerProcess::spawn(cmd, &format!("image-{ns}"), http).unwrap();
    ctrl.wait_ready(WAIT).await.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", ctrl.pid())).unwrap();
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(ids, ["65532"; 4], "{field} of the controller");
    }
    let t = Cluster::around(
        server,
        admin,
        &rootfs.join("coffer-controller"),
        vec![ns.clone()],
        key_ns.clone(),
        ctrl,
    )
    .await;
    let keys: Api<Secret> = Api::namespaced(t.admin.clone(), &key_ns);
    let key_secrets = keys.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        key_secrets
            .items
            .iter()
            .filter(|s| s.type_.as_deref() == Some("coffer.dev/sealing-key"))
            .count(),
        1,
        "the controller created its first key"
    );

    let plaintext = "image-s3cr3t-value";
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  password: {plaintext}\n"
    );
    let m = &read_secrets(&yaml).unwrap()[0];
    let sealed = seal_secret(m, Some(&ns), false, Scope::Strict, &t.recipients).unwrap();
    t.sealed_api(&ns)
        .patch(
            "db",
            &PatchParams::apply("release-test").force(),
            &Patch::Apply(&sealed),
        )
        .await
        .unwrap();
    t.wait_reason(&ns, "db", "Unsealed").await;
    assert_eq!(
        t.secret_data(&ns, "db").await["password"],
        plaintext.as_bytes()
    );
    t.ctrl.assert_log_free_of(&[plaintext]);
}

#[test]
#[ignore = "needs release/build's artifacts; release/check runs it"]
fn the_layout_pushed_with_crane_keeps_its_digests() {
    let layout = artifacts().join("image");
    let index = oci::read_layout(&layout).unwrap();
    let crane = tool("tests/crane/build");
    let port = free_port();
    let mut registry = Command::new(&crane)
        .args([
            "registry",
            "serve",
            "--address",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reference = format!("127.0.0.1:{port}/coffer-controller:{VERSION}");
    let pushed = (0..50).find_map(|_| {
        let out = Command::new(&crane)
            .arg("push")
            .arg(&layout)
            .arg(&reference)
            .output()
            .unwrap();
        if out.status.success() {
            return Some(String::from_utf8(out.stdout).unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
        None
    });
    let digest_of = |platform: Option<&str>| {
        let mut cmd = Command::new(&crane);
        cmd.arg("digest").arg(&reference);
        if let Some(p) = platform {
            cmd.args(["--platform", p]);
        }
        run_ok(&mut cmd).trim().to_string()
    };
    let served = (
        digest_of(None),
        digest_of(Some("linux/amd64")),
        digest_of(Some("linux/arm64")),
    );
    let config = run_ok(
        Command::new(&crane)
            .args(["config", "--platform", "linux/arm64"])
            .arg(&reference),
    );
    let _ = registry.kill();
    let _ = registry.wait();
    let pushed = pushed.expect("crane push to its registry");
    assert_eq!(
        pushed.trim(),
        format!("127.0.0.1:{port}/coffer-controller@{}", index.index.digest)
    );
    assert_eq!(
        served,
        (
            index.index.digest.clone(),
            index.manifests[0].digest.clone(),
            index.manifests[1].digest.clone()
        )
    );
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["config"]["User"], "65532:65532");
}

#[test]
#[ignore = "needs release/build's artifacts; release/check runs it"]
fn the_cli_archives_match_sha256sums_and_the_krew_manifest_and_run_as_kubectl_coffer() {
    let dir = artifacts();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut summed = Vec::new();
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").expect("`SUM  NAME` lines");
        assert_eq!(sha256(&dir.join(name)), sum, "{name}");
        summed.push(name.to_string());
    }
    let archives = ["amd64", "arm64"].map(|a| format!("coffer-{VERSION}-linux-{a}.tar.gz"));
    let chart = format!("coffer-{VERSION}.tgz");
    assert_eq!(
        summed,
        [archives[0].clone(), archives[1].clone(), chart],
        "SHA256SUMS lists the archives and the chart"
    );

    let krew = yaml_objects(&std::fs::read_to_string(dir.join("coffer.yaml")).unwrap());
    let [plugin] = krew.as_slice() else {
        panic!("coffer.yaml holds one object")
    };
    assert_eq!(plugin["apiVersion"], "krew.googlecode.com/v1alpha2");
    assert_eq!(plugin["kind"], "Plugin");
    assert_eq!(plugin["metadata"]["name"], "coffer");
    assert_eq!(plugin["spec"]["version"], format!("v{VERSION}"));
    assert!(plugin["spec"]["shortDescription"].as_str().unwrap().len() <= 60);
    assert!(
        plugin["spec"]["homepage"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let platforms = plugin["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    let license = std::fs::read(root().join("LICENSE")).unwrap();
    let scratch = Scratch::new("cli-archives");
    for ((p, archive), arch) in platforms.iter().zip(&archives).zip(["amd64", "arm64"]) {
        assert_eq!(p["selector"]["matchLabels"]["os"], "linux");
        assert_eq!(p["selector"]["matchLabels"]["arch"], arch);
        let uri = p["uri"].as_str().unwrap();
        assert!(
            uri.starts_with("https://") && uri.ends_with(&format!("/{archive}")),
            "{uri}"
        );
        assert_eq!(p["sha256"], sha256(&dir.join(archive)), "{archive}");
        assert_eq!(p["bin"], "coffer");
        let files = tar_files(&{
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&std::fs::read(dir.join(archive)).unwrap()[..])
                .read_to_end(&mut tar)
                .unwrap();
            tar
        });
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(names, ["LICENSE", "README.md", "coffer"], "{archive}");
        for from in p["files"].as_array().unwrap() {
            let from = from["from"].as_str().unwrap();
            assert!(
                files.contains_key(from),
                "krew installs {from}, not in {archive}"
            );
        }
        assert_eq!(files["LICENSE"].1, license);
        assert_eq!(files["coffer"].0 & 0o777, 0o755);
        assert_static_for(&files["coffer"].1, arch, &format!("coffer in {archive}"));
        if arch == "amd64" {
            // What krew makes of it: the binary linked as kubectl-coffer
            // on PATH, found by kubectl as its plugin.
            let bin = scratch.write("coffer", &files["coffer"].1);
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::symlink(&bin, scratch.0.join("kubectl-coffer")).unwrap();
            let kubectl = |args: &[&str], stdin: &str| {
                run(
                    Command::new(kubectl_bin())
                        .args(args)
                        .env("PATH", &scratch.0)
                        .env("HOME", &scratch.0)
                        .env_remove("KUBECONFIG")
                        .current_dir(&scratch.0),
                    Some(stdin),
                )
            };
            let images = images(&dir.join("image"));
            let commit = revision(&images[0].2);
            assert_eq!(
                kubectl(&["coffer", "--version"], ""),
                format!("coffer {VERSION} (commit {commit})\n")
            );
            assert!(
                kubectl(&["coffer", "seal", "--help"], "").contains("Usage: kubectl coffer seal")
            );
            kubectl(
                &[
                    "coffer",
                    "keygen",
                    "-w",
                    "identity.txt",
                    "--recipients-out",
                    "r.txt",
                ],
                "",
            );
            let sealed = kubectl(
                &["coffer", "seal", "-r", "r.txt", "-n", "shop"],
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: pw\n",
            );
            let objects = yaml_objects(&sealed);
            assert_eq!(objects[0]["kind"], "SealedSecret", "{sealed}");
            assert!(!sealed.contains("pw\n"));
        }
    }
}

#[test]
#[ignore = "needs release/build's artifacts; release/check runs it"]
fn the_packaged_chart_names_the_image_by_the_built_index_digest() {
    let dir = artifacts();
    let index = oci::read_layout(&dir.join("image")).unwrap();
    let helm = tool("tests/helm/build");
    let home = target_dir().join("helm/home");
    let rendered = run_ok(
        Command::new(helm)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .args(["template", "coffer"])
            .arg(dir.join(format!("coffer-{VERSION}.tgz")))
            .args(["--namespace", "coffer-system"]),
    );
    let objects = yaml_objects(&rendered);
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!(
            "ghcr.io/coffer-dev/coffer-controller@{}",
            index.index.digest
        )
    );
}

#[test]
fn the_dockerfile_builds_the_same_files_and_runs_them_the_same_way() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let config = coffer_release::rootfs::exec_config(BTreeMap::new());
    let lines: Vec<&str> = text.lines().collect();
    let has = |line: &str| lines.contains(&line);
    // The binaries by the release script, the files by the release tool.
    assert!(text.contains("release/binaries \"$triple\""), "{text}");
    assert!(text.contains("-p coffer-release -- \\\n      rootfs --out /rootfs"));
    assert!(has("FROM scratch") && has("COPY --from=build /rootfs/ /"));
    assert!(has(&format!("USER {}", config.user)));
    assert!(has(&format!(
        "ENTRYPOINT {}",
        serde_json::to_string(&config.entrypoint).unwrap()
    )));
    for env in &config.env {
        assert!(
            has(&format!("ENV {env}")),
            "the Dockerfile does not set {env}"
        );
    }
    for port in config.exposed_ports.keys() {
        let port = port.trim_end_matches("/tcp");
        assert!(has(&format!("EXPOSE {port}")));
    }
}
