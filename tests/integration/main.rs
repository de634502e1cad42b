//! kairo's integration tests: one binary, one module per capability.

mod registry_support;
mod support;

mod bump;
mod cli;
mod diff;
mod golden;
mod policy;
mod quantity;
mod registry;
mod render;
mod validation;
