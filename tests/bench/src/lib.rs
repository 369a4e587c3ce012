//! What Coffer's benchmarks share: `bench-controller` (the controller's
//! throughput and cost), `bench-compare` (Coffer and bitnami sealed-secrets
//! side by side) and `abuse-http` (the controller under abusive HTTP
//! clients) are three binaries over these modules. Each runs against a real
//! kube-apiserver from `tests/envtest` and is driven by a script:
//! `tests/bench/controller`, `tests/bench/compare`, `tests/abuse/http`.
//! `openbao` starts the OpenBao dev server of `bench-controller --kek-openbao`.

pub mod objects;
pub mod openbao;
pub mod options;
pub mod process;
pub mod report;
