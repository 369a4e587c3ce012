//! Seed corpora of the fuzz targets, `fuzz/seeds/<target>/`: valid inputs
//! (values sealed to the published test identities of
//! `format/tests/vectors/identity.txt`, X25519 and post-quantum, real Secret
//! manifests, real HTTP request bodies, real backups and recipients files,
//! bitnami SealedSecrets and values sealed to the published bitnami test key
//! of `fuzz/bitnami-key.pem`, `.coffer.yaml` rules with the files `coffer
//! check` reads) from which the fuzzer mutates its way past age's header
//! MAC, RSA-OAEP and AES-GCM and into the parsers' refusals. The `template`
//! seeds are hand-written templates, committed as they are.
//!
//! Regenerate after a format change (age's randomness makes the bytes
//! differ on every run; what each file is stays the same):
//!
//! ```sh
//! cargo test -p coffer-core --all-features --test fuzz_seeds -- --ignored generate_fuzz_seeds
//! ```
//!
//! The bitnami seeds and their checks need the `bitnami` and `test-util`
//! features (kubeseal's sealer); the generator refuses to run without them.
//!
//! Files whose names start with `crash-` are inputs a fuzzer found, kept as
//! regression seeds; the generator leaves them alone.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::SealedSecret;
use coffer_core::manifest::read_secrets;
use coffer_core::transform::seal_secret;
use coffer_format::backup::{self, BackupEntry};
use coffer_format::key::parse_identity_file;
use coffer_format::recipients::RecipientEntry;
use coffer_format::{Keyring, Location, PublicKey, RecipientsFile, Scope, SecretKey, seal};

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

fn test_key() -> SecretKey {
    parse_identity_file(include_str!("../../format/tests/vectors/identity.txt"))
        .unwrap()
        .remove(0)
}

/// The post-quantum (mlkem768x25519) test identity, the second of the file.
fn pq_test_key() -> SecretKey {
    let key = parse_identity_file(include_str!("../../format/tests/vectors/identity.txt"))
        .unwrap()
        .remove(1);
    assert!(key.kind().is_post_quantum());
    key
}

/// The file key of every `open_structured` ciphertext (`fuzz/src/lib.rs`).
const FILE_KEY: [u8; 16] = [0x5a; 16];

/// The published bitnami test key of `fuzz/bitnami-key.pem`.
#[cfg(all(feature = "bitnami", feature = "test-util"))]
fn bitnami_key() -> coffer_core::bitnami::BitnamiKey {
    coffer_core::bitnami::BitnamiKey::from_pem(include_str!("../../fuzz/bitnami-key.pem")).unwrap()
}

/// The fixed other keys of `fuzz/keys.txt`, which the fuzz targets use too.
fn other_keys() -> Vec<SecretKey> {
    parse_identity_file(include_str!("../../fuzz/keys.txt")).unwrap()
}

const AT: Location<'static> = Location {
    namespace: "shop",
    name: "db",
    key: "password",
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// The binary age file of a sealed value.
fn binary(sealed: &str) -> Vec<u8> {
    STANDARD.decode(sealed).unwrap()
}

/// A value of `len` bytes that is not all one byte.
fn value(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"secret-value-"[i % 13]).collect()
}

