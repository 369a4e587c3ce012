//! The coffer command offline: every subcommand that needs no cluster, and
//! every error path a user hits, with its message and exit code.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
  labels: {app: shop}
stringData:
  password: cli-plaintext-1
  username: admin
";

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    /// A temp dir with a key (identity.txt) and its recipients file.
    fn new() -> Self {
        let d = Dir {
            tmp: tempfile::tempdir().unwrap(),
        };
        d.coffer()
            .args(["keygen", "-w", "identity.txt", "--recipients-out", "r.txt"])
            .assert()
            .success();
        d
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }
    fn coffer(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.current_dir(self.tmp.path())
            .env_remove("KUBECONFIG")
            .env("HOME", self.tmp.path())
            .env_remove("COFFER_CONTROLLER_URL");
        c
    }
    fn seal(&self, input: &str) -> String {
        let out = self
            .coffer()
            .args(["seal", "-r", "r.txt"])
            .write_stdin(input)
            .assert()
            .success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    }
}

fn no_plaintext() -> impl Predicate<str> {
    predicate::str::contains("cli-plaintext").not()
}

#[test]
fn seal_reads_stdin_and_writes_a_sealed_secret_that_recover_opens() {
    let d = Dir::new();
    let sealed = d.seal(SECRET);
    assert!(sealed.starts_with("apiVersion: coffer.dev/v1alpha1\nkind: SealedSecret\n"));
    assert!(!sealed.contains("cli-plaintext"));
    d.write("sealed.yaml", &sealed);
    d.coffer()
        .args(["recover", "-i", "identity.txt", "sealed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("kind: Secret"))
        .stdout(predicate::str::contains("password: Y2xpLXBsYWludGV4dC0x"));
}

#[test]
fn seal_handles_several_documents_json_and_lists_in_order() {
    let d = Dir::new();
    let two = format!("{SECRET}---\n{}", SECRET.replace("name: db", "name: db2"));
    let out = d.seal(&two);
    assert_eq!(out.matches("kind: SealedSecret").count(), 2);
    assert!(out.find("name: db\n").unwrap() < out.find("name: db2").unwrap());

    let json = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","namespace":"n"},"data":{"k":"djE="}}]}"#;
    let out = d
        .coffer()
        .args(["seal", "-r", "r.txt", "-o", "json"])
        .write_stdin(json)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["kind"], "SealedSecret");
    assert_eq!(v["metadata"]["name"], "a");
}

#[test]
fn seal_writes_the_output_file_atomically_and_leaves_no_temp_files() {
    let d = Dir::new();
    d.write("secret.yaml", SECRET);
    d.coffer()
        .args(["seal", "-r", "r.txt", "secret.yaml", "-w", "out.yaml"])
        .assert()
        .success()
        .stdout("");
    assert!(d.read("out.yaml").contains("kind: SealedSecret"));
    let leftovers: Vec<_> = std::fs::read_dir(d.tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".coffer-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn malformed_yaml_is_one_clear_error_naming_the_file() {
    let d = Dir::new();
    d.write("bad.yaml", "apiVersion: v1\nkind: Secret\nmetadata: [unclosed\nstringData: {password: cli-plaintext-2}\n");
    d.coffer()
        .args(["seal", "-r", "r.txt", "bad.yaml"])
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(
            "error: bad.yaml: input is not valid YAML",
        ))
        .stderr(no_plaintext())
        .stdout("");
}

#[test]
fn a_secret_with_no_data_is_refused() {
    let d = Dir::new();
    d.coffer()
        .args(["seal", "-r", "r.txt"])
        .write_stdin("apiVersion: v1\nkind: Secret\nmetadata: {name: empty, namespace: shop}\n")
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "<stdin>: document 1 (empty): the Secret has no data or stringData; there is nothing to seal",
        ));
}

#[test]
fn conflicting_namespaces_are_refused_with_a_hint() {
    let d = Dir::new();
    d.coffer()
        .args(["seal", "-r", "r.txt", "-n", "dev"])
        .write_stdin(SECRET)
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "document 1: the Secret says namespace \"shop\" but \"dev\" was asked for",
        ))
        .stderr(predicate::str::contains("hint: drop -n"))
        .stderr(no_plaintext());
}

#[test]
fn a_secret_without_any_namespace_falls_back_to_default_and_says_so_once() {
    let d = Dir::new();
    let bare = SECRET.replace("  namespace: shop\n", "");
    let out = d
        .coffer()
        .args(["seal", "-r", "r.txt"])
        .write_stdin(format!(
            "{bare}---\n{}",
            bare.replace("name: db", "name: db2")
        ))
        .assert()
        .success()
        .stderr(predicate::str::contains("using namespace \"default\"").count(1))
        .stderr(no_plaintext());
    let sealed = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(sealed.matches("namespace: default").count(), 2, "{sealed}");
    // The manifest's namespace is used as before, with no note.
    d.coffer()
        .args(["seal", "-r", "r.txt"])
        .write_stdin(SECRET)
        .assert()
        .success()
        .stderr("");
}

#[test]
fn the_context_namespace_comes_before_the_default() {
    let d = Dir::new();
    let kc = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: x, cluster: {{server: 'https://127.0.0.1:1'}}}}]\nusers: [{{name: x, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: x, user: x{ns}}}}}]\ncurrent-context: x\n"
        )
    };
    d.write("with-ns", &kc(", namespace: team"));
    d.write("without-ns", &kc(""));
    let bare = SECRET.replace("  namespace: shop\n", "");
    let out = d
        .coffer()
        .args(["--kubeconfig", "with-ns", "seal", "-r", "r.txt"])
        .write_stdin(bare.clone())
        .assert()
        .success()
        .stderr("");
    let sealed = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(sealed.contains("namespace: team"), "{sealed}");
    let out = d
        .coffer()
        .args(["--kubeconfig", "without-ns", "seal", "-r", "r.txt"])
        .write_stdin(bare)
        .assert()
        .success()
        .stderr(predicate::str::contains("using namespace \"default\""));
    let sealed = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(sealed.contains("namespace: default"), "{sealed}");
}

#[test]
fn a_missing_recipients_file_is_an_input_error() {
    let d = Dir::new();
    d.coffer()
        .args(["seal", "-r", "nope.txt"])
        .write_stdin(SECRET)
        .assert()
        .code(3)
        .stderr("error: nope.txt: cannot open: no such file\n");
}

#[test]
fn recipients_can_be_given_literally_or_on_stdin() {
    let d = Dir::new();
    let key = d
        .read("r.txt")
        .lines()
        .find(|l| l.starts_with("age1"))
        .unwrap()
        .to_string();
    d.write("secret.yaml", SECRET);
    // -r age1…: the recipient itself.
    let out = d
        .coffer()
        .args(["seal", "-r", &key, "secret.yaml"])
        .assert()
        .success()
        .stderr("");
    d.write(
        "a.yaml",
        &String::from_utf8(out.get_output().stdout.clone()).unwrap(),
    );
    // -r -: the recipients file on stdin, the manifest from a file.
    let out = d
        .coffer()
        .args(["seal", "-r", "-", "secret.yaml"])
        .write_stdin(d.read("r.txt"))
        .assert()
        .success();
    d.write(
        "b.yaml",
        &String::from_utf8(out.get_output().stdout.clone()).unwrap(),
    );
    for f in ["a.yaml", "b.yaml"] {
        d.coffer()
            .args(["recover", "-i", "identity.txt", f])
            .assert()
            .success()
            // base64 of cli-plaintext-1
            .stdout(predicate::str::contains("password: Y2xpLXBsYWludGV4dC0x"));
    }
    // Not both on stdin.
    d.coffer()
        .args(["seal", "-r", "-"])
        .write_stdin(SECRET)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: -r - reads recipients from stdin, but the Secret manifest is read from stdin too",
        ));
    // A literal that is not a recipient is an input error, not a missing file.
    d.coffer()
        .args(["seal", "-r", "age1notakey", "secret.yaml"])
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(
            "error: -r age1notakey: line 1:",
        ))
        .stderr(predicate::str::contains("no such file").not());
}

#[test]
fn recipients_urls_must_be_https_and_reachable() {
    let d = Dir::new();
    d.coffer()
        .args(["seal", "-r", "http://127.0.0.1:1/r.txt"])
        .write_stdin(SECRET)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: -r http://127.0.0.1:1/r.txt: recipients are fetched over https only",
        ))
        .stdout("");
    d.coffer()
        .args(["seal", "-r", "https://127.0.0.1:1/r.txt"])
        .write_stdin(SECRET)
        .assert()
        .code(4)
        .stderr(predicate::str::starts_with(
            "error: cannot fetch https://127.0.0.1:1/r.txt:",
        ))
        .stderr(predicate::str::contains("no such file").not())
        .stderr(no_plaintext())
        .stdout("");
}

#[test]
fn a_non_string_value_is_refused_without_echoing_it() {
    let d = Dir::new();
    d.coffer()
        .args(["seal", "-r", "r.txt"])
        .write_stdin("kind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {port: 5432}\n")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("quote it"))
        // Issue 27: it was "not valid YAML", without the item.
        .stderr(predicate::str::contains(
            "<stdin>: document 1: stringData item \"port\" is a number, not a string",
        ))
        .stderr(predicate::str::contains("valid YAML").not())
        .stderr(predicate::str::contains("5432").not());
}

