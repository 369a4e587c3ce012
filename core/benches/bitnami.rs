//! Opening one bitnami value (RSA-4096 OAEP + AES-256-GCM, aws-lc-rs) with
//! 1 and 3 imported keys: bitnami values carry no key id, so each key of the
//! right size may cost one RSA private-key operation; and converting one
//! value to Coffer's format.
//! `cargo bench -p coffer-core --features bitnami,test-util --bench bitnami`.

use std::hint::black_box;

use coffer_core::bitnami::{At, BitnamiKey, BitnamiScope, open, seal_like_kubeseal};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const AT: At<'static> = At {
    namespace: "shop",
    name: "db",
    scope: BitnamiScope::Strict,
};

fn bitnami(c: &mut Criterion) {
    let keys: Vec<BitnamiKey> = (0..3).map(|_| BitnamiKey::generate(4096)).collect();
    let mut g = c.benchmark_group("bitnami_open");
    g.sample_size(20);
    for n in [1usize, 3] {
        // Sealed to the last key tried: the worst case.
        let value = seal_like_kubeseal(
            &keys[n - 1].public_der(),
            &[7u8; 32],
            AT.scope,
            AT.namespace,
            AT.name,
        );
        g.bench_with_input(BenchmarkId::new("32B", format!("{n}-keys")), &(), |b, _| {
            b.iter(|| open(black_box(&value), AT, &keys[..n]).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bitnami);
criterion_main!(benches);