fn open_value_seeds() {
    let key = test_key();
    let others = other_keys();
    let me = [key.public().clone()];
    let t = "open_value";
    let s = |v: &[u8], scope, to: &[PublicKey]| seal(v, scope, AT, to).unwrap();
    write(
        t,
        "opens-strict.age",
        &binary(&s(b"hunter2", Scope::Strict, &me)),
    );
    write(
        t,
        "opens-namespace.age",
        &binary(&s(b"s3cret", Scope::Namespace, &me)),
    );
    write(
        t,
        "opens-cluster.age",
        &binary(&s(b"token-123", Scope::Cluster, &me)),
    );
    write(
        t,
        "opens-empty-value.age",
        &binary(&s(b"", Scope::Strict, &me)),
    );
    let all_bytes: Vec<u8> = (0..=255).collect();
    write(
        t,
        "opens-binary-value.age",
        &binary(&s(&all_bytes, Scope::Strict, &me)),
    );
    write(
        t,
        "opens-blank-lines.age",
        &binary(&s(b"\n\nx\n\n", Scope::Cluster, &me)),
    );
    // Size buckets: 512, 8 KiB, 32 KiB (one chunk).
    for len in [300, 5_000, 20_000] {
        write(
            t,
            &format!("opens-{len}-bytes.age"),
            &binary(&s(&value(len), Scope::Strict, &me)),
        );
    }
    // Chunk boundaries: a plaintext of exactly one and two 64 KiB chunks,
    // and of two and three chunks with a short last one.
    for (what, len) in [
        ("one-full-chunk", 60_000),
        ("two-full-chunks", 120_000),
        ("two-chunks", 70_000),
        ("three-chunks", 140_000),
    ] {
        let sealed = s(&value(len), Scope::Namespace, &me);
        write(t, &format!("opens-{what}.age"), &binary(&sealed));
    }
    // Several recipients, the test key among them.
    let two = [others[0].public().clone(), key.public().clone()];
    write(
        t,
        "opens-second-of-two.age",
        &binary(&s(b"multi", Scope::Strict, &two)),
    );
    let three = [
        key.public().clone(),
        others[1].public().clone(),
        others[2].public().clone(),
    ];
    write(
        t,
        "opens-first-of-three.age",
        &binary(&s(b"multi", Scope::Cluster, &three)),
    );
    let mut thirty: Vec<PublicKey> = (0..29)
        .map(|_| SecretKey::generate().public().clone())
        .collect();
    thirty.push(key.public().clone());
    write(
        t,
        "opens-last-of-thirty.age",
        &binary(&s(b"many", Scope::Strict, &thirty)),
    );
    // Refused: sealed to keys this ring lacks; bound elsewhere.
    let not_me = [others[0].public().clone()];
    write(
        t,
        "refused-no-matching-key.age",
        &binary(&s(b"nope", Scope::Strict, &not_me)),
    );
    let elsewhere = Location {
        namespace: "dev",
        ..AT
    };
    let sealed = seal(b"moved", Scope::Strict, elsewhere, &me).unwrap();
    write(t, "refused-scope-mismatch.age", &binary(&sealed));
    // The base64 text form, which the target also reads as it is.
    write(
        t,
        "opens-strict.b64",
        s(b"hunter2", Scope::Strict, &me).as_bytes(),
    );
    // Post-quantum: mlkem768x25519 stanzas (1,120-byte encapsulated keys),
    // alone, after an X25519 one, over chunks; refused when sealed to
    // another post-quantum key.
    let pq = [pq_test_key().public().clone()];
    write(
        t,
        "opens-pq-strict.age",
        &binary(&s(b"pq-hunter2", Scope::Strict, &pq)),
    );
    let mixed = [others[0].public().clone(), pq_test_key().public().clone()];
    write(
        t,
        "opens-pq-after-x25519.age",
        &binary(&s(b"mixed", Scope::Namespace, &mixed)),
    );
    write(
        t,
        "opens-pq-two-chunks.age",
        &binary(&s(&value(70_000), Scope::Cluster, &pq)),
    );
    let other_pq = [
        SecretKey::generate_kind(coffer_format::key::KeyKind::MlKem768X25519)
            .public()
            .clone(),
    ];
    write(
        t,
        "refused-pq-no-matching-key.age",
        &binary(&s(b"nope", Scope::Strict, &other_pq)),
    );
}

/// `fuzz/pq-stanza.txt`: the `open_structured` file key wrapped to the
/// post-quantum test identity, once (HPKE encapsulation is randomised, and
/// the target must reproduce an input byte for byte).
fn pq_stanza() {
    use age_core::format::FileKey;
    let key = pq_test_key();
    let (stanzas, _) = key
        .public()
        .recipient()
        .wrap_file_key(&FileKey::new(Box::new(FILE_KEY)))
        .unwrap();
    let stanza = stanzas
        .into_iter()
        .find(|s| s.tag == "mlkem768x25519")
        .unwrap();
    let text = format!(
        "# FUZZ TEST STANZA: the file key of fuzz/src/lib.rs (FILE_KEY) wrapped to the\n\
         # post-quantum test identity of format/tests/vectors/identity.txt, written by\n\
         # core/tests/fuzz_seeds.rs. Lines: the argument, the body (unpadded base64).\n\
         {}\n{}\n",
        stanza.args[0],
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&stanza.body)
    );
    std::fs::write(seeds().join("../pq-stanza.txt"), text).unwrap();
}

