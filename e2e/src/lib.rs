//! End-to-end suites of Timedeal.
//!
//! `tests/cluster.rs` checks the CRD and the sample deals against a real API server whenever
//! `KUBECONFIG` reaches one (see `e2e/README.md`); everything else in the workspace runs without
//! a cluster.
