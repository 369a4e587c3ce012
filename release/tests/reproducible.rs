//! The writers are deterministic and write what the image and the archives
//! promise, checked on tiny fake binaries (cheap: part of every test run;
//! release/tests/release.rs checks the real artifacts).

use std::collections::BTreeMap;
use std::io::Read as _;

use coffer_release::oci::{self, ImageConfig, ImageInput, Manifest, Platform};
use coffer_release::tarball::{self, Entry};
use coffer_release::{krew, rootfs};

const EPOCH: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn images(amd64: &[u8], arm64: &[u8]) -> Vec<ImageInput> {
    let labels = BTreeMap::from([("org.opencontainers.image.version".into(), "0.1.0".into())]);
    [("amd64", amd64), ("arm64", arm64)]
        .into_iter()
        .map(|(arch, bin)| ImageInput {
            platform: Platform::linux(arch).unwrap(),
            files: rootfs::files(bin.to_vec()),
            config: rootfs::exec_config(labels.clone()),
        })
        .collect()
}

fn write(dir: &std::path::Path, amd64: &[u8], arm64: &[u8]) -> oci::Layout {
    oci::write_layout(dir, &images(amd64, arm64), EPOCH, "0.1.0", &BTreeMap::new()).unwrap()
}

/// (path, mode, mtime, uid, gid) of every entry of a tar, in order.
fn listing(tar: &[u8]) -> Vec<(String, u32, u64, u64, u64)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_same_entries_in_any_order_make_the_same_tar_gz() {
    let a = vec![
        Entry::file("b", 0o644, "bee"),
        Entry::dir("d", 0o755),
        Entry::file("d/x", 0o755, "ex"),
        Entry::file("a", 0o644, "ay"),
    ];
    let mut b = a.clone();
    b.reverse();
    let tar_a = tarball::tar(&a, 42).unwrap();
    assert_eq!(tar_a, tarball::tar(&b, 42).unwrap());
    assert_eq!(
        tarball::gzip(&tar_a).unwrap(),
        tarball::gzip(&tarball::tar(&b, 42).unwrap()).unwrap()
    );
    assert_eq!(
        listing(&tar_a),
        vec![
            ("a".into(), 0o644, 42, 0, 0),
            ("b".into(), 0o644, 42, 0, 0),
            ("d/".into(), 0o755, 42, 0, 0),
            ("d/x".into(), 0o755, 42, 0, 0),
        ]
    );
    assert_ne!(
        tar_a,
        tarball::tar(&a, 43).unwrap(),
        "the mtime is in the tar"
    );
    // gzip's header holds no time (bytes 4..8) and no name (flag byte 3).
    let gz = tarball::gzip(&tar_a).unwrap();
    assert_eq!(&gz[3..8], &[0, 0, 0, 0, 0]);
}

#[test]
fn a_path_twice_is_refused() {
    let e = Entry::file("a", 0o644, "x");
    assert!(tarball::tar(&[e.clone(), e], 0).is_err());
}

#[test]
fn the_same_binaries_make_the_same_layout_and_another_binary_another_digest() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let a = write(one.path(), b"\x7fELF amd64", b"\x7fELF arm64");
    let b = write(two.path(), b"\x7fELF amd64", b"\x7fELF arm64");
    assert_eq!(a.index, b.index);
    assert_eq!(a.manifests, b.manifests);
    for name in ["index.json", "oci-layout"] {
        assert_eq!(
            std::fs::read(one.path().join(name)).unwrap(),
            std::fs::read(two.path().join(name)).unwrap()
        );
    }
    let c = write(two.path(), b"\x7fELF amd64", b"\x7fELF arm64, changed");
    assert_ne!(a.index.digest, c.index.digest);
    assert_eq!(a.manifests[0].digest, c.manifests[0].digest);
    assert_ne!(a.manifests[1].digest, c.manifests[1].digest);
}