/// Bytes for `open_structured`, whose input is decoded by `arbitrary`: the
/// empty input is the honest sealing of an empty strict value; the others
/// are fixed pseudo-random bytes that decode to assorted mutations.
fn open_structured_seeds() {
    write("open_structured", "empty", b"");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for (i, len) in [8, 16, 32, 64, 128, 256, 512, 1024].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        write("open_structured", &format!("random-{i}-{len}"), &bytes);
    }
    // Honest sealings to the post-quantum test key (bit 6 of
    // `others_before`), unmutated, as `cargo fuzz fmt` shows them:
    // `arbitrary` reads each enum's variant from a little-endian u32
    // (index = u32 * variants >> 32), then the fields in order; the zeros
    // after them decode to no mutation.
    for (name, head) in [
        // Strict, Filled { len: 1024, byte: b'A' }, others_before: 64.
        (
            "pq-strict-1024-bytes",
            &[0, 0, 0, 0, 0, 0, 0, 0x40, 0x00, 0x04, 0x41, 0x40, 0, 0][..],
        ),
        // Cluster, Filled { len: 100, byte: b'B' }, one other recipient
        // before the test key and two after.
        (
            "pq-cluster-among-others",
            &[
                0, 0, 0, 0x80, 0, 0, 0, 0x40, 0x64, 0x00, 0x42, 0x41, 0x02, 0,
            ][..],
        ),
        // Namespace, Chunks { gate: 0, k: 1, delta: 0 }: two 64 KiB chunks.
        (
            "pq-namespace-two-chunks",
            &[0x34, 0x33, 0x33, 0x33, 0, 0, 0, 0x80, 0, 1, 0, 0x40, 0, 0][..],
        ),
    ] {
        let mut bytes = head.to_vec();
        bytes.resize(34, 0);
        write("open_structured", name, &bytes);
    }
}

const MANIFESTS: &[(&str, &str)] = &[
    (
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: shop\n  labels:\n    app: shop\n  annotations:\n    team: payments\ntype: Opaque\nimmutable: true\ndata:\n  password: aHVudGVyMg==\n  empty: \"\"\nstringData:\n  user: admin\n  url: \"postgres://db:5432/shop\"\n",
    ),
    (
        "secret.json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"shop","labels":{"app":"shop"}},"type":"kubernetes.io/basic-auth","data":{"password":"aHVudGVyMg=="},"stringData":{"username":"admin"}}"#,
    ),
    (
        "list.json",
        r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","namespace":"shop"},"stringData":{"k":"v"}},{"kind":"Secret","metadata":{"name":"b"},"data":{"x":"eA=="}}]}"#,
    ),
    (
        "list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: a, namespace: shop}\n  stringData: {k: v}\n- kind: Secret\n  metadata:\n    name: b\n  data:\n    x: eA==\n",
    ),
    (
        "secretlist.yaml",
        "kind: SecretList\nitems:\n  - kind: Secret\n    metadata: {name: s}\n    stringData: {a: b}\n",
    ),
    (
        "multi-doc.yaml",
        "# three Secrets\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: one\nstringData:\n  a: \"1\"\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: two\n  namespace: dev\ndata:\n  b: Mg==\n...\n---\nkind: Secret\nmetadata: {name: three}\nstringData: {c: three}\n",
    ),
    (
        "scalars.yaml",
        "kind: Secret\nmetadata:\n  name: scalars\nstringData:\n  literal: |\n    line one\n    line two\n  folded: >-\n    folded\n    text\n  single: 'it''s'\n  double: \"tab\\there \\u00e9\"\n  empty:\n  tilde: ~\ndata:\n  spaced: \" aGk= \"\n",
    ),
    (
        "anchors.yaml",
        "kind: Secret\nmetadata: &m {name: anchored, namespace: shop}\nstringData:\n  a: &v shared\n  b: *v\n---\nkind: Secret\nmetadata: {name: other, labels: &l {app: a}, annotations: *l}\nstringData: {c: d}\n",
    ),
    (
        "kubectl-get.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: |\n      {\"apiVersion\":\"v1\",\"kind\":\"Secret\"}\n  creationTimestamp: \"2026-11-30T10:00:00Z\"\n  managedFields:\n  - apiVersion: v1\n    fieldsType: FieldsV1\n    fieldsV1: {f:data: {.: {}, f:password: {}}}\n    manager: kubectl\n    operation: Update\n  name: db\n  namespace: shop\n  resourceVersion: \"123\"\n  uid: 3f2c8a40-0000-4000-8000-000000000000\ntype: Opaque\ndata:\n  password: aHVudGVyMg==\n",
    ),
    (
        "refused-configmap.yaml",
        "kind: Secret\nmetadata: {name: a}\n---\nkind: ConfigMap\nmetadata: {name: b}\ndata: {x: y}\n",
    ),
    (
        // A YAML binary tag gives bytes, not the base64 text `data` holds.
        "refused-binary-tag.yaml",
        "kind: Secret\nmetadata: {name: bin}\ndata:\n  binary: !!binary AAECAwQFBgcICQ==\n",
    ),
    (
        "refused-number.yaml",
        "kind: Secret\nmetadata: {name: port}\nstringData:\n  port: 5432\n  debug: true\n",
    ),
];

