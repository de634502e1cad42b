#![allow(clippy::disallowed_methods)] // tests drive real processes: not kairo code
//! kairo's integration tests: one binary, one module per capability.

mod kube_support;
mod lease_support;
mod registry_support;
mod support;

mod bump;
mod cli;
mod diff;
mod drift;
mod golden;
mod hostile;
mod lease;
mod platform;
mod policy;
mod quantity;
mod registry;
mod render;
mod validation;
mod watch;