#[test]
fn the_layout_reads_back_with_a_nonroot_config_and_no_shell() {
    let dir = tempfile::tempdir().unwrap();
    let written = write(dir.path(), b"amd64 binary", b"arm64 binary");
    let read = oci::read_layout(dir.path()).unwrap();
    assert_eq!(read.index, written.index);
    assert_eq!(read.manifests, written.manifests);
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        top["manifests"][0]["annotations"][oci::REF_NAME],
        "0.1.0",
        "the layout tags the index with the version"
    );
    let platforms: Vec<String> = read
        .manifests
        .iter()
        .map(|m| m.platform.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    for (m, binary) in read
        .manifests
        .iter()
        .zip([&b"amd64 binary"[..], b"arm64 binary"])
    {
        let manifest: Manifest =
            serde_json::from_slice(&oci::read_blob(dir.path(), m).unwrap()).unwrap();
        assert_eq!(manifest.media_type, oci::MANIFEST);
        let config: ImageConfig =
            serde_json::from_slice(&oci::read_blob(dir.path(), &manifest.config).unwrap()).unwrap();
        assert_eq!(config.config.user, "65532:65532");
        assert_eq!(config.config.entrypoint, ["/coffer-controller"]);
        assert_eq!(config.created, "2026-01-01T00:00:00Z");
        assert_eq!(
            &config.architecture,
            &m.platform.as_ref().unwrap().architecture
        );
        let [layer] = manifest.layers.as_slice() else {
            panic!("one layer")
        };
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&oci::read_blob(dir.path(), layer).unwrap()[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(config.rootfs.diff_ids, [coffer_release::digest(&tar)]);
        let entries = listing(&tar);
        let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "coffer-controller",
                "etc/",
                "etc/group",
                "etc/passwd",
                "etc/ssl/",
                "etc/ssl/certs/",
                "etc/ssl/certs/ca-certificates.crt",
                "tmp/"
            ]
        );
        assert!(entries.iter().all(|e| e.2 == EPOCH as u64 && e.3 == 0));
        let mut archive = tar::Archive::new(&tar[..]);
        let mut first = archive.entries().unwrap().next().unwrap().unwrap();
        let mut bytes = Vec::new();
        first.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, binary);
    }
}

#[test]
fn the_ca_bundle_is_mozillas_roots_as_pem() {
    let pem = rootfs::ca_bundle();
    let count = pem.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(count > 100, "only {count} certificates");
    assert_eq!(count, pem.matches("-----END CERTIFICATE-----").count());
    assert!(pem.lines().all(|l| l.len() <= 76));
}

#[test]
fn the_krew_manifest_names_each_archive_by_platform_and_sha256() {
    let archives = ["amd64", "arm64"].map(|arch| krew::Archive {
        os: "linux".into(),
        arch: arch.into(),
        uri: format!("https://example.com/coffer-0.1.0-linux-{arch}.tar.gz"),
        sha256: coffer_release::sha256_hex(arch.as_bytes()),
    });
    let text = krew::manifest("0.1.0", "https://example.com", &archives);
    let y: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(y["apiVersion"], "krew.googlecode.com/v1alpha2");
    assert_eq!(y["kind"], "Plugin");
    assert_eq!(y["metadata"]["name"], "coffer");
    assert_eq!(y["spec"]["version"], "v0.1.0");
    assert_eq!(y["spec"]["shortDescription"], krew::SHORT_DESCRIPTION);
    let platforms = y["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    for (p, a) in platforms.iter().zip(&archives) {
        assert_eq!(p["selector"]["matchLabels"]["os"], "linux");
        assert_eq!(p["selector"]["matchLabels"]["arch"], a.arch.as_str());
        assert_eq!(p["uri"], a.uri.as_str());
        assert_eq!(p["sha256"], a.sha256.as_str());
        assert_eq!(p["bin"], "coffer");
    }
}

#[test]
fn rootfs_writes_the_layers_files_with_their_modes_for_the_dockerfile() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("fake-controller");
    std::fs::write(&binary, b"\x7fELF fake").unwrap();
    let out = dir.path().join("rootfs");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_coffer-release"))
        .args(["rootfs", "--out"])
        .arg(&out)
        .arg("--binary")
        .arg(&binary)
        .status()
        .unwrap();
    assert!(status.success());
    let expected = rootfs::files(b"\x7fELF fake".to_vec());
    for e in &expected {
        let path = out.join(&e.path);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, e.mode, "{}", e.path);
        match &e.kind {
            tarball::Kind::Dir => assert!(meta.is_dir(), "{}", e.path),
            tarball::Kind::File(data) => assert_eq!(&std::fs::read(&path).unwrap(), data),
        }
    }
    let mut found = 0;
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let p = entry.unwrap().path();
            found += 1;
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert_eq!(found, expected.len(), "nothing more than the layer holds");
}
