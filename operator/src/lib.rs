//! The Timedeal operator: turns each approved TimeDeal into an isolated, autoscaled storefront
//! that follows the deal's clock.
//!
//! Desired state is built by pure functions: [`phase`] (the phase and scale from the clock),
//! [`conditions`] (Ready, Progressing, Degraded, Reconciled), [`status`] (the next status),
//! [`pinning`] (what a deal's pods run across operator upgrades), [`health`] (why pods do not
//! serve) and [`resources`] (every child object). [`reconcile`] is the loop that applies them; [`run`] wires it to a
//! cluster with leader election, metrics and health endpoints.

pub mod apply;
pub mod cache;
pub use timedeal_api::clock;
pub mod company;
pub mod conditions;
pub mod database;
pub mod delivery;
pub mod error;
pub mod figures;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod phase;
pub mod pinning;
pub mod portal_keys;
pub mod rbac;
pub mod reconcile;
pub mod render;
pub mod resources;
pub mod run;
pub mod status;
pub mod yaml;
