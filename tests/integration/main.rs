//! kairo's integration tests: one binary, one module per capability.

mod support;

mod bump;
mod cli;
mod diff;
mod hostile;
mod golden;
mod policy;
mod quantity;
mod render;
mod validation;
