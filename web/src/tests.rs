//! The page's functions, natively: what they seal opens with the key ring
//! at the place it was sealed for, merging keeps every other ciphertext
//! byte for byte, and no error or output holds a value.

use super::*;
use coffer_format::envelope::{self, Location};
use coffer_format::key::SecretKey;
use coffer_format::keyring::Keyring;

const VALUE: &str = "pl4intext-hunter2";

fn recipients_of(keys: &[&SecretKey], name: &str) -> Named {
    let text = keys
        .iter()
        .map(|k| format!("{}\n", k.public()))
        .collect::<String>();
    Named {
        name: name.into(),
        text,
    }
}

fn request(secret: &str, keys: &[&SecretKey]) -> SealRequest {
    SealRequest {
        secret: secret.into(),
        namespace: None,
        scope: None,
        recipients: vec![recipients_of(keys, "cluster.txt")],
        merge_into: None,
        json: false,
    }
}

fn manifest(ns: &str, items: &[(&str, &str)]) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {ns}\n  labels:\n    app: shop\ntype: Opaque\nstringData:\n"
    );
    for (k, v) in items {
        s.push_str(&format!("  {k}: {v}\n"));
    }
    s
}

fn read(output: &str) -> SealedSecret {
    read_one_sealed(output).expect("the output is one SealedSecret")
}

fn open(s: &SealedSecret, item: &str, ring: &Keyring) -> Vec<u8> {
    let at = Location {
        namespace: s.metadata.namespace.as_deref().unwrap(),
        name: s.metadata.name.as_deref().unwrap(),
        key: item,
    };
    envelope::open(&s.spec.encrypted_data[item], at, ring)
        .expect("opens where it was sealed for")
        .to_vec()
}

#[test]
fn what_the_page_seals_opens_where_it_was_sealed_for_and_nowhere_else() {
    let key = SecretKey::generate();
    let ring = Keyring::from_keys([key.clone()]);
    let out = seal(&request(&manifest("shop", &[("password", VALUE)]), &[&key])).unwrap();
    assert!(!out.output.contains(VALUE));
    assert_eq!(out.sealed, ["shop/db"]);
    assert_eq!(out.key_ids, [key.id().to_string()]);
    let s = read(&out.output);
    assert_eq!(open(&s, "password", &ring), VALUE.as_bytes());
    let template = s.spec.template.as_ref().expect("labels and type kept");
    assert_eq!(template.metadata.as_ref().unwrap().labels["app"], "shop");
    // Strict: another namespace is refused.
    let elsewhere = Location {
        namespace: "other",
        name: "db",
        key: "password",
    };
    assert!(envelope::open(&s.spec.encrypted_data["password"], elsewhere, &ring).is_err());
}

#[test]
fn two_clusters_recipients_files_each_open_it() {
    let a = SecretKey::generate();
    let b = SecretKey::generate();
    let mut req = request(&manifest("shop", &[("password", VALUE)]), &[&a]);
    req.recipients.push(recipients_of(&[&b], "b.txt"));
    let s = read(&seal(&req).unwrap().output);
    for k in [a, b] {
        assert_eq!(
            open(&s, "password", &Keyring::from_keys([k])),
            VALUE.as_bytes()
        );
    }
}

#[test]
fn adding_an_item_keeps_every_other_ciphertext_byte_for_byte() {
    let key = SecretKey::generate();
    let ring = Keyring::from_keys([key.clone()]);
    let mut first = request(
        &manifest("shop", &[("user", "admin"), ("password", VALUE)]),
        &[&key],
    );
    first.scope = Some("namespace".into());
    let before = seal(&first).unwrap().output;
    let old = read(&before);
    let mut add = request(&manifest("shop", &[("token", "t0ken-v4lue")]), &[&key]);
    add.merge_into = Some(before.clone());
    let merged = seal(&add).unwrap();
    assert!(
        merged.notes.iter().any(|n| n.contains("scope namespace")),
        "{:?}",
        merged.notes
    );
    let new = read(&merged.output);
    for item in ["user", "password"] {
        assert_eq!(new.spec.encrypted_data[item], old.spec.encrypted_data[item]);
    }
    assert_eq!(open(&new, "token", &ring), b"t0ken-v4lue");
    let (env, _) = envelope::inspect(&new.spec.encrypted_data["token"]).unwrap();
    assert_eq!(env.scope, Scope::Namespace, "the scope of the values kept");
    // A scope chosen against theirs is refused, as the CLI's --scope.
    add.scope = Some("cluster".into());
    let e = seal(&add).unwrap_err();
    assert!(e.contains("mix scopes"), "{e}");
    // Another SealedSecret's file is refused.
    let mut other = request(&manifest("other", &[("token", "x")]), &[&key]);
    other.merge_into = Some(before);
    assert!(seal(&other).unwrap_err().contains("shop/db"));
}