#[test]
fn sealing_to_two_recipients_files_opens_with_either_key() {
    let d = Dir::new();
    d.coffer()
        .args(["keygen", "-w", "id2.txt", "--recipients-out", "r2.txt"])
        .assert()
        .success();
    let out = d
        .coffer()
        .args(["seal", "-r", "r.txt", "-r", "r2.txt"])
        .write_stdin(SECRET)
        .assert()
        .success();
    d.write(
        "sealed.yaml",
        &String::from_utf8(out.get_output().stdout.clone()).unwrap(),
    );
    for id in ["identity.txt", "id2.txt"] {
        d.coffer()
            .args(["recover", "-i", id, "sealed.yaml"])
            .assert()
            .success();
    }
    d.coffer()
        .args(["inspect", "sealed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("         2  "));
}

#[test]
fn merge_into_changes_only_the_given_item() {
    let d = Dir::new();
    d.write("sealed.yaml", &d.seal(SECRET));
    let before = d.read("sealed.yaml");
    let update = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: cli-plaintext-3}\n";
    d.coffer()
        .args(["seal", "-r", "r.txt", "--merge-into", "sealed.yaml"])
        .write_stdin(update)
        .assert()
        .success();
    let after = d.read("sealed.yaml");
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(before.lines().count(), after.lines().count());
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].0.trim_start().starts_with("password: "));
    let user = |t: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with("username:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(user(&before), user(&after));
}

#[test]
fn merge_into_a_file_of_another_secret_is_refused_and_leaves_it_untouched() {
    let d = Dir::new();
    d.write("sealed.yaml", &d.seal(SECRET));
    let before = d.read("sealed.yaml");
    d.coffer()
        .args(["seal", "-r", "r.txt", "--merge-into", "sealed.yaml"])
        .write_stdin(SECRET.replace("name: db", "name: other"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "holds SealedSecret shop/db, but the Secret is shop/other",
        ));
    assert_eq!(before, d.read("sealed.yaml"));
}

/// Issue 27, point 9: merging `--scope namespace` items into a strict
/// file made a SealedSecret of two scopes, which `inspect` calls a problem
/// (and the controller unseals). A scope that differs from the values kept
/// is refused; without `--scope`, the file's scope is used.
#[test]
fn merge_into_never_mixes_scopes() {
    let d = Dir::new();
    d.write("strict.yaml", &d.seal(SECRET));
    let before = d.read("strict.yaml");
    let update = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: cli-plaintext-3}\n";
    d.coffer()
        .args(["seal", "-r", "r.txt", "--scope", "namespace", "--merge-into", "strict.yaml"])
        .write_stdin(update)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: strict.yaml: the values it keeps (username with scope strict) would stay as they are, \
             but --scope seals the given items with scope namespace",
        ))
        .stderr(predicate::str::contains("hint: drop --scope"))
        .stderr(no_plaintext());
    assert_eq!(before, d.read("strict.yaml"), "untouched");
    // Every item given: they are all re-sealed with the new scope.
    let all = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: cli-plaintext-3, username: admin}\n";
    d.coffer()
        .args([
            "seal",
            "-r",
            "r.txt",
            "--scope",
            "namespace",
            "--merge-into",
            "strict.yaml",
        ])
        .write_stdin(all)
        .assert()
        .success();
    d.coffer()
        .args(["inspect", "strict.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("scope: namespace"));
    // Without --scope into a namespace-wide file: the file's scope.
    d.coffer()
        .args(["seal", "-r", "r.txt", "--merge-into", "strict.yaml"])
        .write_stdin(update)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "note: strict.yaml: its other values are sealed with scope namespace; sealing the given items with scope namespace too",
        ));
    d.coffer()
        .args(["inspect", "strict.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("scope: namespace"))
        .stdout(predicate::str::contains("mixed").not());
    // A file whose values already mix scopes is refused, naming them.
    let mut mixed: serde_json::Value = serde_saphyr::from_str(&d.read("strict.yaml")).unwrap();
    let strict: serde_json::Value = serde_saphyr::from_str(&d.seal(SECRET)).unwrap();
    mixed["spec"]["encryptedData"]["username"] =
        strict["spec"]["encryptedData"]["username"].clone();
    mixed["spec"]["encryptedData"]["other"] = mixed["spec"]["encryptedData"]["password"].clone();
    d.write("mixed.json", &mixed.to_string());
    d.coffer()
        .args(["seal", "-r", "r.txt", "--merge-into", "mixed.json"])
        .write_stdin(update)
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "error: mixed.json: its values already mix scopes (other with scope namespace; username with scope strict)",
        ));
}

#[test]
fn raw_seals_one_value_to_bare_base64() {
    let d = Dir::new();
    let out = d
        .coffer()
        .args([
            "seal", "--raw", "-r", "r.txt", "-n", "shop", "--name", "db", "--key", "password",
        ])
        .write_stdin("cli-plaintext-4")
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.trim().starts_with("YWdlLWVuY3J5cHRpb24ub3JnL3Yx"));
    assert_eq!(text.trim().lines().count(), 1);
    d.coffer()
        .args([
            "seal", "--raw", "-r", "r.txt", "-n", "shop", "--key", "password",
        ])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--scope strict needs --name"));
}

#[test]
fn raw_warns_about_a_trailing_newline_from_stdin_and_keeps_it() {
    let d = Dir::new();
    let raw = [
        "seal", "--raw", "-r", "r.txt", "-n", "shop", "--name", "db", "--key", "pw",
    ];
    d.coffer()
        .args(raw)
        .write_stdin("cli-plaintext-7\n")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: the value read from stdin ends with a newline",
        ))
        .stderr(predicate::str::contains("printf"))
        .stderr(predicate::str::contains("echo -n"))
        .stderr(no_plaintext());
    d.coffer()
        .args(raw)
        .write_stdin("cli-plaintext-7")
        .assert()
        .success()
        .stderr("");
}

#[test]
fn raw_refuses_an_empty_stdin() {
    let d = Dir::new();
    d.coffer()
        .args([
            "seal", "--raw", "-r", "r.txt", "-n", "shop", "--name", "db", "--key", "pw",
        ])
        .write_stdin("")
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(
            "error: <stdin>: no value to seal: --raw reads the value from stdin and got nothing",
        ))
        .stderr(predicate::str::contains("--from-file"))
        .stdout("");
}

#[test]
fn inspect_shows_scope_items_key_ids_and_buckets_offline() {
    let d = Dir::new();
    d.write("sealed.yaml", &d.seal(SECRET));
    let id = d
        .read("r.txt")
        .lines()
        .find_map(|l| l.strip_prefix("# coffer: key="))
        .unwrap()[..16]
        .to_string();
    d.coffer()
        .args(["inspect", "sealed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "sealed.yaml: document 1: SealedSecret shop/db",
        ))
        .stdout(predicate::str::contains("scope: strict"))
        .stdout(predicate::str::contains(format!(
            "password  <= 256 B                   1  no      {id}"
        )));
}

/// `-w` into a directory that does not exist yet makes it (the README's
/// `coffer recipients -w clusters/prod.txt` in a fresh repository).
#[test]
fn writing_into_a_new_directory_makes_it() {
    let d = Dir::new();
    d.coffer()
        .args([
            "keygen",
            "-w",
            "keys/admin/id.txt",
            "--recipients-out",
            "clusters/prod.txt",
        ])
        .assert()
        .success();
    assert!(d.read("clusters/prod.txt").contains("age1"));
    d.coffer()
        .args([
            "seal",
            "-r",
            "clusters/prod.txt",
            "-w",
            "k8s/shop/db.sealed.yaml",
        ])
        .write_stdin(SECRET)
        .assert()
        .success()
        .stdout(no_plaintext());
    assert!(
        d.read("k8s/shop/db.sealed.yaml")
            .contains("kind: SealedSecret")
    );
    // A file in the way of a directory is one clear error.
    d.write("file", "x");
    d.coffer()
        .args(["seal", "-r", "r.txt", "-w", "file/x.yaml"])
        .write_stdin(SECRET)
        .assert()
        .failure()
        .stderr(predicate::str::contains("file/x.yaml: cannot create"));
}

/// A bitnami file given to inspect (or verify, recover) points at
/// `coffer convert` instead of saying that nothing was found.
#[test]
fn inspecting_a_bitnami_file_points_at_convert() {
    let d = Dir::new();
    d.write(
        "b.yaml",
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: shop}\nspec:\n  encryptedData: {password: AgB=}\n",
    );
    for cmd in [
        &["inspect", "b.yaml"][..],
        &["recover", "--identity", "identity.txt", "b.yaml"],
    ] {
        d.coffer()
            .args(cmd)
            .assert()
            .failure()
            .stderr(predicate::str::contains("1 bitnami.com one(s)"))
            .stderr(predicate::str::contains("coffer convert"));
    }
    d.write(
        "c.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    d.coffer()
        .args(["inspect", "c.yaml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no SealedSecret found"));
}

/// A template that names no item is found offline, without a key, before
/// the controller would report TemplateFailed.
#[test]
fn inspect_flags_a_template_that_names_no_item() {
    let d = Dir::new();
    let mut doc: serde_json::Value = serde_saphyr::from_str(&d.seal(SECRET)).unwrap();
    doc["spec"]["template"]["data"] = serde_json::json!({"url": "{{ username }}:{{ password }}"});
    d.write("ok.yaml", &serde_json::to_string(&doc).unwrap());
    d.coffer().args(["inspect", "ok.yaml"]).assert().success();
    doc["spec"]["template"]["data"] = serde_json::json!({"url": "{{ usernme }}"});
    d.write("typo.yaml", &serde_json::to_string(&doc).unwrap());
    d.coffer()
        .args(["inspect", "typo.yaml"])
        .assert()
        .code(5)
        .stdout(predicate::str::contains("usernme"));
}

