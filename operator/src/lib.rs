//! The Timedeal operator: turns each approved TimeDeal into an isolated, autoscaled storefront
//! that follows the deal's clock.
//!
//! Desired state is built by pure functions: [`phase`] (the phase and scale from the clock),
//! [`conditions`] (Ready, Progressing, Degraded) and [`resources`] (every child object).

pub mod conditions;
pub mod phase;
pub mod resources;
