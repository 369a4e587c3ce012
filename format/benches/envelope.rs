//! Seal and open cost per value, for X25519 and post-quantum
//! (mlkem768x25519) keys. `cargo bench -p coffer-format`.

use std::hint::black_box;

use coffer_format::key::KeyKind;
use coffer_format::{Keyring, Location, Scope, SecretKey, open, seal};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const AT: Location<'static> = Location {
    namespace: "shop",
    name: "db",
    key: "password",
};

/// Seal and open a 32 B and a 4 KiB value to 1 and 3 of `keys`, in the
/// groups `seal{suffix}` and `open{suffix}`.
fn seal_and_open(c: &mut Criterion, suffix: &str, keys: &[SecretKey]) {
    let mut g = c.benchmark_group(format!("seal{suffix}"));
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

    let mut g = c.benchmark_group(format!("open{suffix}"));
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
}

fn bench(c: &mut Criterion) {
    let keys: Vec<SecretKey> = (0..24).map(|_| SecretKey::generate()).collect();
    // X25519 keys: groups `seal` and `open`.
    seal_and_open(c, "", &keys);
    // age 1.3's hybrid post-quantum keys: `seal-mlkem768x25519`, `open-…`.
    let pq: Vec<SecretKey> = (0..3)
        .map(|_| SecretKey::generate_kind(KeyKind::MlKem768X25519))
        .collect();
    seal_and_open(c, "-mlkem768x25519", &pq);

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
