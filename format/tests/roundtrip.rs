//! Property: any value, any binding, 1–5 recipients of any mix of key
//! kinds (X25519, post-quantum mlkem768x25519) round-trips, and every
//! recipient's key opens it alone.

use coffer_format::key::KeyKind;
use coffer_format::{Keyring, Location, Scope, SecretKey, envelope, open, seal};
use proptest::prelude::*;

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::Strict),
        Just(Scope::Namespace),
        Just(Scope::Cluster)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_value_any_binding_round_trips(
        value in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            proptest::collection::vec(any::<u8>(), 15_000..70_000),
        ],
        scope in scope(),
        namespace in "[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?",
        name in "[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?",
        key in "[-._a-zA-Z0-9]{1,60}",
        kinds in proptest::collection::vec(
            prop_oneof![Just(KeyKind::X25519), Just(KeyKind::MlKem768X25519)],
            1..=5,
        ),
    ) {
        let keys: Vec<SecretKey> = kinds.iter().map(|k| SecretKey::generate_kind(*k)).collect();
        let publics: Vec<_> = keys.iter().map(|k| k.public().clone()).collect();
        let at = Location { namespace: &namespace, name: &name, key: &key };
        let sealed = seal(&value, scope, at, &publics).unwrap();
        let (env, _) = envelope::inspect(&sealed).unwrap();
        prop_assert_eq!(&env.key_ids, &keys.iter().map(|k| k.id()).collect::<Vec<_>>());
        prop_assert_eq!(&env.key_kinds, &kinds);
        prop_assert_eq!(env.post_quantum(), kinds.iter().all(|k| k.is_post_quantum()));
        for k in &keys {
            let ring = Keyring::from_keys([k.clone()]);
            let opened = open(&sealed, at, &ring).unwrap();
            prop_assert_eq!(opened.as_slice(), value.as_slice());
        }
    }
}
