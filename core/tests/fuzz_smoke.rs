//! A stable-toolchain run of the fuzz targets' properties (the real fuzzing
//! is `cargo +nightly fuzz run`, see docs/development.md): arbitrary and
//! mutated inputs to the value parser and the manifest reader return an
//! error, never panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::manifest::read_secrets;
use coffer_format::{Keyring, Location, key::parse_identity_file, open};
use proptest::prelude::*;

fn ring() -> Keyring {
    Keyring::from_keys(
        parse_identity_file(include_str!("../../format/tests/vectors/identity.txt")).unwrap(),
    )
}

const AT: Location<'static> = Location {
    namespace: "shop",
    name: "db",
    key: "password",
};

fn valid() -> Vec<u8> {
    let v: Vec<serde_json::Value> =
        serde_saphyr::from_str(include_str!("../../format/tests/vectors/vectors.yaml")).unwrap();
    STANDARD.decode(v[0]["sealed"].as_str().unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics_the_value_parser(s in ".{0,600}") {
        let _ = open(&s, AT, &ring());
    }

    #[test]
    fn mutated_ciphertexts_are_refused(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut bytes = valid();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            if bytes[i] == b { continue; }
            bytes[i] = b;
        }
        if bytes != valid() {
            prop_assert!(open(&STANDARD.encode(&bytes), AT, &ring()).is_err());
        }
    }

    #[test]
    fn arbitrary_yaml_never_panics_the_manifest_reader(s in "(kind: Secret\n|metadata:\n|  name: [a-z]{1,3}\n|data:\n|stringData:\n|  [a-z]: [A-Za-z0-9+/=]{0,8}\n|---\n|items:\n|- |\\{|\\}|\\[|\\]|&a |\\*a|!!binary |[ -~]{0,10}\n){0,30}") {
        let _ = read_secrets(&s);
    }
}
