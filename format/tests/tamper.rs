//! Every way a sealed value can be moved, altered or forged is refused, each
//! with its own error: for values sealed to X25519 keys and to post-quantum
//! (mlkem768x25519) keys alike. Each case is a function of the key kind;
//! `for_each_kind!` at the end makes one test per case and kind.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_format::envelope::{self, MAX_SEALED_LEN, MAX_STANZAS, MAX_VALUE_LEN, SealError};
use coffer_format::key::KeyKind;
use coffer_format::{Keyring, Location, OpenError, Scope, SecretKey, open, seal};

const AT: Location<'static> = Location {
    namespace: "shop",
    name: "db",
    key: "password",
};

fn setup(kind: KeyKind) -> (SecretKey, Keyring, String) {
    let key = SecretKey::generate_kind(kind);
    let sealed = seal(b"hunter2", Scope::Strict, AT, &[key.public().clone()]).unwrap();
    let ring = Keyring::from_keys([key.clone()]);
    (key, ring, sealed)
}

fn value_opens_where_it_was_sealed(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    assert_eq!(open(&sealed, AT, &ring).unwrap().as_slice(), b"hunter2");
}

fn value_moved_to_other_namespace_is_refused(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let at = Location {
        namespace: "dev",
        ..AT
    };
    let err = open(&sealed, at, &ring).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sealed for shop/db item \"password\", found at dev/db item \"password\""
    );
    assert_eq!(err.reason(), "ScopeMismatch");
}

fn value_under_other_name_is_refused(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let at = Location { name: "db2", ..AT };
    assert!(matches!(
        open(&sealed, at, &ring),
        Err(OpenError::ScopeMismatch { .. })
    ));
}

fn value_under_other_item_key_is_refused(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let at = Location { key: "user", ..AT };
    let err = open(&sealed, at, &ring).unwrap_err();
    assert!(
        err.to_string().contains("found at shop/db item \"user\""),
        "{err}"
    );
}

fn namespace_scoped_value_opens_under_any_name_but_not_elsewhere(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let ring = Keyring::from_keys([key.clone()]);
    let sealed = seal(b"v", Scope::Namespace, AT, &[key.public().clone()]).unwrap();
    assert!(
        open(
            &sealed,
            Location {
                name: "other",
                ..AT
            },
            &ring
        )
        .is_ok()
    );
    let err = open(
        &sealed,
        Location {
            namespace: "dev",
            ..AT
        },
        &ring,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("sealed for any name in namespace shop")
    );
}

fn cluster_scoped_value_opens_anywhere_under_its_item_key(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let ring = Keyring::from_keys([key.clone()]);
    let sealed = seal(b"v", Scope::Cluster, AT, &[key.public().clone()]).unwrap();
    let elsewhere = Location {
        namespace: "dev",
        name: "x",
        key: "password",
    };
    assert!(open(&sealed, elsewhere, &ring).is_ok());
    assert!(
        open(
            &sealed,
            Location {
                key: "k",
                ..elsewhere
            },
            &ring
        )
        .is_err()
    );
}

fn any_flipped_bit_is_refused(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let bytes = STANDARD.decode(&sealed).unwrap();
    for pos in 0..bytes.len() {
        for bit in [0u8, 3, 7] {
            let mut t = bytes.clone();
            t[pos] ^= 1 << bit;
            let r = open(&STANDARD.encode(&t), AT, &ring);
            assert!(r.is_err(), "flipping bit {bit} of byte {pos} was accepted");
        }
    }
}