fn read_manifest_seeds() {
    for (name, text) in MANIFESTS {
        write("read_manifest", name, text.as_bytes());
    }
}

fn sealed_secret(manifest: &str, scope: Scope, to: &[PublicKey]) -> SealedSecret {
    let m = read_secrets(manifest).unwrap().remove(0);
    seal_secret(&m, Some("shop"), false, scope, to).unwrap()
}

fn json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap()
}

fn http_body_seeds() {
    let key = test_key();
    let others = other_keys();
    let me = [key.public().clone()];
    let t = "http_body";
    let simple =
        "kind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: hunter2}\n";
    let s = sealed_secret(simple, Scope::Strict, &me);
    write(t, "sealed-secret.json", &json(&s));
    // Compact, as kubectl and curl send it.
    write(
        t,
        "sealed-secret-compact.json",
        &serde_json::to_vec(&s).unwrap(),
    );
    let templated = MANIFESTS[0].1;
    write(
        t,
        "templated-namespace-scope.json",
        &json(&sealed_secret(templated, Scope::Namespace, &me)),
    );
    write(
        t,
        "cluster-scope.json",
        &json(&sealed_secret(simple, Scope::Cluster, &me)),
    );
    // Sealed to this cluster and another: re-encryption needs the other's
    // recipient, given in the request.
    let both = [key.public().clone(), others[0].public().clone()];
    let two = sealed_secret(simple, Scope::Strict, &both);
    let request = serde_json::json!({
        "sealedSecret": two,
        "additionalRecipients": [others[0].public().to_string(), others[1].public().to_string()],
    });
    write(t, "reencrypt-request.json", &json(&request));
    write(
        t,
        "reencrypt-missing-recipient.json",
        &json(&serde_json::json!({ "sealedSecret": two })),
    );
    // Refused: found where it was not sealed for, a refused type, a
    // SealedSecret with status and managedFields as the API server returns
    // it, an empty one.
    let mut moved = s.clone();
    moved.metadata.namespace = Some("dev".into());
    write(t, "refused-scope-mismatch.json", &json(&moved));
    let mut sa = sealed_secret(simple, Scope::Strict, &me);
    sa.spec.template = Some(coffer_core::SecretTemplate {
        type_: Some("kubernetes.io/service-account-token".into()),
        ..Default::default()
    });
    write(t, "refused-type.json", &json(&sa));
    let mut from_api = serde_json::to_value(&s).unwrap();
    from_api["metadata"]["managedFields"] = serde_json::json!([{"manager": "kubectl", "operation": "Update", "apiVersion": "coffer.dev/v1alpha1"}]);
    from_api["metadata"]["resourceVersion"] = "42".into();
    from_api["status"] = serde_json::json!({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "Unsealed", "message": "", "lastTransitionTime": "2026-11-30T10:00:00Z"}]});
    write(t, "from-api-server.json", &json(&from_api));
    write(
        t,
        "refused-empty.json",
        br#"{"apiVersion":"coffer.dev/v1alpha1","kind":"SealedSecret","metadata":{"name":"x","namespace":"shop"},"spec":{"encryptedData":{}}}"#,
    );
    write(
        t,
        "refused-bad-recipient.json",
        &json(
            &serde_json::json!({ "sealedSecret": s, "additionalRecipients": ["age1notarecipient"] }),
        ),
    );
}

