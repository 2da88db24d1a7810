//! `recharge-bench`: the benchmark table (`make bench`) and the fault campaign (`make faults`) of issue 7.
//! See docs/benchmarks.md and docs/faults.md.

pub mod cost;
pub mod faults;
pub mod lambda;
pub mod noisy;
pub mod perf;
pub mod receiver;
pub mod runtime_api;
pub mod scale;
pub mod table;
pub mod util;