/// A template whose operator chain aborted `coffer inspect` (stack
/// overflow, second security review) is reported as a problem instead.
#[test]
fn inspect_reports_a_hostile_template_chain_instead_of_aborting() {
    let d = Dir::new();
    let mut doc: serde_json::Value = serde_saphyr::from_str(&d.seal(SECRET)).unwrap();
    for (name, chain) in [
        ("plus.yaml", format!("{{{{ 1{} }}}}", " + 1".repeat(10_000))),
        (
            "filter.yaml",
            format!("{{{{ password{} }}}}", "|lower".repeat(10_000)),
        ),
        (
            "not.yaml",
            format!("{{{{ {}password }}}}", "not ".repeat(10_000)),
        ),
    ] {
        doc["spec"]["template"]["data"] = serde_json::json!({ "url": chain });
        d.write(name, &serde_json::to_string(&doc).unwrap());
        d.coffer()
            .args(["inspect", name])
            .assert()
            .code(5)
            .stdout(predicate::str::contains("too complex"));
    }
}

#[test]
fn inspect_flags_values_sealed_to_unknown_keys_and_mixed_scopes() {
    let d = Dir::new();
    let a = d.seal(SECRET);
    let b = String::from_utf8(
        d.coffer()
            .args(["seal", "-r", "r.txt", "--scope", "cluster"])
            .write_stdin(SECRET)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    // Splice one cluster-scoped value into the strict SealedSecret.
    let cluster_user = b
        .lines()
        .find(|l| l.trim_start().starts_with("username:"))
        .unwrap();
    let mixed: String = a
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("username:") {
                cluster_user
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    d.write("mixed.yaml", &mixed);
    d.coffer()
        .args(["inspect", "mixed.yaml"])
        .assert()
        .code(5)
        .stdout(predicate::str::contains(
            "problem: mixed scopes: cluster, strict",
        ));
    d.coffer()
        .args([
            "keygen",
            "-w",
            "other.txt",
            "--recipients-out",
            "other-r.txt",
        ])
        .assert()
        .success();
    d.write("a.yaml", &a);
    d.coffer()
        .args(["inspect", "-r", "other-r.txt", "a.yaml"])
        .assert()
        .code(5)
        .stdout(predicate::str::contains(
            "that no given recipients file holds",
        ));
}

/// Post-quantum keys from `keygen --kind`, sealed in one run with an X25519
/// recipients file: the run warns that such values are only as strong as
/// X25519, each key opens them, and inspect tells the kinds apart.
#[test]
fn post_quantum_and_x25519_recipients_seal_in_one_run() {
    let d = Dir::new();
    d.coffer()
        .args([
            "keygen",
            "--kind",
            "mlkem768x25519",
            "-w",
            "pq.txt",
            "--recipients-out",
            "pq-r.txt",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("(mlkem768x25519)"));
    assert!(d.read("pq.txt").contains("\nAGE-SECRET-KEY-PQ-1"));
    assert!(d.read("pq-r.txt").contains("\nage1pq1"));

    // Post-quantum only: no warning, and inspect says "yes".
    let pq_only = d
        .coffer()
        .args(["seal", "-r", "pq-r.txt"])
        .write_stdin(SECRET)
        .assert()
        .success()
        .stderr(predicate::str::contains("warning").not())
        .get_output()
        .stdout
        .clone();
    d.write("pq.yaml", std::str::from_utf8(&pq_only).unwrap());
    d.coffer()
        .args(["inspect", "pq.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("1  yes"));

    // Mixed: a warning, both keys open it, inspect says "mixed".
    let mixed = d
        .coffer()
        .args(["seal", "-r", "pq-r.txt", "-r", "r.txt"])
        .write_stdin(SECRET)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "not protected against a quantum computer",
        ))
        .get_output()
        .stdout
        .clone();
    d.write("mixed.yaml", std::str::from_utf8(&mixed).unwrap());
    d.coffer()
        .args(["inspect", "-o", "json", "mixed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""post_quantum": false"#))
        .stdout(predicate::str::contains(r#""mlkem768x25519""#));
    d.coffer()
        .args(["inspect", "mixed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2  mixed"));
    for (identity, file) in [
        ("pq.txt", "mixed.yaml"),
        ("identity.txt", "mixed.yaml"),
        ("pq.txt", "pq.yaml"),
    ] {
        d.coffer()
            .args(["recover", "-i", identity, file])
            .assert()
            .success()
            .stdout(predicate::str::contains("password: Y2xpLXBsYWludGV4dC0x"));
    }
    d.coffer()
        .args(["recover", "-i", "identity.txt", "pq.yaml"])
        .assert()
        .code(5)
        .stderr(no_plaintext());
}

/// Disaster recovery with Go age 1.3 in the loop: a key ring backup that
/// Go age encrypted to an admin's post-quantum key (made by Go's
/// `age-keygen -pq`) opens with `coffer recover`, and its post-quantum
/// sealing key opens what Coffer sealed to it.
#[test]
fn recover_opens_post_quantum_values_through_a_backup_go_age_encrypted() {
    let d = Dir::new();
    let go = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(coffer_test_support::go_age_bin(tool))
            .current_dir(d.tmp.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    go("age-keygen", &["-pq", "-o", "admin.txt"]);
    let admin_recipient = go("age-keygen", &["-y", "admin.txt"]);
    d.coffer()
        .args([
            "keygen",
            "--kind",
            "mlkem768x25519",
            "-w",
            "sealing.txt",
            "--recipients-out",
            "sealing-r.txt",
        ])
        .assert()
        .success();
    let sealing = d.read("sealing.txt");
    let secret_line = sealing
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-PQ-1"))
        .unwrap();
    d.write(
        "backup.txt",
        &format!("# Coffer key ring backup\n# coffer: state=usable\n{secret_line}\n"),
    );
    go(
        "age",
        &[
            "-a",
            "-r",
            admin_recipient.trim(),
            "-o",
            "backup.age",
            "backup.txt",
        ],
    );
    let sealed = d
        .coffer()
        .args(["seal", "-r", "sealing-r.txt"])
        .write_stdin(SECRET)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    d.write("sealed.yaml", std::str::from_utf8(&sealed).unwrap());
    d.coffer()
        .args([
            "recover",
            "-i",
            "admin.txt",
            "--backup",
            "backup.age",
            "sealed.yaml",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("password: Y2xpLXBsYWludGV4dC0x"));
}

#[test]
fn recover_refuses_a_tampered_file_and_writes_nothing() {
    let d = Dir::new();
    let sealed = d.seal(SECRET);
    // Flip one base64 character inside the password value's payload.
    let tampered: String = sealed
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("password: ") {
                let mut s = l.to_string();
                let i = s.len() - 10;
                let c = if &s[i..i + 1] == "A" { "B" } else { "A" };
                s.replace_range(i..i + 1, c);
                s
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    d.write("tampered.yaml", &tampered);
    d.coffer()
        .args([
            "recover",
            "-i",
            "identity.txt",
            "tampered.yaml",
            "-w",
            "out.yaml",
        ])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "tampered.yaml: document 1 (shop/db): item \"password\"",
        ))
        .stderr(no_plaintext());
    assert!(!d.path("out.yaml").exists());
}

/// `coffer recover` gives the Secret the controller writes: with
/// `template.data` rendered; a broken template is refused without a value.
#[test]
fn recover_renders_template_data_like_the_controller() {
    let d = Dir::new();
    let sealed = d.seal(SECRET);
    let mut doc: serde_json::Value = serde_saphyr::from_str(&sealed).unwrap();
    doc["spec"]["template"]["data"] =
        serde_json::json!({"url": "pg://{{ username }}:{{ password }}@db"});
    d.write("t.yaml", &serde_json::to_string(&doc).unwrap());
    // base64 of "pg://admin:cli-plaintext-1@db"
    d.coffer()
        .args(["recover", "-i", "identity.txt", "t.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "url: cGc6Ly9hZG1pbjpjbGktcGxhaW50ZXh0LTFAZGI=",
        ));
    doc["spec"]["template"]["data"] = serde_json::json!({"url": "{{ pasword }}"});
    d.write("t.yaml", &serde_json::to_string(&doc).unwrap());
    d.coffer()
        .args(["recover", "-i", "identity.txt", "t.yaml"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("pasword"))
        .stderr(no_plaintext())
        .stdout("");
}

#[test]
fn recover_refuses_a_value_moved_to_another_namespace() {
    let d = Dir::new();
    d.write(
        "moved.yaml",
        &d.seal(SECRET).replace("namespace: shop", "namespace: dev"),
    );
    d.coffer()
        .args(["recover", "-i", "identity.txt", "moved.yaml"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "sealed for shop/db item \"password\", found at dev/db item \"password\"",
        ))
        .stdout("");
}

#[test]
fn recover_with_the_wrong_key_names_the_key_the_value_needs() {
    let d = Dir::new();
    d.write("sealed.yaml", &d.seal(SECRET));
    d.coffer()
        .args(["keygen", "-w", "other.txt"])
        .assert()
        .success();
    d.coffer()
        .args(["recover", "-i", "other.txt", "sealed.yaml"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("which this cluster does not hold"));
}

#[test]
fn keygen_never_overwrites_a_key_and_writes_it_private() {
    let d = Dir::new();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.path("identity.txt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    d.coffer()
        .args(["keygen", "-w", "identity.txt"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "already exists; refusing to overwrite a key",
        ));
}

#[test]
fn completion_version_and_help_with_examples() {
    let d = Dir::new();
    d.coffer()
        .args(["completion", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("coffer"));
    d.coffer()
        .arg("--version")
        .assert()
        .success()
        .stdout(format!(
            "coffer {} (commit {})\n",
            env!("CARGO_PKG_VERSION"),
            coffer_test_support::git_commit()
        ));
    for sub in [
        "seal",
        "recipients",
        "inspect",
        "verify",
        "rotate",
        "recover",
        "keygen",
        "completion",
    ] {
        d.coffer()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
    for sub in ["list", "retire", "backup", "restore"] {
        d.coffer()
            .args(["keys", sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
    d.coffer().arg("frobnicate").assert().code(2);
}

#[test]
fn commands_list_only_the_flags_they_use() {
    let d = Dir::new();
    for sub in ["keygen", "completion", "inspect", "recover"] {
        d.coffer()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("--kubeconfig").not())
            .stdout(predicate::str::contains("--namespace").not())
            .stdout(predicate::str::contains("--controller-url").not())
            .stdout(predicate::str::contains("--controller-namespace").not());
    }
    for sub in ["seal", "recipients", "verify", "rotate"] {
        d.coffer()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("--kubeconfig"))
            .stdout(predicate::str::contains("--controller-url"));
    }
    d.coffer()
        .args(["keys", "list", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--context"));
    // Cluster flags work before and after the command.
    for args in [
        ["--kubeconfig", "missing-kc", "recipients"],
        ["recipients", "--kubeconfig", "missing-kc"],
    ] {
        d.coffer()
            .args(args)
            .assert()
            .code(3)
            .stderr(predicate::str::contains(
                "missing-kc: not a readable kubeconfig",
            ));
    }
}

#[test]
fn dash_o_means_one_thing_per_command() {
    let d = Dir::new();
    d.write("sealed.yaml", &d.seal(SECRET));
    // inspect: a table or JSON, never "yaml" that prints a table.
    d.coffer()
        .args(["inspect", "sealed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("SealedSecret shop/db"));
    d.coffer()
        .args(["inspect", "-o", "table", "sealed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("SealedSecret shop/db"));
    d.coffer()
        .args(["inspect", "-o", "json", "sealed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("["));
    d.coffer()
        .args(["inspect", "-o", "yaml", "sealed.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("possible values: table, json"));
    d.coffer()
        .args(["-o", "yaml", "inspect", "sealed.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("-o table or -o json"));
    d.coffer()
        .args(["inspect", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("[default: table]"));
    // recipients prints the file as it is: -o is refused, not ignored.
    d.coffer()
        .args(["recipients", "-o", "json"])
        .assert()
        .code(2)
        .stdout("");
    d.coffer()
        .args(["-o", "json", "recipients"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "-o applies to seal, inspect and recover only",
        ))
        .stdout("");
    // seal and recover: yaml or json, after or before the command.
    for args in [
        vec!["seal", "-r", "r.txt", "-o", "json"],
        vec!["-o", "json", "seal", "-r", "r.txt"],
    ] {
        d.coffer()
            .args(args)
            .write_stdin(SECRET)
            .assert()
            .success()
            .stdout(predicate::str::starts_with("{"));
    }
    d.coffer()
        .args(["recover", "-i", "identity.txt", "-o", "json", "sealed.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("{"));
}

#[test]
fn commands_that_need_a_cluster_fail_cleanly_without_one() {
    let d = Dir::new();
    let kubeconfig = d.write("kc", "apiVersion: v1\nkind: Config\nclusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\ncurrent-context: x\n");
    d.coffer()
        .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "seal"])
        .write_stdin(SECRET)
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "error: could not reach the cluster",
        ))
        .stderr(predicate::str::contains("--recipients FILE"))
        .stderr(no_plaintext());
    let _ = Path::new(".");
}

#[test]
fn kubeconfig_mistakes_are_input_errors_not_cluster_errors() {
    let d = Dir::new();
    let kubeconfig = d.write("kc", "apiVersion: v1\nkind: Config\nclusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\ncurrent-context: x\n");
    d.coffer()
        .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["recipients", "--context", "nope"])
        .assert()
        .code(3)
        .stderr(predicate::str::starts_with(
            "error: cannot use the kubeconfig:",
        ))
        .stderr(predicate::str::contains("nope"))
        .stderr(predicate::str::contains("hint: check --context"));
    d.coffer()
        .args(["--kubeconfig", "missing-kc", "recipients"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "missing-kc: not a readable kubeconfig",
        ));
    // No kubeconfig at all (HOME is the temp dir, KUBECONFIG unset).
    d.coffer()
        .args(["recipients", "--context", "nope"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no kubeconfig was found"));
    d.coffer()
        .args(["recipients"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no kubeconfig found"));
}

#[test]
fn an_old_recipients_file_gets_a_warning_but_still_seals() {
    let d = Dir::new();
    let text = d.read("r.txt");
    let old: String = text
        .lines()
        .map(|l| match l.find("created=") {
            Some(i) => format!("{}created=2020-01-01T00:00:00Z", &l[..i]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    d.write("old.txt", &old);
    d.coffer()
        .args(["seal", "-r", "old.txt"])
        .write_stdin(SECRET)
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: old.txt: its newest key was created",
        ))
        .stderr(predicate::str::contains("coffer recipients -w FILE"));
    d.coffer()
        .args(["seal", "-r", "r.txt"])
        .write_stdin(SECRET)
        .assert()
        .success()
        .stderr("");
}

#[test]
fn a_short_renewal_period_warns_in_seconds_not_zero_days() {
    let d = Dir::new();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    d.coffer()
        .args(["seal", "-r", "r.txt", "--renewal-period", "1s"])
        .write_stdin(SECRET)
        .assert()
        .success()
        .stderr(predicate::str::is_match(
            r"its newest key was created \d+ seconds ago, longer than the renewal period \(1 second\)",
        ).unwrap())
        .stderr(predicate::str::contains("0 days").not());
}

#[test]
fn bad_base64_in_data_is_refused_without_echoing_it() {
    let d = Dir::new();
    d.coffer()
        .args(["seal", "-r", "r.txt"])
        .write_stdin(
            "kind: Secret\nmetadata: {name: a, namespace: b}\ndata: {pw: cli-plaintext-5!!}\n",
        )
        .assert()
        .code(3)
        .stderr(predicate::str::contains("not valid base64"))
        .stderr(no_plaintext());
}

#[test]
fn bad_base64_names_the_item_and_is_not_called_invalid_yaml() {
    let d = Dir::new();
    d.coffer()
        .args(["seal", "-r", "r.txt"])
        .write_stdin(
            "kind: Secret\nmetadata: {name: a, namespace: b}\ndata: {user: YWRtaW4=, pw: cli-plaintext-5!!}\n",
        )
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "error: <stdin>: document 1: data item \"pw\" is not valid base64 (use stringData for plain text)",
        ))
        .stderr(predicate::str::contains("not valid YAML").not())
        .stderr(no_plaintext());
}

#[test]
fn a_config_map_is_refused_as_a_config_map_not_as_bad_yaml() {
    let d = Dir::new();
    d.coffer()
        .args(["seal", "-r", "r.txt"])
        .write_stdin(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata:\n  mode: cli-plaintext-6 is not base64\n",
        )
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "error: <stdin>: document 1: kind \"ConfigMap\" is not a Secret",
        ))
        .stderr(predicate::str::contains("not valid YAML").not())
        .stderr(predicate::str::contains("base64").not())
        .stderr(no_plaintext())
        .stdout("");
}

#[test]
fn inspect_and_recover_search_directories() {
    let d = Dir::new();
    std::fs::create_dir_all(d.path("k8s/shop")).unwrap();
    d.write("k8s/shop/db.yaml", &d.seal(SECRET));
    d.write("k8s/shop/notes.txt", "not yaml");
    d.write(
        "k8s/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    d.coffer()
        .args(["inspect", "k8s"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "k8s/shop/db.yaml: document 1: SealedSecret shop/db",
        ));
    d.coffer()
        .args(["recover", "-i", "identity.txt", "k8s"])
        .assert()
        .success()
        .stdout(predicate::str::contains("name: db"));
}

/// A repository with `.coffer.yaml`: prod and dr recipients files, base/
/// sealed for both, clusters/dr/ for dr only with scope namespace.
fn repo() -> Dir {
    let d = Dir::new();
    std::fs::create_dir_all(d.path("recipients")).unwrap();
    std::fs::create_dir_all(d.path("base")).unwrap();
    std::fs::create_dir_all(d.path("clusters/dr")).unwrap();
    std::fs::create_dir_all(d.path(".git")).unwrap();
    std::fs::rename(d.path("r.txt"), d.path("recipients/prod.txt")).unwrap();
    d.coffer()
        .args([
            "keygen",
            "-w",
            "dr-identity.txt",
            "--recipients-out",
            "recipients/dr.txt",
        ])
        .assert()
        .success();
    d.write(
        ".coffer.yaml",
        "rules:\n  - path: \"clusters/dr/**\"\n    recipients: [recipients/dr.txt]\n    scope: namespace\n  - path: \"base/**\"\n    recipients: [recipients/prod.txt, recipients/dr.txt]\n",
    );
    // Writable only by its owner whatever the umask: rules writable by
    // the group are refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        d.path(".coffer.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    d.write("secret.yaml", SECRET);
    // As a real repository keeps them: private keys never committed.
    d.write(".gitignore", "identity.txt\ndr-identity.txt\n");
    d
}

fn key_id(d: &Dir, recipients: &str) -> String {
    d.read(recipients)
        .lines()
        .find_map(|l| l.strip_prefix("# coffer: key="))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn seal_takes_recipients_and_scope_from_the_rule_of_the_file_it_writes() {
    let d = repo();
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "clusters/dr/db.yaml"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "recipients recipients/dr.txt, scope namespace from rule \"clusters/dr/**\"",
        ))
        .stderr(no_plaintext());
    // dr's key opens it; prod's does not.
    d.coffer()
        .args(["recover", "-i", "dr-identity.txt", "clusters/dr/db.yaml"])
        .assert()
        .success()
        // base64 of cli-plaintext-1
        .stdout(predicate::str::contains("Y2xpLXBsYWludGV4dC0x"));
    d.coffer()
        .args(["recover", "-i", "identity.txt", "clusters/dr/db.yaml"])
        .assert()
        .failure();
    d.coffer()
        .args(["inspect", "clusters/dr/db.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("scope: namespace"));
    // base/ is sealed once for both clusters.
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "base/db.yaml"])
        .assert()
        .success();
    for identity in ["identity.txt", "dr-identity.txt"] {
        d.coffer()
            .args(["recover", "-i", identity, "base/db.yaml"])
            .assert()
            .success();
    }
    // -r and --scope win over the rule.
    d.coffer()
        .args([
            "seal",
            "secret.yaml",
            "-r",
            "recipients/prod.txt",
            "--scope",
            "strict",
            "-w",
            "clusters/dr/other.yaml",
        ])
        .assert()
        .success()
        // Issue 27: the override was silent.
        .stderr(predicate::str::contains(
            "note: clusters/dr/other.yaml: -r overrides rule \"clusters/dr/**\" of ",
        ))
        .stderr(predicate::str::contains(
            "(recipients recipients/dr.txt, scope namespace): sealing to the -r recipients, \
             scope strict (--scope, not the rule's namespace)",
        ));
    d.coffer()
        .args(["inspect", "clusters/dr/other.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("scope: strict"));
}

/// Issue 27, point 5: `seal` said nothing when no rule matched the file
/// written (sealing to the kube context's cluster), and sealed strict
/// while its note named the rule's scope when `--scope` said otherwise.
#[test]
fn seal_says_when_no_rule_matches_and_refuses_a_scope_the_rule_contradicts() {
    let d = repo();
    std::fs::create_dir_all(d.path("elsewhere")).unwrap();
    d.write(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\ncontexts:\n- name: prod\n  context: {cluster: prod, user: u}\n\
         clusters:\n- name: prod\n  cluster: {server: \"https://127.0.0.1:1\"}\nusers:\n- name: u\n  user: {token: t}\n",
    );
    // No rule matches: said, with the cluster whose recipients are fetched
    // (unreachable here, so the command then fails as before).
    d.coffer()
        .args(["--kubeconfig", "kubeconfig", "seal", "secret.yaml", "-w", "elsewhere/db.yaml"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "note: elsewhere/db.yaml: no rule of ",
        ))
        .stderr(predicate::str::contains(
            "matches it; sealing to the recipients published by the cluster of kubeconfig context \"prod\"",
        ));
    // With -r, no rule to override and nothing to say.
    d.coffer()
        .args([
            "seal",
            "secret.yaml",
            "-r",
            "recipients/prod.txt",
            "-w",
            "elsewhere/db.yaml",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("rule").not());
    // --scope contradicting the rule's scope: refused, nothing written.
    d.coffer()
        .args([
            "seal",
            "secret.yaml",
            "--scope",
            "strict",
            "-w",
            "clusters/dr/db.yaml",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: clusters/dr/db.yaml: --scope strict contradicts rule \"clusters/dr/**\" of ",
        ))
        .stderr(predicate::str::contains("which says scope namespace"))
        .stderr(predicate::str::contains("hint: drop --scope"));
    assert!(!d.path("clusters/dr/db.yaml").exists());
    // Agreeing with it: sealed, and the note says where the scope came from.
    d.coffer()
        .args(["seal", "secret.yaml", "--scope", "namespace", "-w", "clusters/dr/db.yaml"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "recipients recipients/dr.txt, scope namespace (--scope), agreeing with rule \"clusters/dr/**\"",
        ));
    // A rule without a scope: any --scope, and the note says which.
    d.coffer()
        .args([
            "seal",
            "secret.yaml",
            "--scope",
            "cluster",
            "-w",
            "base/db.yaml",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "scope cluster (--scope), agreeing with rule \"base/**\"",
        ));
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "base/db2.yaml"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "scope strict (the rule names none), from rule \"base/**\"",
        ));
    // What was written follows the rules.
    d.coffer()
        .args(["check", "clusters", "base", "elsewhere"])
        .assert()
        .success();
}

#[test]
fn check_passes_a_clean_repository_and_names_every_problem_with_its_fix() {
    let d = repo();
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "clusters/dr/db.yaml"])
        .assert()
        .success();
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "base/db.yaml"])
        .assert()
        .success();
    std::fs::remove_file(d.path("secret.yaml")).unwrap();
    d.coffer()
        .args(["check"])
        .assert()
        .success()
        .stderr(predicate::str::contains("2 SealedSecret(s), 0 problem(s)"));

    // A plain Secret committed by mistake: named, never quoted.
    d.write("base/leak.yaml", SECRET);
    // Sealed for prod only where the rule asks for prod and dr (what a
    // rotation or a new cluster leaves behind).
    d.coffer()
        .args([
            "seal",
            "-r",
            "recipients/prod.txt",
            "-w",
            "base/stale.yaml",
            "base/leak.yaml",
        ])
        .assert()
        .success();
    // Strict where the rule asks for namespace (seal refuses a --scope
    // that contradicts the rule unless -r takes the rule's place).
    d.coffer()
        .args([
            "seal",
            "base/leak.yaml",
            "-r",
            "recipients/dr.txt",
            "--scope",
            "strict",
            "-w",
            "clusters/dr/strict.yaml",
        ])
        .assert()
        .success();
    // A value cut short.
    let sealed = d.read("base/db.yaml");
    let cut: String = sealed
        .lines()
        .map(|l| match l.split_once("password: ") {
            Some((head, v)) => format!("{head}password: {}\n", &v[..v.len() / 2]),
            None => format!("{l}\n"),
        })
        .collect();
    d.write("base/cut.yaml", &cut);
    d.write("base/broken.yaml", "kind: SealedSecret\nspec: [\n");
    // A template that is not YAML and speaks of no Secret: skipped.
    d.write(
        "base/deployment.yaml",
        "replicas: {{ .Values.replicas }}\n  bad: [\n",
    );
    let dr = key_id(&d, "recipients/dr.txt");
    let out = d
        .coffer()
        .args(["check"])
        .assert()
        .code(5)
        .stdout(no_plaintext())
        .stderr(no_plaintext());
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |file: &str, what: &str| {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(file) && l.contains(what) && l.contains("; fix: ")),
            "no line for {file} saying {what:?} in\n{stdout}"
        );
    };
    has(
        "./base/leak.yaml: document 1 (Secret shop/db)",
        "a plain Secret with values is committed",
    );
    has(
        "./base/stale.yaml: document 1 (SealedSecret shop/db)",
        &format!("item \"password\" is not sealed to key {dr} of recipients/dr.txt"),
    );
    has(
        "./clusters/dr/strict.yaml",
        "item \"password\" is sealed with scope strict, but rule \"clusters/dr/**\"",
    );
    has("./base/cut.yaml", "item \"password\" is not a sealed value");
    has(
        "./base/broken.yaml",
        "mentions a Secret but cannot be parsed",
    );
    assert!(
        !stdout.contains("deployment.yaml"),
        "a template without Secrets is no problem:\n{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.get_output().stderr).contains("1 file(s) not YAML or JSON"),
        "the skipped template is counted"
    );
    // One line per problem: stale has two items, strict two, cut one.
    assert_eq!(lines.len(), 1 + 2 + 2 + 1 + 1, "{stdout}");
    // Checking only the clean files passes.
    d.coffer()
        .args(["check", "base/db.yaml", "clusters/dr/db.yaml"])
        .assert()
        .success();
}

#[test]
fn a_bad_rules_file_is_an_input_error() {
    let d = repo();
    d.write(
        ".coffer.yaml",
        "rules:\n  - path: \"base/**\"\n    recipient: [x]\n",
    );
    d.write("base/db.yaml", "");
    d.coffer()
        .args(["check"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(".coffer.yaml"))
        .stderr(predicate::str::contains("unknown field"));
}

#[test]
fn the_example_repository_passes_coffer_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gitops");
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["check", "--exclude", "example-keys"])
        .current_dir(&example)
        .assert()
        .success()
        .stderr(predicate::str::contains("3 SealedSecret(s), 0 problem(s)"));
    // Its published example keys are private keys all the same: flagged.
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("check")
        .current_dir(&example)
        .assert()
        .code(5);
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("holds an age identity"))
            .count(),
        2,
        "{stdout}"
    );
}

#[test]
fn rules_are_taken_only_from_the_users_own_repository() {
    use std::os::unix::fs::PermissionsExt;
    let d = repo();
    // Writable by every user: refused, whatever it says.
    let rules = d.path(".coffer.yaml");
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o666)).unwrap();
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "base/db.yaml"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("writable by every user"));
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Outside a git repository, no rules: seal needs -r (here it would ask
    // the cluster, and there is none).
    std::fs::remove_dir_all(d.path(".git")).unwrap();
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "base/db.yaml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("rule").not());
    assert!(!d.path("base/db.yaml").exists());
}

/// Whether the tests run as root, which cases needing a file of another
/// user (chown) require; otherwise says so where it is seen (not captured).
fn root_or_say_why_not(test: &str) -> bool {
    use std::io::Write;
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&out.stdout).trim() == "0" {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: it needs root to give a file to another user, and `id -u` is not 0"
    );
    false
}

/// A user other than the one running the tests.
const OTHER_UID: u32 = 4242;

/// Another tree, outside the repository, with a git directory, a
/// `.coffer.yaml` sending everything to its own recipients file, and that
/// key (evil-identity.txt, evil.txt).
fn planted(d: &Dir) -> tempfile::TempDir {
    let e = tempfile::tempdir().unwrap();
    std::fs::create_dir(e.path().join(".git")).unwrap();
    d.coffer()
        .arg("keygen")
        .arg("-w")
        .arg(e.path().join("evil-identity.txt"))
        .arg("--recipients-out")
        .arg(e.path().join("evil.txt"))
        .assert()
        .success();
    std::fs::write(
        e.path().join(".coffer.yaml"),
        "rules:\n  - path: \"**\"\n    recipients: [evil.txt]\n",
    )
    .unwrap();
    e
}

#[test]
fn rules_beyond_a_directory_symlink_leading_out_of_the_repository_are_refused() {
    let d = repo();
    let elsewhere = planted(&d);
    std::fs::create_dir(d.path("s")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), d.path("s/linked")).unwrap();
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "s/linked/x.yaml"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "s/linked/.coffer.yaml: reached through the symlink ",
        ))
        .stderr(predicate::str::contains(
            "s/linked, which leads out of the repository",
        ))
        .stderr(no_plaintext());
    assert!(!elsewhere.path().join("x.yaml").exists());
    // The user may still write there with recipients of their choosing.
    d.coffer()
        .args([
            "seal",
            "secret.yaml",
            "-r",
            "recipients/prod.txt",
            "-w",
            "s/linked/x.yaml",
        ])
        .assert()
        .success();
    d.coffer()
        .arg("recover")
        .arg("-i")
        .arg(elsewhere.path().join("evil-identity.txt"))
        .arg("s/linked/x.yaml")
        .assert()
        .code(5);
}

#[test]
fn rule_recipients_outside_the_repository_are_refused() {
    let d = repo();
    let outside = planted(&d);
    let evil = outside.path().join("evil.txt");
    let dotdot = format!(
        "../{}/evil.txt",
        outside.path().file_name().unwrap().to_string_lossy()
    );
    std::os::unix::fs::symlink(&evil, d.path("recipients/linked.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), d.path("recipients/ext")).unwrap();
    d.coffer()
        .args([
            "seal",
            "secret.yaml",
            "-r",
            "recipients/prod.txt",
            "-w",
            "base/checked.yaml",
        ])
        .assert()
        .success();
    for (recipients, says) in [
        (
            evil.display().to_string(),
            "is an absolute path".to_string(),
        ),
        (dotdot.clone(), "leads out of the repository".to_string()),
        (
            "recipients/linked.txt".to_string(),
            "recipients/linked.txt: reached through the symlink ".to_string(),
        ),
        (
            "recipients/ext/evil.txt".to_string(),
            "recipients/ext, which leads out of the repository".to_string(),
        ),
    ] {
        d.write(
            ".coffer.yaml",
            &format!("rules:\n  - path: \"base/**\"\n    recipients: [\"{recipients}\"]\n"),
        );
        d.coffer()
            .args(["seal", "secret.yaml", "-w", "base/db.yaml"])
            .assert()
            .code(3)
            .stderr(predicate::str::contains(says.as_str()))
            .stderr(predicate::str::contains("-r"));
        assert!(!d.path("base/db.yaml").exists(), "{recipients}");
        // coffer check takes nothing from such a rule either.
        d.coffer()
            .args(["check", "base/checked.yaml"])
            .assert()
            .code(3)
            .stderr(predicate::str::contains(says.as_str()));
    }
}

#[test]
fn group_or_world_writable_rules_and_recipients_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = repo();
    let mode = |f: &str, m: u32| {
        std::fs::set_permissions(d.path(f), std::fs::Permissions::from_mode(m)).unwrap()
    };
    for (file, m, says) in [
        (".coffer.yaml", 0o664, ".coffer.yaml: writable by its group"),
        (
            "recipients/dr.txt",
            0o646,
            "recipients/dr.txt: writable by every user; refusing to seal to the keys in it (rule 1 (\"clusters/dr/**\")",
        ),
        (
            "recipients/dr.txt",
            0o664,
            "recipients/dr.txt: writable by its group",
        ),
    ] {
        mode(file, m);
        d.coffer()
            .args(["seal", "secret.yaml", "-w", "clusters/dr/db.yaml"])
            .assert()
            .code(3)
            .stderr(predicate::str::contains(says))
            .stderr(predicate::str::contains("chmod go-w"));
        assert!(!d.path("clusters/dr/db.yaml").exists());
        mode(file, 0o644);
    }
    // Put right, the rule applies again.
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "clusters/dr/db.yaml"])
        .assert()
        .success();
}

#[test]
fn rules_and_recipients_files_of_another_user_are_refused() {
    if !root_or_say_why_not("rules_and_recipients_files_of_another_user_are_refused") {
        return;
    }
    let d = repo();
    let chown = |p: &Path| std::os::unix::fs::chown(p, Some(OTHER_UID), None).unwrap();
    let says = format!("owned by uid {OTHER_UID}, not by you (uid 0) or root");
    // The finding as reported: the planted tree, its rules and its
    // directory all belong to the other user, who thus matched the owner
    // of the directory written to.
    let elsewhere = planted(&d);
    chown(elsewhere.path());
    chown(&elsewhere.path().join(".coffer.yaml"));
    chown(&elsewhere.path().join("evil.txt"));
    std::fs::create_dir(d.path("s")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), d.path("s/linked")).unwrap();
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "s/linked/x.yaml"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "which leads out of the repository",
        ));
    // A directory of the repository that another user owns, with rules of
    // theirs in it.
    std::fs::create_dir(d.path("team")).unwrap();
    d.write(
        "team/.coffer.yaml",
        "rules:\n  - path: \"**\"\n    recipients: [../recipients/dr.txt]\n",
    );
    chown(&d.path("team"));
    chown(&d.path("team/.coffer.yaml"));
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "team/x.yaml"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(format!(
            "team/.coffer.yaml: {says}; refusing to take recipients from it"
        )));
    // A recipients file another user owns.
    chown(&d.path("recipients/dr.txt"));
    d.coffer()
        .args(["seal", "secret.yaml", "-w", "clusters/dr/db.yaml"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(format!(
            "recipients/dr.txt: {says}; refusing to seal to the keys in it"
        )));
    assert!(!d.path("team/x.yaml").exists() && !d.path("clusters/dr/db.yaml").exists());
}

/// The lines of `coffer check`'s findings, asserting the exit status and
/// that no plaintext is shown.
fn check_lines(d: &Dir, args: &[&str]) -> Vec<String> {
    let out = d
        .coffer()
        .arg("check")
        .args(args)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(5)
        .stdout(no_plaintext())
        .stderr(no_plaintext());
    String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn has_line(lines: &[String], start: &str, what: &str) {
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(start) && l.contains(what) && l.contains("; fix: ")),
        "no line for {start} saying {what:?} in\n{}",
        lines.join("\n")
    );
}

const LEAK: &str = "a plain Secret with values is committed";

#[test]
fn check_finds_plain_secrets_inside_lists_of_any_kind() {
    let d = repo();
    // As the API server lists them: the items of a SecretList name neither
    // kind nor apiVersion.
    d.write(
        "base/secretlist.yaml",
        "apiVersion: v1\nkind: SecretList\nitems:\n  - metadata: {name: db, namespace: shop}\n    stringData: {password: cli-plaintext-list-1}\n",
    );
    // A Secret without apiVersion in a List, which `coffer seal` takes.
    d.write(
        "base/list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n  - kind: Secret\n    metadata: {name: db2, namespace: shop}\n    stringData: {password: cli-plaintext-list-2}\n",
    );
    // A SecretList in a List, in JSON.
    d.write(
        "base/nested.json",
        r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"SecretList","items":[{"metadata":{"name":"db3","namespace":"shop"},"stringData":{"password":"cli-plaintext-list-3"}}]}]}"#,
    );
    let lines = check_lines(
        &d,
        &["base/secretlist.yaml", "base/list.yaml", "base/nested.json"],
    );
    has_line(
        &lines,
        "base/secretlist.yaml: document 1 (Secret shop/db)",
        LEAK,
    );
    has_line(&lines, "base/list.yaml: document 1 (Secret shop/db2)", LEAK);
    has_line(
        &lines,
        "base/nested.json: document 1 (Secret shop/db3)",
        LEAK,
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    // A Secret without apiVersion is one: seal takes it.
    d.coffer()
        .args(["seal", "-r", "recipients/prod.txt", "base/list.yaml"])
        .assert()
        .success();
}

#[test]
fn check_reads_hidden_files_and_directories_but_not_git() {
    let d = repo();
    std::fs::remove_file(d.path("secret.yaml")).unwrap();
    std::fs::create_dir_all(d.path(".secrets")).unwrap();
    d.write(".leak.yaml", SECRET);
    d.write(".secrets/db.yml", SECRET);
    // git's own files are not the repository's content.
    d.write(".git/leak.yaml", SECRET);
    let lines = check_lines(&d, &[]);
    has_line(&lines, "./.leak.yaml: document 1 (Secret shop/db)", LEAK);
    has_line(
        &lines,
        "./.secrets/db.yml: document 1 (Secret shop/db)",
        LEAK,
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[test]
fn check_follows_symlinks_inside_the_repository_and_reports_those_leaving_it() {
    let d = repo();
    std::fs::remove_file(d.path("secret.yaml")).unwrap();
    let link =
        |target: &Path, name: &str| std::os::unix::fs::symlink(target, d.path(name)).unwrap();
    // A Secret under a name check does not read, linked from one it does.
    std::fs::create_dir_all(d.path("vault")).unwrap();
    d.write("vault/db.txt", SECRET);
    link(Path::new("../vault/db.txt"), "base/db.yaml");
    // A directory linked into the path checked.
    std::fs::create_dir_all(d.path("vendor/app")).unwrap();
    d.write("vendor/app/secret.yaml", SECRET);
    link(Path::new("../vendor/app"), "base/app");
    // A link out of the repository: what it points to is not checked.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yaml"), SECRET).unwrap();
    link(&outside.path().join("secret.yaml"), "base/outside.yaml");
    link(outside.path(), "base/ext");
    // A link out that check would not have read anyway is no problem.
    std::fs::write(outside.path().join("notes.txt"), "notes").unwrap();
    link(&outside.path().join("notes.txt"), "base/notes.txt");
    // Cycles end: a directory linked to its parent, two files to each other.
    link(Path::new(".."), "base/loop");
    link(Path::new("b.yaml"), "base/a.yaml");
    link(Path::new("a.yaml"), "base/b.yaml");
    let lines = check_lines(&d, &["base"]);
    has_line(&lines, "base/db.yaml: document 1 (Secret shop/db)", LEAK);
    has_line(
        &lines,
        "base/app/secret.yaml: document 1 (Secret shop/db)",
        LEAK,
    );
    has_line(
        &lines,
        "base/outside.yaml: a symlink to ",
        "out of the repository",
    );
    has_line(&lines, "base/ext: a symlink to ", "out of the repository");
    has_line(&lines, "base/a.yaml: a symlink that cannot be followed", "");
    has_line(&lines, "base/b.yaml: a symlink that cannot be followed", "");
    assert_eq!(lines.len(), 6, "{lines:?}");
}

#[test]
fn check_matches_extensions_in_any_case() {
    let d = repo();
    std::fs::remove_file(d.path("secret.yaml")).unwrap();
    d.write("base/a.YAML", SECRET);
    d.write("base/b.Yml", SECRET);
    d.write(
        "base/c.JSON",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"shop"},"stringData":{"password":"cli-plaintext-json"}}"#,
    );
    let lines = check_lines(&d, &[]);
    for f in ["./base/a.YAML", "./base/b.Yml", "./base/c.JSON"] {
        has_line(&lines, &format!("{f}: document 1 (Secret shop/db)"), LEAK);
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
}

#[test]
fn check_flags_kustomize_secret_generators_that_hold_plaintext() {
    let d = repo();
    std::fs::remove_file(d.path("secret.yaml")).unwrap();
    d.write("base/db.env", "password=cli-plaintext-env\n");
    d.write("base/tls.key", "cli-plaintext-key\n");
    d.write(
        "base/kustomization.yaml",
        "resources: [db.sealed.yaml]\nsecretGenerator:\n  - name: from-literals\n    literals: [password=cli-plaintext-literal, user=admin]\n  - name: from-env\n    envs: [db.env]\n  - name: from-files\n    files: [tls.key=tls.key, missing.crt]\nconfigMapGenerator:\n  - name: settings\n    literals: [mode=live]\n",
    );
    // kustomize also reads a file named Kustomization.
    d.write(
        "clusters/dr/Kustomization",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nsecretGenerator:\n  - name: token\n    literals: [token=cli-plaintext-token]\n",
    );
    let lines = check_lines(&d, &[]);
    let at = "./base/kustomization.yaml: document 1 (Kustomization ?/?)";
    has_line(
        &lines,
        at,
        "secretGenerator \"from-literals\" has 2 literal value(s) in plaintext",
    );
    has_line(
        &lines,
        at,
        "secretGenerator \"from-env\" reads plaintext from its envs entry \"db.env\"",
    );
    has_line(
        &lines,
        at,
        "secretGenerator \"from-files\" reads plaintext from its files entry \"tls.key\"",
    );
    has_line(
        &lines,
        "./clusters/dr/Kustomization: document 1 (Kustomization ?/?)",
        "secretGenerator \"token\" has 1 literal value(s) in plaintext",
    );
    // A file that is not there holds nothing; a configMapGenerator is no
    // Secret.
    assert_eq!(lines.len(), 4, "{lines:?}");
}

#[test]
fn rotate_refuses_sealed_secrets_inside_a_typed_list_before_any_cluster_call() {
    let d = Dir::new();
    let out = d
        .coffer()
        .args(["seal", "-r", "r.txt", "-o", "json"])
        .write_stdin(SECRET)
        .assert()
        .success();
    let mut item: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let item_fields = item.as_object_mut().unwrap();
    item_fields.remove("kind");
    item_fields.remove("apiVersion");
    let list = serde_json::json!({
        "apiVersion": "coffer.dev/v1alpha1",
        "kind": "SealedSecretList",
        "items": [item],
    });
    d.write("list.json", &list.to_string());
    d.coffer()
        .args(["inspect", "list.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("shop/db"));
    d.coffer()
        .args(["rotate", "list.json"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "list.json: holds SealedSecrets inside a list",
        ));
}

#[test]
fn run_as_the_kubectl_plugin_it_seals_and_its_help_says_kubectl_coffer() {
    let d = Dir::new();
    // What krew installs: a link named kubectl-coffer, which kubectl runs
    // with that path as argv[0] for `kubectl coffer ...`.
    let plugin = d.path("kubectl-coffer");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_coffer"), &plugin).unwrap();
    let run = |args: &[&str]| {
        let mut c = Command::new(&plugin);
        c.current_dir(d.tmp.path())
            .env_remove("KUBECONFIG")
            .env("HOME", d.tmp.path())
            .args(args);
        c
    };
    run(&["--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Usage: kubectl coffer [OPTIONS] <COMMAND>",
        ))
        .stdout(predicate::str::contains(
            "\n  kubectl coffer seal -r recipients.txt",
        ))
        .stdout(predicate::str::contains("\n  coffer ").not());
    run(&["seal", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage: kubectl coffer seal "))
        .stdout(predicate::str::contains(
            "\n  kubectl coffer seal --recipients recipients.txt secret.yaml",
        ))
        .stdout(predicate::str::contains("| kubectl coffer seal --raw"))
        .stdout(predicate::str::contains("\n  coffer ").not())
        .stdout(predicate::str::contains("| coffer ").not());
    run(&["keys", "backup", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Usage: kubectl coffer keys backup ",
        ));
    run(&["frobnicate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Usage: kubectl coffer"));
    let out = run(&["seal", "-r", "r.txt"])
        .write_stdin(SECRET)
        .assert()
        .success();
    let sealed = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(sealed.contains("kind: SealedSecret"), "{sealed}");
    // Under its own name nothing changes.
    d.coffer()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Usage: coffer [OPTIONS] <COMMAND>",
        ));
}

/// `coffer convert --bitnami-keys`: offline, a bitnami file becomes a Coffer
/// file in place, comments and other documents kept byte for byte, each
/// value with its scope; `recover` opens the result to the same values; a
/// key that does not open it leaves the file as it was, and no message
/// quotes a value.
#[test]
fn convert_offline_rewrites_bitnami_files_in_place_keeping_comments_and_scopes() {
    use coffer_core::bitnami::{BitnamiKey, BitnamiScope, seal_like_kubeseal};
    let d = Dir::new();
    let key = BitnamiKey::generate(2048);
    d.write("main.key", &key.to_pem());
    let sealed =
        |scope, value: &[u8]| seal_like_kubeseal(&key.public_der(), value, scope, "shop", "db");
    let bitnami = format!(
        "# the shop's database\n---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  encryptedData:\n    password: {}\n  template:\n    type: kubernetes.io/basic-auth\n    metadata:\n      labels: {{app: shop}}\n---\n# not a SealedSecret\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: shop}}\ndata: {{mode: live}} # kept\n---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\n  namespace: shop\n  annotations:\n    sealedsecrets.bitnami.com/cluster-wide: \"true\"\nspec:\n  encryptedData:\n    token: {}\n",
        sealed(BitnamiScope::Strict, b"cli-plaintext-bitnami-1"),
        sealed(BitnamiScope::ClusterWide, b"cli-plaintext-bitnami-2"),
    );
    d.write("repo.yaml", &bitnami);

    // A key that is not bitnami's: refused, typed, the file untouched.
    let other = BitnamiKey::generate(2048);
    d.write("other.pem", &other.to_pem());
    d.coffer()
        .args([
            "convert",
            "--bitnami-keys",
            "other.pem",
            "-r",
            "r.txt",
            "repo.yaml",
        ])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("NoMatchingKey"))
        .stderr(no_plaintext());
    assert_eq!(d.read("repo.yaml"), bitnami);
    // -r without --bitnami-keys is a usage error.
    d.coffer()
        .args(["convert", "-r", "r.txt", "repo.yaml"])
        .assert()
        .code(2);

    d.coffer()
        .args(["convert", "--bitnami-keys", "main.key", "-r", "r.txt", "."])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "converted 2 bitnami SealedSecret(s) in 1 of",
        ))
        .stdout(no_plaintext())
        .stderr(no_plaintext());
    let out = d.read("repo.yaml");
    assert!(
        out.starts_with("# the shop's database\n---\napiVersion: coffer.dev/v1alpha1\n"),
        "{out}"
    );
    assert!(out.contains("---\n# not a SealedSecret\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {mode: live} # kept\n---\n"), "{out}");
    assert!(!out.contains("bitnami.com/v1alpha1") && !out.contains("cli-plaintext"));
    assert!(out.contains("type: kubernetes.io/basic-auth"));

    // The strict value keeps its place; the cluster-wide one opens anywhere.
    let inspect = d
        .coffer()
        .args(["inspect", "-o", "json", "repo.yaml"])
        .assert()
        .success();
    let text = String::from_utf8(inspect.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("\"strict\"") && text.contains("\"cluster\""),
        "{text}"
    );
    d.coffer()
        .args(["recover", "-i", "identity.txt", "repo.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "password: Y2xpLXBsYWludGV4dC1iaXRuYW1pLTE=",
        ))
        .stdout(predicate::str::contains(
            "token: Y2xpLXBsYWludGV4dC1iaXRuYW1pLTI=",
        ));
}

/// Makes `d` (whose `.git` is a bare directory) a real git repository.
fn git_init(d: &Dir) {
    std::fs::remove_dir_all(d.path(".git")).ok();
    coffer_test_support::git(d.path("").as_path(), &["init", "-q"]);
}

fn git_more(d: &Dir, args: &[&str]) {
    coffer_test_support::git(d.path("").as_path(), args);
}

/// The fix `coffer check` names for a value never sealed for a cluster
/// its rule names is re-sealing from plaintext, and running exactly that
/// command makes the next check pass. Before, it named
/// `coffer rotate --no-new-key`, which re-encryption cannot do (it adds no
/// reader) and which changed nothing.
#[test]
fn check_fix_for_a_cluster_missing_from_a_value_is_the_command_that_works() {
    let d = repo();
    git_init(&d);
    git_more(&d, &["add", "-A"]);
    git_more(&d, &["commit", "-qm", "rules"]);
    d.coffer()
        .args([
            "seal",
            "-r",
            "recipients/prod.txt",
            "-w",
            "base/db.yaml",
            "secret.yaml",
        ])
        .assert()
        .success();
    let lines = check_lines(&d, &["base"]);
    let dr = key_id(&d, "recipients/dr.txt");
    has_line(
        &lines,
        "base/db.yaml: document 1 (SealedSecret shop/db)",
        &format!("item \"password\" is not sealed to key {dr} of recipients/dr.txt"),
    );
    let fix = lines[0].split("; fix: ").nth(1).unwrap().to_string();
    assert!(fix.contains("never sealed for that cluster"), "{fix}");
    // The command as named, with the Secret's plaintext file.
    let cmd = fix
        .split('`')
        .nth(1)
        .unwrap()
        .replace("SECRET.yaml", "secret.yaml");
    assert_eq!(cmd, "coffer seal --merge-into base/db.yaml secret.yaml");
    d.coffer()
        .args(cmd.split_whitespace().skip(1))
        .assert()
        .success();
    d.coffer()
        .args(["check", "base"])
        .assert()
        .success()
        .stderr(predicate::str::contains("0 problem(s)"));
}

/// A recipients file older than the values (a rotation fetched by someone
/// else) and a value older than its recipients file (a file rotate did not
/// see) look alike to a check of the files as they are; the recipients
/// file's git history tells them apart, and each gets its own fix. The
/// commands need a cluster (`cli/tests/e2e.rs` runs them); here the fix of
/// the first is what `coffer recipients -w` writes.
#[test]
fn check_tells_a_stale_recipients_file_from_a_stale_value() {
    let d = repo();
    d.coffer()
        .args(["keygen", "-w", "prod2.key", "--recipients-out", "prod2.txt"])
        .assert()
        .success();
    d.write(".gitignore", "identity.txt\ndr-identity.txt\n*.key\n");
    std::fs::copy(d.path("recipients/prod.txt"), d.path("prod1.txt")).unwrap();
    git_init(&d);
    git_more(&d, &["add", "-A"]);
    git_more(&d, &["commit", "-qm", "rules and recipients"]);
    let (prod1, prod2) = (key_id(&d, "recipients/prod.txt"), key_id(&d, "prod2.txt"));

    // Sealed to prod's newer key (and dr), which prod.txt never listed.
    d.coffer()
        .args([
            "seal",
            "-r",
            "prod2.txt",
            "-r",
            "recipients/dr.txt",
            "-w",
            "base/new.yaml",
            "secret.yaml",
        ])
        .assert()
        .success();
    // One line per item (the Secret has two).
    let lines = check_lines(&d, &["base"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    has_line(
        &lines,
        "base/new.yaml",
        &format!("is not sealed to key {prod1} of recipients/prod.txt"),
    );
    assert!(
        lines[0].contains(
            "never listed, newer than the file: refresh the file with `coffer recipients -w "
        ),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("recipients/prod.txt`"), "{}", lines[0]);
    // What `coffer recipients -w recipients/prod.txt` writes: the cluster's file.
    std::fs::copy(d.path("prod2.txt"), d.path("recipients/prod.txt")).unwrap();
    d.coffer().args(["check", "base"]).assert().success();
    git_more(&d, &["commit", "-qam", "refresh prod's recipients"]);

    // Sealed to prod's older key, which prod.txt listed before.
    d.coffer()
        .args([
            "seal",
            "-r",
            "prod1.txt",
            "-r",
            "recipients/dr.txt",
            "-w",
            "base/old.yaml",
            "secret.yaml",
        ])
        .assert()
        .success();
    let lines = check_lines(&d, &["base"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    has_line(
        &lines,
        "base/old.yaml",
        &format!("is not sealed to key {prod2} of recipients/prod.txt"),
    );
    assert!(
        lines[0].contains("sealed to a key recipients/prod.txt listed before: re-encrypt it for the current keys with `coffer rotate --no-new-key base/old.yaml`"),
        "{}",
        lines[0]
    );
}

/// A private key committed with the manifests is the worst leak of all:
/// `coffer check` finds an age identity in any file (not only manifests),
/// never quotes it, and leaves out what `.gitignore` or `--exclude` leave
/// out of the repository.
#[test]
fn check_flags_a_committed_age_identity_and_honours_gitignore_and_exclude() {
    let d = repo();
    std::fs::remove_file(d.path("secret.yaml")).unwrap();
    std::fs::create_dir_all(d.path("keys")).unwrap();
    std::fs::copy(d.path("identity.txt"), d.path("keys/admin.txt")).unwrap();
    let secret_line = d
        .read("identity.txt")
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    // Inside a manifest too.
    d.write(
        "base/leaked-configmap.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: k}}\ndata:\n  key: {secret_line}\n"
        ),
    );
    let out = d.coffer().arg("check").assert().code(5);
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!stdout.contains(&secret_line), "the key was quoted");
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    has_line(
        &lines,
        "./keys/admin.txt",
        "holds an age identity (a private key)",
    );
    has_line(
        &lines,
        "./base/leaked-configmap.yaml",
        "holds an age identity",
    );
    // identity.txt and dr-identity.txt are in .gitignore: not flagged.
    assert_eq!(lines.len(), 2, "{lines:?}");

    // --exclude leaves paths out (a glob with / from the path checked, one
    // without at any depth), and a .gitignore deeper down is honoured.
    d.coffer()
        .args([
            "check",
            "--exclude",
            "keys/**",
            "--exclude",
            "leaked-*.yaml",
        ])
        .assert()
        .success();
    d.write("keys/.gitignore", "*.txt\n");
    d.write("base/.gitignore", "leaked-configmap.yaml\n");
    d.coffer().arg("check").assert().success();
    // A plain Secret in an ignored vendor/ directory is not committed.
    d.write(".gitignore", "identity.txt\ndr-identity.txt\nvendor/\n");
    std::fs::create_dir_all(d.path("vendor/chart")).unwrap();
    d.write("vendor/chart/secret.yaml", SECRET);
    d.coffer().arg("check").assert().success();
    d.write(".gitignore", "identity.txt\ndr-identity.txt\n");
    let lines = check_lines(&d, &[]);
    has_line(&lines, "./vendor/chart/secret.yaml", LEAK);
}
