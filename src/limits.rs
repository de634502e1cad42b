//! Limits that keep hostile input from exhausting the machine: how far YAML aliases may
//! expand, and how much work one template render may do.
//!
//! The values are set once per process from the command line (`lib::run`) before any input is
//! read; library callers that set nothing get the defaults. They are limits, not behaviour:
//! a render that stays within them produces the same bytes whatever they are set to.

use std::sync::OnceLock;

/// Resource limits for reading YAML and rendering templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// YAML events that aliases (`*name`) and merge keys (`<<`) may replay in one file, at
    /// least; a larger file gets four per byte. Guards against alias bombs ("billion laughs").
    pub yaml_alias_events: usize,
    /// Fuel for one template render (about one unit per template instruction), so that a
    /// runaway loop stops with an error instead of hanging CI.
    pub template_fuel: u64,
}

/// Flag and environment variable names, for hints.
pub const YAML_ALIAS_FLAG: &str = "--yaml-alias-limit";
pub const TEMPLATE_FUEL_FLAG: &str = "--template-fuel";

impl Default for Limits {
    fn default() -> Self {
        Limits {
            yaml_alias_events: 1_000_000,
            // The largest shipped template uses a few thousand units per release.
            template_fuel: 10_000_000,
        }
    }
}

static LIMITS: OnceLock<Limits> = OnceLock::new();

/// Sets the process's limits; only the first call has an effect.
pub fn set(limits: Limits) {
    let _ = LIMITS.set(limits);
}

/// The process's limits (the defaults when none were set).
pub fn get() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}