fn backup_seeds() {
    let key = test_key();
    let others = other_keys();
    let t = "backup";
    let created: jiff::Timestamp = "2026-11-22T00:00:00Z".parse().unwrap();
    let entries = vec![
        BackupEntry {
            key: key.clone(),
            created: Some(created),
            retired: false,
        },
        BackupEntry {
            key: others[0].clone(),
            created: Some("2026-01-01T12:30:00Z".parse().unwrap()),
            retired: true,
        },
        BackupEntry {
            key: others[1].clone(),
            created: None,
            retired: false,
        },
    ];
    let plain = backup::render(&entries, created);
    write(t, "backup-plain.txt", plain.as_bytes());
    // A plain age identity file, and the states and spacing backups allow.
    write(
        t,
        "identity-file.txt",
        include_str!("../../format/tests/vectors/identity.txt").as_bytes(),
    );
    let loose = format!(
        "# not a coffer line\r\n\r\n  # coffer: key={} state=open-only created=2026-11-01T00:00:00+00:00\r\n  {}  \r\n",
        others[2].id(),
        others[2].to_secret_string().as_str()
    );
    write(t, "backup-crlf-open-only.txt", loose.as_bytes());
    // Encrypted to the test identity as the admin's: armored, as `coffer
    // keys backup` writes it, and binary.
    let armored = backup::encrypt(&plain, std::slice::from_ref(key.public())).unwrap();
    write(t, "backup-armored.age", armored.as_bytes());
    let binary = {
        use std::io::Write;
        let enc = age::Encryptor::with_recipients(std::iter::once(
            key.public().recipient() as &dyn age::Recipient
        ))
        .unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(plain.as_bytes()).unwrap();
        w.finish().unwrap();
        out
    };
    write(t, "backup-binary.age", &binary);
    // Recipients files, which the target parses too.
    let file = RecipientsFile {
        entries: vec![
            RecipientEntry {
                key: key.public().clone(),
                cluster: Some("prod-eu".into()),
                created: Some(created),
            },
            RecipientEntry {
                key: others[0].public().clone(),
                cluster: None,
                created: None,
            },
        ],
    };
    write(t, "recipients.txt", file.render().as_bytes());
    write(
        t,
        "recipients-plain-age.txt",
        format!("# made by age\n{}\n", others[1].public()).as_bytes(),
    );
}

