//! Evaluating one policy file on one object, under a time and a memory bound.
//!
//! A file is compiled once to regorus's bytecode VM (RVM), which evaluates an object several
//! times faster than the tree-walking interpreter and takes new `data` per object without
//! re-analysing the policy. The few constructs the RVM compiler does not support yet (`with`,
//! `walk` loops, some partial object rules) make that file fall back to the interpreter, which
//! gives the same results, only slower.
//!
//! Both are bounded by regorus itself, so a runaway evaluation stops where it is instead of
//! running on in the background: a wall-clock limit checked between instructions, and a
//! memory bound from regorus's allocator accounting (per evaluation on the VM; for the
//! interpreter, a process-wide ceiling set while policies run). A single builtin call (say
//! `numbers.range(1, 1e9)`) is one instruction and can overshoot before the next check.
//!
//! This module must not know about files, objects' paths or findings: it turns (input, data)
//! into rule values or a failure.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

use regorus::rvm::program::Program;
use regorus::rvm::vm::{RegoVM, VmError};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{LimitError, MemoryBudgetConfig, Value};

/// How long and how much memory one evaluation (one policy file on one object) may take.
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

/// A policy file made ready to evaluate: shared by every thread, never mutated.
pub struct Prepared {
    /// `data.main.deny`, ... : the conftest rules the file declares.
    pub rules: Vec<String>,
    kind: Kind,
}

enum Kind {
    Vm(Arc<Program>),
    /// Sources and data documents loaded, not yet given the per-object `data.kairo`.
    Interpreter(regorus::Engine),
}

/// An engine with strict builtin errors: a builtin that fails (a bad regex, `units.parse` of
/// garbage) is an error to report, not a silently undefined rule.
pub fn engine() -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_strict_builtin_errors(true);
    engine
}

impl Prepared {
    /// Compiles `engine` (sources of one file and its libraries, no data) for `rules`.
    pub fn new(mut engine: regorus::Engine, rules: Vec<String>) -> Result<Prepared, String> {
        let Some(first) = rules.first() else {
            return Err("no rules to evaluate".into());
        };
        let entries: Vec<&str> = rules.iter().map(String::as_str).collect();
        let vm = engine
            .clone()
            .compile_with_entrypoint(&first.as_str().into())
            .map_err(|e| e.to_string())
            .and_then(|compiled| {
                regorus::languages::rego::compiler::Compiler::compile_from_policy(
                    &compiled, &entries,
                )
                .map_err(|e| e.to_string())
            });
        let kind = match vm {
            Ok(program) => Kind::Vm(program),
            Err(e) => {
                tracing::debug!(error = %e, "the RVM cannot compile this policy; using the interpreter");
                // Prepare it now so that each thread's clone starts analysed.
                engine.set_input(Value::new_object());
                engine.eval_rule(first.clone()).map_err(|e| e.to_string())?;
                Kind::Interpreter(engine)
            }
        };
        Ok(Prepared { rules, kind })
    }

    pub fn uses_interpreter(&self) -> bool {
        matches!(self.kind, Kind::Interpreter(_))
    }

    /// A per-thread evaluator.
    pub fn evaluator(&self, limits: Limits) -> Evaluator {
        let timer = ExecutionTimerConfig {
            limit: limits.timeout,
            // Reading the clock every 64 instructions costs little and overshoots by microseconds.
            check_interval: NonZeroU32::new(64).expect("non-zero"),
        };
        match &self.kind {
            Kind::Vm(program) => {
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                vm.set_strict_builtin_errors(true);
                // The timer and the memory budget bound an evaluation; the instruction count
                // (25,000 by default) would only reject legitimate policies on large objects.
                vm.set_max_instructions(usize::MAX);
                vm.set_execution_timer_config(Some(timer));
                vm.set_memory_budget_config(Some(MemoryBudgetConfig {
                    limit: NonZeroU64::new(limits.memory.max(1)).expect("non-zero"),
                }));
                Evaluator::Vm(Box::new(vm))
            }
            Kind::Interpreter(engine) => {
                let mut engine = engine.clone();
                engine.set_execution_timer_config(timer);
                Evaluator::Interpreter(Box::new(engine))
            }
        }
    }
}

/// The interpreter's errors are `anyhow` errors; a limit keeps its type inside.
macro_rules! interpreter_failure {
    () => {
        |e| match e.downcast_ref::<LimitError>() {
            Some(LimitError::TimeLimitExceeded { .. }) => Failure::Time,
            Some(LimitError::MemoryLimitExceeded { .. }) => Failure::Memory,
            _ => Failure::Error(e.to_string()),
        }
    };
}

pub enum Evaluator {
    Vm(Box<RegoVM>),
    Interpreter(Box<regorus::Engine>),
}

impl Evaluator {
    /// Evaluates every rule of the file on `input` with `data`; undefined rules are left out.
    pub fn eval(
        &mut self,
        rules: &[String],
        input: &Value,
        data: &Value,
    ) -> Result<Vec<(usize, Value)>, Failure> {
        let mut out = Vec::new();
        match self {
            Evaluator::Vm(vm) => {
                vm.set_data(data.clone()).map_err(vm_failure)?;
                vm.set_input(input.clone());
                for i in 0..rules.len() {
                    let value = vm.execute_entry_point_by_index(i).map_err(vm_failure)?;
                    if value != Value::Undefined {
                        out.push((i, value));
                    }
                }
            }
            Evaluator::Interpreter(engine) => {
                engine.clear_data();
                engine
                    .add_data(data.clone())
                    .map_err(interpreter_failure!())?;
                engine.set_input(input.clone());
                for (i, rule) in rules.iter().enumerate() {
                    let value = engine
                        .eval_rule(rule.clone())
                        .map_err(interpreter_failure!())?;
                    if value != Value::Undefined {
                        out.push((i, value));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn vm_failure(e: VmError) -> Failure {
    match e {
        VmError::TimeLimitExceeded { .. } => Failure::Time,
        VmError::MemoryBudgetExceeded { .. } | VmError::MemoryLimitExceeded { .. } => {
            Failure::Memory
        }
        other => Failure::Error(other.to_string()),
    }
}

/// Bounds the interpreter's memory while it evaluates: regorus checks a process-wide ceiling,
/// so the ceiling is what kairo holds now plus `memory` per evaluating thread. Dropping the
/// guard lifts it.
pub struct InterpreterCeiling;

impl InterpreterCeiling {
    pub fn set(memory: u64, threads: usize) -> InterpreterCeiling {
        let now = regorus_mimalloc::global_allocation_stats_snapshot().allocated;
        regorus::set_global_memory_limit(Some(
            now.saturating_add(memory.saturating_mul(threads as u64)),
        ));
        InterpreterCeiling
    }
}

impl Drop for InterpreterCeiling {
    fn drop(&mut self) {
        regorus::set_global_memory_limit(None);
    }
}
