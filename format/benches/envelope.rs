//! Seal and open cost per value. `cargo bench -p coffer-core`.

use std::hint::black_box;

use coffer_format::{Keyring, Location, Scope, SecretKey, open, seal};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const AT: Location<'static> = Location {
    namespace: "shop",
    name: "db",
    key: "password",
};

fn bench(c: &mut Criterion) {
    let keys: Vec<SecretKey> = (0..24).map(|_| SecretKey::generate()).collect();
    let mut g = c.benchmark_group("seal");
    for size in [32usize, 4096] {
        for n in [1usize, 3] {
            let value = vec![7u8; size];
            let r: Vec<_> = keys[..n].iter().map(|k| k.public().clone()).collect();
            g.bench_with_input(
                BenchmarkId::new(format!("{size}B"), format!("{n}-recipients")),
                &(),
                |b, _| b.iter(|| seal(black_box(&value), Scope::Strict, AT, &r).unwrap()),
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("open");
    for size in [32usize, 4096] {
        for n in [1usize, 3] {
            let value = vec![7u8; size];
            let r: Vec<_> = keys[..n].iter().map(|k| k.public().clone()).collect();
            let sealed = seal(&value, Scope::Strict, AT, &r).unwrap();
            // The ring holds the last recipient's key: the worst case for
            // an implementation that tries stanzas in order.
            let ring = Keyring::from_keys([keys[n - 1].clone()]);
            g.bench_with_input(
                BenchmarkId::new(format!("{size}B"), format!("{n}-recipients")),
                &(),
                |b, _| b.iter(|| open(black_box(&sealed), AT, &ring).unwrap()),
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("open-ring");
    let key = keys[23].clone();
    let sealed = seal(&[7u8; 32], Scope::Strict, AT, &[key.public().clone()]).unwrap();
    for ring_size in [1usize, 24] {
        let ring = Keyring::from_keys(keys[24 - ring_size..].iter().cloned());
        g.bench_with_input(
            BenchmarkId::new("32B", format!("{ring_size}-keys")),
            &(),
            |b, _| b.iter(|| open(black_box(&sealed), AT, &ring).unwrap()),
        );
    }
    // For comparison: what opening costs without key ids, trying each of 24
    // identities in turn as a plain age decryptor does.
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sealed).unwrap();
    // age's own X25519 identities for the same keys.
    let ids: Vec<age::x25519::Identity> = keys
        .iter()
        .map(|k| k.to_secret_string().parse().unwrap())
        .collect();
    g.bench_function("32B/24-keys-trial-decryption-without-ids", |b| {
        b.iter(|| {
            let d = age::Decryptor::new_buffered(black_box(&bytes[..])).unwrap();
            let mut r = d
                .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
                .unwrap();
            let mut out = vec![];
            std::io::Read::read_to_end(&mut r, &mut out).unwrap();
            out
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