#[test]
fn json_in_json_out_when_merging_and_on_request() {
    let key = SecretKey::generate();
    let mut req = request(&manifest("shop", &[("password", VALUE)]), &[&key]);
    req.json = true;
    let out = seal(&req).unwrap().output;
    assert!(out.starts_with('{'));
    let mut add = request(&manifest("shop", &[("more", "x")]), &[&key]);
    add.merge_into = Some(out);
    assert!(seal(&add).unwrap().output.starts_with('{'));
}

#[test]
fn the_namespace_asked_for_wins_over_none_and_conflicts_are_refused() {
    let key = SecretKey::generate();
    let bare = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: x\n";
    let out = seal(&request(bare, &[&key])).unwrap();
    assert_eq!(out.sealed, ["default/db"]);
    assert!(out.notes.iter().any(|n| n.contains("\"default\"")));
    let mut req = request(bare, &[&key]);
    req.namespace = Some("shop".into());
    assert_eq!(seal(&req).unwrap().sealed, ["shop/db"]);
    let mut req = request(&manifest("prod", &[("password", "x")]), &[&key]);
    req.namespace = Some("shop".into());
    assert!(seal(&req).unwrap_err().contains("\"prod\""));
}

#[test]
fn mixed_recipients_warn_as_the_cli_does() {
    let x = SecretKey::generate();
    let pq = SecretKey::generate_kind(coffer_format::key::KeyKind::MlKem768X25519);
    let out = seal(&request(
        &manifest("shop", &[("password", VALUE)]),
        &[&x, &pq],
    ))
    .unwrap();
    assert!(
        out.warnings[0].contains("post-quantum"),
        "{:?}",
        out.warnings
    );
}

#[test]
fn bad_input_gets_one_clear_error_without_the_value() {
    let key = SecretKey::generate();
    let cases = [
        // A duplicated key: the YAML parser would quote the line.
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  {VALUE}: 1\n  {VALUE}: 2\n"
        ),
        format!("{{\"kind\": \"Secret\", \"stringData\": {{\"a\": \"{VALUE}\"}}"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\ndata:\n  a: {VALUE}\n"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n".to_string(),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  a: {VALUE}!!\n"),
    ];
    for case in cases {
        let e = seal(&request(&case, &[&key])).unwrap_err();
        assert!(!e.contains(VALUE) && !e.contains("hunter"), "{e}");
        assert!(!e.is_empty());
    }
    let mut req = request(&manifest("shop", &[("a", VALUE)]), &[&key]);
    req.recipients = vec![];
    assert!(seal(&req).unwrap_err().contains("no recipients"));
    req.recipients = vec![Named {
        name: "pasted".into(),
        text: "age1notakey\n".into(),
    }];
    assert!(seal(&req).unwrap_err().starts_with("pasted: "));
    req.recipients = vec![recipients_of(&[&key], "k")];
    req.scope = Some("everywhere".into());
    assert!(seal(&req).unwrap_err().contains("unknown scope"));
    req.scope = None;
    req.merge_into = Some("not: [yaml".into());
    assert!(seal(&req).unwrap_err().starts_with("the SealedSecret: "));
    let debug = format!("{req:?}");
    assert!(!debug.contains(VALUE), "{debug}");
}

#[test]
fn inspect_reports_items_clusters_and_problems() {
    let a = SecretKey::generate();
    let b = SecretKey::generate();
    let mut req = request(&manifest("shop", &[("password", VALUE)]), &[&a]);
    req.recipients.push(recipients_of(&[&b], "b.txt"));
    let sealed = seal(&req).unwrap().output;
    let found = inspect(&InspectRequest {
        text: sealed.clone(),
        recipients: vec![recipients_of(&[&a], "a.txt")],
    })
    .unwrap();
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let doc = &found.documents[0];
    assert_eq!(doc.scopes, ["strict"]);
    assert_eq!(doc.items[0].key_ids.len(), 2);
    assert_eq!(found.key_files[&a.id().to_string()], ["a.txt"]);
    // Sealed to none of the given files' keys.
    let c = SecretKey::generate();
    let found = inspect(&InspectRequest {
        text: sealed.clone(),
        recipients: vec![recipients_of(&[&c], "c.txt")],
    })
    .unwrap();
    assert!(found.documents[0].problems[0].contains("no given recipients file holds"));
    // A plain Secret and a private key pasted by mistake.
    let text = format!(
        "{}---\n# AGE-SECRET-KEY-1XYZ\n{sealed}",
        manifest("shop", &[("a", VALUE)])
    );
    let found = inspect(&InspectRequest {
        text,
        recipients: vec![],
    })
    .unwrap();
    assert_eq!(found.documents.len(), 1);
    assert!(found.problems.iter().any(|p| p.contains("plain Secret")));
    assert!(found.problems.iter().any(|p| p.contains("private key")));
    assert!(!format!("{found:?}").contains(VALUE));
}

#[test]
fn recipients_info_names_each_key() {
    let a = SecretKey::generate();
    let info = recipients_info(&recipients_of(&[&a], "a.txt")).unwrap();
    assert_eq!(info[0].id, a.id().to_string());
    assert_eq!(info[0].kind, "x25519");
}
