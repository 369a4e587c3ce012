//! Test support (filled in by the envtest work).