fn flipped_payload_byte_is_reported_as_tampering(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let mut bytes = STANDARD.decode(&sealed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(
        open(&STANDARD.encode(&bytes), AT, &ring).unwrap_err(),
        OpenError::Tampered
    );
}

fn truncated_at_every_length_is_refused(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let bytes = STANDARD.decode(&sealed).unwrap();
    for len in 0..bytes.len() {
        let r = open(&STANDARD.encode(&bytes[..len]), AT, &ring);
        assert!(r.is_err(), "truncation to {len} bytes was accepted");
    }
}

fn value_sealed_to_a_key_not_in_the_ring_names_that_key(kind: KeyKind) {
    let (key, _, sealed) = setup(kind);
    let other = Keyring::from_keys([SecretKey::generate_kind(kind)]);
    let err = open(&sealed, AT, &other).unwrap_err();
    assert_eq!(err.reason(), "NoMatchingKey");
    assert!(err.to_string().contains(&key.id().to_string()), "{err}");
}

fn value_sealed_to_a_retired_key_says_so(kind: KeyKind) {
    let (key, _, sealed) = setup(kind);
    let mut ring = Keyring::new();
    ring.insert(key.clone(), true);
    assert_eq!(
        open(&sealed, AT, &ring).unwrap_err(),
        OpenError::KeyRetired(key.id())
    );
}

fn unknown_format_version_is_refused(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let ring = Keyring::from_keys([key.clone()]);
    let mut plain = b"coffer.dev/v2\nscope: cluster\nkey: password\npad: ".to_vec();
    plain.resize(254, b'.');
    plain.extend_from_slice(b"\n\nx");
    let sealed = envelope::seal_plaintext(&plain, Scope::Cluster, &[key.public().clone()]).unwrap();
    assert_eq!(
        open(&sealed, AT, &ring).unwrap_err(),
        OpenError::UnsupportedVersion("coffer.dev/v2".into())
    );
}

fn plaintext_that_is_not_a_coffer_value_is_refused(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let ring = Keyring::from_keys([key.clone()]);
    let sealed = envelope::seal_plaintext(
        b"just some age file\n",
        Scope::Strict,
        &[key.public().clone()],
    )
    .unwrap();
    assert!(matches!(
        open(&sealed, AT, &ring),
        Err(OpenError::Malformed(_))
    ));
}

fn unpadded_plaintext_is_refused(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let ring = Keyring::from_keys([key.clone()]);
    let plain = b"coffer.dev/v1\nscope: cluster\nkey: password\npad: \n\nx";
    let sealed = envelope::seal_plaintext(plain, Scope::Cluster, &[key.public().clone()]).unwrap();
    assert_eq!(
        open(&sealed, AT, &ring).unwrap_err(),
        OpenError::Malformed("plaintext is not padded to a size bucket")
    );
}

fn trailing_bytes_are_refused(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let mut bytes = STANDARD.decode(&sealed).unwrap();
    bytes.extend_from_slice(b"extra");
    assert_eq!(
        open(&STANDARD.encode(&bytes), AT, &ring).unwrap_err(),
        OpenError::Tampered
    );
}

fn non_canonical_base64_is_refused(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let unpadded = sealed.trim_end_matches('=');
    let with_newline = format!("{}\n{}", &sealed[..10], &sealed[10..]);
    let url_safe = sealed.replace('+', "-").replace('/', "_");
    let mut cases = vec![with_newline, format!(" {sealed}")];
    if unpadded != sealed {
        cases.push(unpadded.to_string());
    }
    if url_safe != sealed {
        cases.push(url_safe);
    }
    // Non-zero trailing bits in the last symbol: decodes to the same bytes
    // with a lenient decoder, so it must be refused.
    let bytes = STANDARD.decode(&sealed).unwrap();
    if bytes.len() % 3 != 0 {
        let pad = sealed.len() - sealed.trim_end_matches('=').len();
        let i = sealed.len() - pad - 1;
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let c = sealed.as_bytes()[i] as char;
        let v = alphabet.find(c).unwrap();
        let nv = v | 1;
        if nv != v {
            let mut s = sealed.clone();
            s.replace_range(i..i + 1, &alphabet[nv..nv + 1]);
            cases.push(s);
        }
    }
    for c in cases {
        assert_eq!(
            open(&c, AT, &ring).unwrap_err(),
            OpenError::Base64,
            "{c:.20}"
        );
    }
}

fn more_stanzas_than_the_cap_are_refused(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let bytes = STANDARD.decode(&sealed).unwrap();
    let text_end = bytes.windows(4).position(|w| w == b"\n-> ").unwrap() + 1;
    let mut forged = bytes[..text_end].to_vec();
    for _ in 0..MAX_STANZAS {
        forged.extend_from_slice(b"-> junk\n\n");
    }
    forged.extend_from_slice(&bytes[text_end..]);
    assert!(matches!(
        open(&STANDARD.encode(&forged), AT, &ring),
        Err(OpenError::TooManyStanzas { .. })
    ));
}

fn oversized_input_is_refused_before_decoding(kind: KeyKind) {
    let (_, ring, _) = setup(kind);
    let huge = "A".repeat(MAX_SEALED_LEN + 4);
    assert_eq!(
        open(&huge, AT, &ring).unwrap_err(),
        OpenError::TooLarge { len: huge.len() }
    );
}

fn value_larger_than_a_secret_is_not_sealed(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    assert_eq!(
        seal(&big, Scope::Strict, AT, &[key.public().clone()]).unwrap_err(),
        SealError::TooLarge { len: big.len() }
    );
}

fn scope_announced_in_the_header_must_match_the_binding(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let ring = Keyring::from_keys([key.clone()]);
    // A plaintext bound to cluster scope, announced as strict.
    let mut plain = b"coffer.dev/v1\nscope: cluster\nkey: password\npad: ".to_vec();
    plain.resize(253, b'.');
    plain.extend_from_slice(b"\n\nx");
    let sealed = envelope::seal_plaintext(&plain, Scope::Strict, &[key.public().clone()]).unwrap();
    assert_eq!(
        open(&sealed, AT, &ring).unwrap_err(),
        OpenError::Malformed("the scope in the age header disagrees with the binding header")
    );
}

fn scope_and_size_bucket_are_readable_without_a_key(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let sealed = seal(&[1u8; 300], Scope::Namespace, AT, &[key.public().clone()]).unwrap();
    let (env, _) = envelope::inspect(&sealed).unwrap();
    assert_eq!(env.scope, Scope::Namespace);
    assert_eq!(env.size_bucket(), 512);
    assert_eq!(env.key_ids, vec![key.id()]);
}

fn value_without_a_key_id_stanza_is_refused(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let ring = Keyring::from_keys([key.clone()]);
    // A plain age ciphertext, as `age -r` would write it.
    let enc = age::Encryptor::with_recipients(std::iter::once(
        key.public().recipient() as &dyn age::Recipient
    ))
    .unwrap();
    let mut out = vec![];
    let mut w = enc.wrap_output(&mut out).unwrap();
    std::io::Write::write_all(&mut w, b"x").unwrap();
    w.finish().unwrap();
    assert_eq!(
        open(&STANDARD.encode(&out), AT, &ring).unwrap_err(),
        OpenError::NoKeyId
    );
}

fn invalid_names_are_refused_when_sealing(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let bad = Location {
        namespace: "Shop\n",
        ..AT
    };
    assert!(matches!(
        seal(b"v", Scope::Strict, bad, &[key.public().clone()]),
        Err(SealError::InvalidName {
            what: "namespace",
            ..
        })
    ));
}

fn ciphertext_length_shows_only_a_bucket(kind: KeyKind) {
    let key = SecretKey::generate_kind(kind);
    let r = [key.public().clone()];
    // The payload (after the header's MAC line) is nonce + padded plaintext
    // + tag: the same for a 1-byte and a 100-byte value.
    let payload_len = |value: &[u8]| {
        let bytes = STANDARD
            .decode(seal(value, Scope::Strict, AT, &r).unwrap())
            .unwrap();
        let mac_line = bytes.windows(5).position(|w| w == b"\n--- ").unwrap() + 1;
        let end = mac_line + bytes[mac_line..].iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes.len() - end
    };
    assert_eq!(payload_len(b"x"), 16 + 256 + 16);
    assert_eq!(payload_len(&[b'y'; 100]), 16 + 256 + 16);
    assert_eq!(payload_len(&[b'y'; 300]), 16 + 512 + 16);
}

fn resealing_keeps_the_binding_and_moves_to_the_new_key(kind: KeyKind) {
    let (_, ring, sealed) = setup(kind);
    let opened = envelope::open_unchecked(&sealed, &ring).unwrap();
    let new_key = SecretKey::generate_kind(kind);
    let resealed = envelope::reseal(&opened, &[new_key.public().clone()]).unwrap();
    let new_ring = Keyring::from_keys([new_key.clone()]);
    assert_eq!(
        open(&resealed, AT, &new_ring).unwrap().as_slice(),
        b"hunter2"
    );
    assert!(
        open(
            &resealed,
            Location {
                name: "other",
                ..AT
            },
            &new_ring
        )
        .is_err()
    );
    assert_eq!(
        envelope::inspect(&resealed).unwrap().0.key_ids,
        vec![new_key.id()]
    );
}

/// One `#[test]` per case and key kind, in modules named after the kind.
macro_rules! for_each_kind {
    ($($case:ident),* $(,)?) => {
        mod x25519 {
            $(#[test]
            fn $case() {
                super::$case(coffer_format::key::KeyKind::X25519)
            })*
        }
        mod mlkem768x25519 {
            $(#[test]
            fn $case() {
                super::$case(coffer_format::key::KeyKind::MlKem768X25519)
            })*
        }
    };
}

for_each_kind!(
    value_opens_where_it_was_sealed,
    value_moved_to_other_namespace_is_refused,
    value_under_other_name_is_refused,
    value_under_other_item_key_is_refused,
    namespace_scoped_value_opens_under_any_name_but_not_elsewhere,
    cluster_scoped_value_opens_anywhere_under_its_item_key,
    any_flipped_bit_is_refused,
    flipped_payload_byte_is_reported_as_tampering,
    truncated_at_every_length_is_refused,
    value_sealed_to_a_key_not_in_the_ring_names_that_key,
    value_sealed_to_a_retired_key_says_so,
    unknown_format_version_is_refused,
    plaintext_that_is_not_a_coffer_value_is_refused,
    unpadded_plaintext_is_refused,
    trailing_bytes_are_refused,
    non_canonical_base64_is_refused,
    more_stanzas_than_the_cap_are_refused,
    oversized_input_is_refused_before_decoding,
    value_larger_than_a_secret_is_not_sealed,
    scope_announced_in_the_header_must_match_the_binding,
    scope_and_size_bucket_are_readable_without_a_key,
    value_without_a_key_id_stanza_is_refused,
    invalid_names_are_refused_when_sealing,
    ciphertext_length_shows_only_a_bucket,
    resealing_keeps_the_binding_and_moves_to_the_new_key,
);
