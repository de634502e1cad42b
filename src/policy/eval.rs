//! Evaluating one policy file on one object, under a time and a memory bound.
//!
//! Each file gets one regorus engine, analysed once and cloned per thread. The per-object
//! `data.kairo` must not be added as data: any change to `data` makes regorus re-analyse the
//! whole policy on the next evaluation, which cost more than evaluating it. Instead,
//! `data.kairo.environment` and `data.kairo.service` are rules of a small `package kairo`
//! module that call a builtin reading the current thread's object context, so the engine stays
//! analysed from one object to the next.
//!
//! Builtin errors are errors (`strict_builtin_errors`), as the fail-closed rule requires.
//! (regorus's bytecode VM evaluates several times faster, but it turns any error inside a rule
//! body into an undefined rule by design, which would let a broken policy pass silently.)
//!
//! Limits are regorus's own, so a runaway evaluation stops where it is instead of running on
//! in the background: a wall-clock limit checked as the interpreter steps, and a ceiling on the
//! memory kairo holds, from regorus's allocator accounting (the allocator is process-wide, so
//! the ceiling is what kairo held when evaluation started plus the budget of each thread). A
//! single builtin call (say `numbers.range(1, 1e9)`) is one step and can overshoot before the
//! next check.
//!
//! This module must not know about files, objects' paths or findings: it turns (input,
//! context) into rule values or a failure.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{LimitError, Value};

/// How long one evaluation (one rule of one policy file on one object) may take, and how much
/// memory each evaluating thread may add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes.
    pub memory: u64,
}

impl Limits {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_MEMORY: u64 = 512 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Limits::DEFAULT_TIMEOUT,
            memory: Limits::DEFAULT_MEMORY,
        }
    }
}

/// Why an evaluation produced no result.
#[derive(Debug)]
pub enum Failure {
    Time,
    Memory,
    Error(String),
}

/// The builtin behind `data.kairo`; its name cannot clash with Rego's own (no dots allowed in
/// user functions' paths, and regorus builtins have none starting with `__kairo`).
const CONTEXT_BUILTIN: &str = "__kairo_context";
/// The module that makes `data.kairo.environment` and `data.kairo.service`.
const CONTEXT_MODULE: &str = "package kairo\n\nimport rego.v1\n\nenvironment := __kairo_context(\"environment\")\n\nservice := __kairo_context(\"service\")\n\naddon := __kairo_context(\"addon\")\n";
pub const CONTEXT_PATH: &str = "(kairo)/context.rego";

thread_local! {
    /// `data.kairo` of the object this thread evaluates.
    static CONTEXT: RefCell<Value> = const { RefCell::new(Value::Null) };
}

/// An engine with kairo's conventions: strict builtin errors (a builtin that fails, such as a
/// bad regex or `units.parse` of garbage, is an error to report, not a silently undefined
/// rule), and `data.kairo`.
pub fn engine() -> Result<regorus::Engine, String> {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(true);
    engine
        .add_extension(
            CONTEXT_BUILTIN.into(),
            1,
            Box::new(|args: Vec<Value>| -> anyhow::Result<Value> {
                let key = args.first().cloned().unwrap_or(Value::Null);
                Ok(CONTEXT.with(|c| c.borrow()[&key].clone()))
            }),
        )
        .map_err(|e| e.to_string())?;
    engine
        .add_policy(CONTEXT_PATH.into(), CONTEXT_MODULE.into())
        .map_err(|e| e.to_string())?;
    Ok(engine)
}

/// A policy file made ready to evaluate: analysed once, cloned by every thread.
pub struct Prepared {
    /// `data.main.deny`, ... : the conftest rules the file declares.
    pub rules: Vec<String>,
    engine: regorus::Engine,
}

impl Prepared {
    /// Analyses `engine` (one file, its libraries and the policies' data documents).
    pub fn new(mut engine: regorus::Engine, rules: Vec<String>) -> Result<Prepared, String> {
        // Analyses the engine, so each thread's clone starts ready, without running any of the
        // policy's own rules.
        engine.set_input(Value::new_object());
        engine
            .eval_rule("data.kairo.environment".into())
            .map_err(|e| e.to_string())?;
        Ok(Prepared { rules, engine })
    }

    /// A per-thread evaluator.
    pub fn evaluator(&self, limits: Limits) -> Evaluator {
        let mut engine = self.engine.clone();
        engine.set_execution_timer_config(ExecutionTimerConfig {
            limit: limits.timeout,
            // A clock read every 64 steps costs little and overshoots by microseconds.
            check_interval: NonZeroU32::new(64).expect("non-zero"),
        });
        Evaluator { engine }
    }
}

pub struct Evaluator {
    engine: regorus::Engine,
}

impl Evaluator {
    /// Evaluates every rule of the file on `input` with `context` as `data.kairo`; undefined
    /// rules are left out.
    pub fn eval(
        &mut self,
        rules: &[String],
        input: &Value,
        context: &Value,
    ) -> Result<Vec<(usize, Value)>, Failure> {
        CONTEXT.with(|c| *c.borrow_mut() = context.clone());
        self.engine.set_input(input.clone());
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let value = self.engine.eval_rule(rule.clone()).map_err(|e| {
                match e.downcast_ref::<LimitError>() {
                    Some(LimitError::TimeLimitExceeded { .. }) => Failure::Time,
                    Some(LimitError::MemoryLimitExceeded { .. }) => Failure::Memory,
                    _ => Failure::Error(e.to_string()),
                }
            })?;
            if value != Value::Undefined {
                out.push((i, value));
            }
        }
        Ok(out)
    }
}

/// Bounds memory while policies evaluate: regorus checks a process-wide ceiling, set to what
/// kairo holds now plus `memory` per evaluating thread, and set again by [`Ceiling::refresh`]
/// before each object's evaluation, as the render that feeds it goes on (so rendered output
/// never eats into the budget). Dropping the guard lifts it. Being process-wide, two checks
/// must not run at once in one process (the CLI never does; a daemon must run them on its one
/// rendering thread).
pub struct Ceiling {
    memory: u64,
    threads: usize,
}

impl Ceiling {
    pub fn set(memory: u64, threads: usize) -> Ceiling {
        let ceiling = Ceiling { memory, threads };
        ceiling.refresh();
        ceiling
    }

    /// Sets the ceiling again from what kairo holds now.
    pub fn refresh(&self) {
        let now = regorus_mimalloc::global_allocation_stats_snapshot().allocated;
        regorus::set_global_memory_limit(Some(
            now.saturating_add(self.memory.saturating_mul(self.threads as u64)),
        ));
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        regorus::set_global_memory_limit(None);
    }
}
