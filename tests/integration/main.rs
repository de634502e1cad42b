//! kairo's integration tests: one binary, one module per capability.

mod support;

mod bump;
mod cli;
mod diff;
mod golden;
mod platform;
mod policy;
mod quantity;
mod render;
mod validation;