/// Fixed pseudo-random bytes of each length, for the targets whose input
/// `arbitrary` decodes.
fn random_seeds(target: &str, prefix: &str, mut x: u64, lens: &[usize]) {
    for (i, len) in lens.iter().enumerate() {
        let bytes: Vec<u8> = (0..*len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        write(target, &format!("{prefix}-{i}-{len}"), &bytes);
    }
}

/// Every value the bitnami seeds seal starts with this marker, which the
/// target looks for in refusals.
#[cfg(all(feature = "bitnami", feature = "test-util"))]
const BITNAMI_VALUE: &[u8] = b"BITNAMI-FUZZ-VALUE-hunter2";

#[cfg(all(feature = "bitnami", feature = "test-util"))]
fn bitnami_seeds() {
    use coffer_core::bitnami::{BitnamiScope, seal_like_kubeseal};
    let key = bitnami_key();
    let der = key.public_der();
    let t = "bitnami";
    let seal = |v: &[u8], scope, ns: &str, name: &str| seal_like_kubeseal(&der, v, scope, ns, name);
    // Values, as base64 text (encryptedData) and raw bytes.
    let strict = seal(BITNAMI_VALUE, BitnamiScope::Strict, "shop", "db");
    write(t, "value-strict.b64", strict.as_bytes());
    write(t, "value-strict.bin", &binary(&strict));
    let ns = seal(BITNAMI_VALUE, BitnamiScope::NamespaceWide, "shop", "db");
    write(t, "value-namespace-wide-scope-mismatch.b64", ns.as_bytes());
    let cw = seal(BITNAMI_VALUE, BitnamiScope::ClusterWide, "shop", "db");
    write(t, "value-cluster-wide-scope-mismatch.bin", &binary(&cw));
    let moved = seal(BITNAMI_VALUE, BitnamiScope::Strict, "shop", "other");
    write(t, "refused-value-other-place.b64", moved.as_bytes());
    let long: Vec<u8> = BITNAMI_VALUE.iter().copied().chain(value(5_000)).collect();
    write(
        t,
        "value-5000-bytes.bin",
        &binary(&seal(&long, BitnamiScope::Strict, "shop", "db")),
    );
    // SealedSecrets as kubeseal writes them.
    let item = |v: &[u8], scope, name: &str| seal(v, scope, "shop", name);
    let pw: Vec<u8> = [BITNAMI_VALUE, b"-password"].concat();
    let user: Vec<u8> = [BITNAMI_VALUE, b"-user"].concat();
    let doc = |name: &str, annotations: &str, scope, extra: &str| {
        format!(
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: {name}\n  namespace: shop\n{annotations}spec:\n  encryptedData:\n    password: {}\n    user: {}\n  template:\n    metadata:\n      name: {name}\n      namespace: shop\n      labels:\n        app: shop\n    type: Opaque\n{extra}",
            item(&pw, scope, name),
            item(&user, scope, name),
        )
    };
    write(
        t,
        "sealedsecret.yaml",
        doc("db", "", BitnamiScope::Strict, "").as_bytes(),
    );
    write(
        t,
        "sealedsecret-namespace-wide.yaml",
        doc(
            "db",
            "  annotations:\n    sealedsecrets.bitnami.com/namespace-wide: \"true\"\n",
            BitnamiScope::NamespaceWide,
            "",
        )
        .as_bytes(),
    );
    let cluster = format!(
        r#"{{"apiVersion":"bitnami.com/v1alpha1","kind":"SealedSecret","metadata":{{"name":"db","namespace":"shop","annotations":{{"sealedsecrets.bitnami.com/cluster-wide":"true"}}}},"spec":{{"encryptedData":{{"token":"{}"}},"template":{{"type":"kubernetes.io/basic-auth","immutable":true}}}}}}"#,
        seal(&pw, BitnamiScope::ClusterWide, "elsewhere", "x")
    );
    write(t, "sealedsecret-cluster-wide.json", cluster.as_bytes());
    let multi = format!(
        "# converted in place: comments and other documents stay\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{a: b}}\n---\n{}---\n# the end\n",
        doc("db", "", BitnamiScope::Strict, "")
    );
    write(t, "multi-doc.yaml", multi.as_bytes());
    write(
        t,
        "refused-moved.yaml",
        doc("db", "", BitnamiScope::Strict, "")
            .replace("namespace: shop", "namespace: dev")
            .as_bytes(),
    );
    write(
        t,
        "refused-template-data.yaml",
        doc(
            "db",
            "",
            BitnamiScope::Strict,
            "    data:\n      url: \"postgres://{{ .user }}:{{ .password }}@db\"\n",
        )
        .as_bytes(),
    );
    write(
        t,
        "refused-legacy-data.yaml",
        b"apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: old, namespace: shop}\nspec:\n  data: AAECAwQF\n",
    );
    // Key backups: `kubectl get secret -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`, and a bare PEM.
    let pem = include_str!("../../fuzz/bitnami-key.pem");
    let pem_b64 = STANDARD.encode(pem.as_bytes());
    let backup = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: sealed-secrets-keyabcde\n    namespace: kube-system\n    labels:\n      sealedsecrets.bitnami.com/sealed-secrets-key: active\n  type: kubernetes.io/tls\n  data:\n    tls.crt: {}\n    tls.key: {pem_b64}\n",
        STANDARD.encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    );
    write(t, "key-backup-list.yaml", backup.as_bytes());
    write(t, "key.pem", pem.as_bytes());
}

/// `.coffer.yaml` rules, a NUL byte, and a file `coffer check` reads (the
/// target's scratch directory has `recipients/prod.txt`, the test
/// identity's, and `recipients/dr.txt`, the first key of `fuzz/keys.txt`).
const RULES: &str = "rules:\n  - path: \"clusters/dr/**\"\n    recipients: [recipients/dr.txt]\n  - path: \"clusters/*/db.yaml\"\n    recipients: [recipients/prod.txt]\n    scope: strict\n  - path: \"**\"\n    recipients: [recipients/prod.txt, recipients/dr.txt]\n    scope: namespace\n";

/// In every plain Secret value of the `rules_and_check` seeds: no problem
/// `coffer check` reports may show it.
const PLAIN_MARKER: &str = "PLAINTEXT-Zq7";

