//! The portal's handlers, by what they serve.

pub mod account;
pub mod deals;
