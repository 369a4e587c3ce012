//! The controller's request bodies for `POST /v1/verify` and
//! `POST /v1/reencrypt`, through the controller's own code
//! (the controller's http module and its re-encryption): the body parsing, then what each handler
//! does with a parsed request, with the test identity as the controller's
//! only (and active) key.
//!
//! Properties: never panics; re-encryption never answers 500 (a client's
//! body is never an internal error); a re-encrypted SealedSecret keeps its
//! items, and each of its values opens with the same binding and value as
//! before, sealed only to the active key and to additional recipients whose
//! key ids the value already named; anything re-encrypted would verify.
#![no_main]

use std::collections::BTreeSet;

use coffer_controller::http::{Reject, parse_reencrypt_body, parse_verify_body};
use coffer_controller::keys::reencrypt::reencrypt_values;
use coffer_controller::reconcile::secret_types::{DEFAULT_DENY, SecretTypePolicy};
use coffer_format::envelope;
use coffer_core::transform::unseal;
use coffer_fuzz::{test_key, test_ring};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static SecretTypePolicy {
    static P: std::sync::OnceLock<SecretTypePolicy> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let deny: Vec<String> = DEFAULT_DENY.split(',').map(str::to_string).collect();
        SecretTypePolicy::new(&[], &deny)
    })
}

fuzz_target!(|data: &[u8]| {
    let ring = test_ring();
    let active = test_key().public();
    let held: BTreeSet<_> = [test_key().id()].into();

    // verify: the type policy first, then every value must open.
    if let Ok(sealed) = parse_verify_body(data) {
        let type_ = sealed
            .spec
            .template
            .as_ref()
            .and_then(|t| t.type_.as_deref());
        if policy().check(type_).is_ok() {
            let _ = unseal(&sealed.view(), ring);
        }
    }

    // reencrypt
    let Ok((sealed, extra)) = parse_reencrypt_body(data) else {
        return;
    };
    let before = sealed.clone();
    match reencrypt_values(sealed, ring, active, &held, &extra) {
        Err(e) => assert_ne!(
            Reject::from(e).status().as_u16(),
            500,
            "a request body gave an internal error"
        ),
        Ok(out) => {
            let ns = out.metadata.namespace.clone().unwrap_or_default();
            let name = out.metadata.name.clone().unwrap_or_default();
            assert!(out.status.is_none());
            assert_eq!(
                out.spec.encrypted_data.keys().collect::<Vec<_>>(),
                before.spec.encrypted_data.keys().collect::<Vec<_>>()
            );
            assert!(
                unseal(&before.view(), ring).is_ok(),
                "re-encrypted a SealedSecret that does not verify"
            );
            for (key, value) in &out.spec.encrypted_data {
                let old = envelope::open_unchecked(&before.spec.encrypted_data[key], ring)
                    .expect("the old value opened");
                let new = envelope::open_unchecked(value, ring).expect("the new value opens");
                assert_eq!(new.binding, old.binding);
                assert_eq!(new.value, old.value);
                assert!(new.binding.allows(coffer_format::Location {
                    namespace: &ns,
                    name: &name,
                    key,
                }));
                let (old_env, _) = envelope::inspect(&before.spec.encrypted_data[key]).unwrap();
                let (new_env, _) = envelope::inspect(value).unwrap();
                assert_eq!(new_env.scope, old.binding.scope);
                for id in &new_env.key_ids {
                    assert!(
                        *id == active.id()
                            || (old_env.key_ids.contains(id)
                                && extra.iter().any(|e| e.id() == *id)),
                        "re-encryption added a reader"
                    );
                }
            }
        }
    }
});