fn rules_and_check_seeds() {
    let key = test_key();
    let others = other_keys();
    let t = "rules_and_check";
    let with_rules = |doc: &str| format!("{RULES}\0{doc}");
    let simple = "kind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: hunter2, user: admin}\n";
    let yaml = |s: &SealedSecret| serde_saphyr::to_string(s).unwrap();
    let ok = sealed_secret(simple, Scope::Strict, &[key.public().clone()]);
    write(
        t,
        "sealed-as-the-rule-says.yaml",
        with_rules(&yaml(&ok)).as_bytes(),
    );
    write(
        t,
        "sealed-as-the-rule-says.json",
        with_rules(&serde_json::to_string_pretty(&ok).unwrap()).as_bytes(),
    );
    let wrong_scope = sealed_secret(simple, Scope::Namespace, &[key.public().clone()]);
    write(
        t,
        "wrong-scope.yaml",
        with_rules(&yaml(&wrong_scope)).as_bytes(),
    );
    let stale = sealed_secret(simple, Scope::Strict, &[others[1].public().clone()]);
    write(
        t,
        "stale-recipients.yaml",
        with_rules(&yaml(&stale)).as_bytes(),
    );
    let plain = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: shop\ntype: Opaque\ndata:\n  token: {PLAIN_MARKER}-token\nstringData:\n  password: {PLAIN_MARKER}-hunter2\n  url: \"postgres://admin:{PLAIN_MARKER}@db:5432/shop\"\n"
    );
    write(t, "plain-secret.yaml", with_rules(&plain).as_bytes());
    let mut broken = ok.clone();
    broken.spec.encrypted_data.insert(
        "truncated".into(),
        "YWdlLWVuY3J5cHRpb24ub3JnL3YxCg==".into(),
    );
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n- {}\n",
        serde_json::to_string(&broken).unwrap(),
        serde_json::to_string(&serde_saphyr::from_str::<serde_json::Value>(&plain).unwrap())
            .unwrap()
    );
    write(
        t,
        "list-broken-value-and-plain.yaml",
        with_rules(&list).as_bytes(),
    );
    let multi = format!(
        "# two documents and a ConfigMap\n---\n{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{a: b}}\n---\n{}",
        yaml(&ok),
        yaml(&wrong_scope)
    );
    write(t, "multi-doc.yaml", with_rules(&multi).as_bytes());
    write(
        t,
        "helm-template-secret.yaml",
        with_rules(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{{{ .Release.Name }}}}\nstringData:\n  password: {{{{ .Values.password | default \"{PLAIN_MARKER}\" }}}}\n{{{{- if .Values.x }}}}\n  a: [\n{{{{- end }}}}\n"
        ))
        .as_bytes(),
    );
    write(
        t,
        "helm-template-other.yaml",
        with_rules("kind: ConfigMap\ndata:\n  a: {{ .Values.a }\n  b: [\n").as_bytes(),
    );
    // A document without rules, and rules alone (no NUL byte).
    write(t, "no-rules.yaml", yaml(&ok).as_bytes());
    write(t, "rules-alone.yaml", RULES.as_bytes());
    write(
        t,
        "refused-rules-bad-glob.yaml",
        format!(
            "rules:\n  - path: \"a/[\"\n    recipients: [recipients/prod.txt]\n\0{}",
            yaml(&ok)
        )
        .as_bytes(),
    );
    write(
        t,
        "refused-rules-unknown-field.yaml",
        format!(
            "rules:\n  - path: \"**\"\n    recipient: [recipients/prod.txt]\n    scope: planet\n\0{plain}"
        )
        .as_bytes(),
    );
    write(
        t,
        "rules-missing-recipients-file.yaml",
        format!(
            "rules:\n  - path: \"clusters/**\"\n    recipients: [recipients/gone.txt]\n\0{}",
            yaml(&ok)
        )
        .as_bytes(),
    );
}

/// Regenerates every seed corpus under `fuzz/seeds/` (but `template`'s and
/// the `crash-*` inputs) and `fuzz/pq-stanza.txt`.
#[test]
#[ignore = "generator, run by hand"]
fn generate_fuzz_seeds() {
    // Refused rather than leave the bitnami seeds out.
    if !cfg!(all(feature = "bitnami", feature = "test-util")) {
        panic!("the bitnami seeds need kubeseal's sealer: run with --all-features");
    }
    open_value_seeds();
    open_structured_seeds();
    pq_stanza();
    read_manifest_seeds();
    http_body_seeds();
    backup_seeds();
    #[cfg(all(feature = "bitnami", feature = "test-util"))]
    bitnami_seeds();
    random_seeds(
        "attest",
        "random",
        0x2545_f491_4f6c_dd1d,
        &[16, 64, 256, 1024, 4096],
    );
    rules_and_check_seeds();
}

/// The committed seeds still are what their names say: values named
/// `opens-*` open with the test identity and `refused-*` do not (a format
/// change that forgets to regenerate them leaves the fuzzer stuck at the
/// MAC again), manifests read or are refused, backups parse.
#[test]
fn committed_seeds_are_what_their_names_say() {
    let ring = Keyring::from_keys([test_key(), pq_test_key()]);
    let mut opened = 0;
    for entry in std::fs::read_dir(seeds().join("open_value")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let sealed = if name.ends_with(".b64") {
            String::from_utf8(bytes).unwrap()
        } else {
            STANDARD.encode(&bytes)
        };
        let result = coffer_format::open(&sealed, AT, &ring);
        if name.starts_with("opens-") {
            assert!(result.is_ok(), "{name}: {:?}", result.err());
            opened += 1;
        } else if name.starts_with("refused-") {
            assert!(result.is_err(), "{name}");
        }
    }
    assert!(opened >= 18, "only {opened} seeds open");
    for (name, _) in MANIFESTS {
        let text = std::fs::read_to_string(seeds().join("read_manifest").join(name)).unwrap();
        let result = read_secrets(&text);
        assert_eq!(
            result.is_ok(),
            !name.starts_with("refused-"),
            "{name}: {:?}",
            result.err()
        );
    }
    let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let plain = std::fs::read_to_string(seeds().join("backup/backup-plain.txt")).unwrap();
    assert_eq!(backup::parse(&plain, now).unwrap().len(), 3);
    let armored = std::fs::read(seeds().join("backup/backup-armored.age")).unwrap();
    let text = backup::decrypt(&armored, &[test_key()]).unwrap();
    assert_eq!(backup::parse(&text, now).unwrap().len(), 3);
}

/// `fuzz/pq-stanza.txt` still wraps the `open_structured` file key to the
/// post-quantum test identity.
#[test]
fn committed_pq_stanza_is_what_it_says() {
    use age::secrecy::ExposeSecret;
    use age_core::format::Stanza;
    let text = std::fs::read_to_string(seeds().join("../pq-stanza.txt")).unwrap();
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let stanza = Stanza {
        tag: "mlkem768x25519".into(),
        args: vec![lines.next().unwrap().to_string()],
        body: base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(lines.next().unwrap())
            .unwrap(),
    };
    let file_key = pq_test_key().unwrap(&stanza).unwrap().unwrap();
    assert_eq!(file_key.expose_secret(), &FILE_KEY);
}

/// The bitnami seeds open with the bitnami test key where their names say
/// so.
#[test]
#[cfg(all(feature = "bitnami", feature = "test-util"))]
fn committed_bitnami_seeds_are_what_they_say() {
    use coffer_core::bitnami::{At, BitnamiOpenError, BitnamiScope, open, open_bytes};
    let keys = [bitnami_key()];
    let at = At {
        namespace: "shop",
        name: "db",
        scope: BitnamiScope::Strict,
    };
    let dir = seeds().join("bitnami");
    let text = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    let bytes = |n: &str| std::fs::read(dir.join(n)).unwrap();
    assert_eq!(
        open(&text("value-strict.b64"), at, &keys)
            .unwrap()
            .as_slice(),
        BITNAMI_VALUE
    );
    assert_eq!(
        open_bytes(&bytes("value-strict.bin"), at, &keys)
            .unwrap()
            .as_slice(),
        BITNAMI_VALUE
    );
    assert!(open_bytes(&bytes("value-5000-bytes.bin"), at, &keys).is_ok());
    assert!(matches!(
        open(&text("value-namespace-wide-scope-mismatch.b64"), at, &keys),
        Err(BitnamiOpenError::ScopeMismatch { .. })
    ));
    assert!(matches!(
        open(&text("refused-value-other-place.b64"), at, &keys),
        Err(BitnamiOpenError::NoMatchingKey { .. })
    ));
    for (name, opens) in [
        ("sealedsecret.yaml", true),
        ("sealedsecret-namespace-wide.yaml", true),
        ("sealedsecret-cluster-wide.json", true),
        ("refused-moved.yaml", false),
    ] {
        let doc: serde_json::Value = serde_saphyr::from_str(&text(name)).unwrap();
        let doc = coffer_core::bitnami::read_sealed_secret(doc)
            .unwrap()
            .unwrap();
        assert_eq!(doc.open_all(&keys).is_ok(), opens, "{name}");
    }
    assert_eq!(
        coffer_core::bitnami::read_key_backup(&text("key-backup-list.yaml"))
            .unwrap()
            .len(),
        1
    );
}
