//! The cost model: dollars per million orders at AWS list prices, from the figures this run measured (warm
//! durations and CPU per invocation of each function through the runtime API, log bytes per invocation,
//! DynamoDB capacity units per lifecycle, Secrets Manager calls per cold start). Prices are us-east-1 list
//! prices as the bench's authors knew them (stated in [`PRICES_AS_OF`]); what is assumed rather than measured
//! is named in the row. See docs/benchmarks.md §8.

use crate::table::{Row, row};

/// When and where the prices below were read.
pub const PRICES_AS_OF: &str = "us-east-1 list prices as known on 2026-12-01 (unchanged since the 2024-11 DynamoDB on-demand cut)";

/// Lambda on arm64 (Graviton), per GB-second of billed duration (1 ms granularity).
const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
/// Lambda, per request.
const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
/// API Gateway HTTP API, per request (first 300 million a month).
const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
/// DynamoDB on-demand, per write request unit and per read request unit.
const DYNAMODB_WRU: f64 = 0.625 / 1e6;
const DYNAMODB_RRU: f64 = 0.125 / 1e6;
/// Secrets Manager, per API call ($0.05 per 10,000).
const SECRETS_CALL: f64 = 0.05 / 10_000.0;
/// CloudWatch Logs ingestion (standard class), per GB.
const LOGS_GB: f64 = 0.50;
/// The platform's own log lines per invocation (START, END, REPORT in JSON format), bytes: assumed.
const PLATFORM_LOG_BYTES: f64 = 450.0;
/// CloudWatch custom metrics, per metric per month (first 10,000).
const METRIC_MONTH: f64 = 0.30;
/// Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB.
const MB_PER_VCPU: f64 = 1769.0;

/// The model's assumptions about traffic (not measured here): named in the table.
pub const ORDERS_PER_MONTH: f64 = 30e6;
/// Share of invocations that are cold starts (each pays its init duration and its secret reads).
const COLD_START_SHARE: f64 = 0.01;
/// Warm containers per function, each re-reading its cached secrets once per TTL.
const CONTAINERS_PER_FUNCTION: f64 = 2.0;
const SECRET_TTL_SECS: f64 = 300.0;
/// Custom metric series the functions emit (metric name × dimension set), from `recharge_lambda::metrics`.
const METRIC_SERIES: f64 = 40.0;

/// One function's share of an order, as measured.
#[derive(Debug, Clone)]
pub struct FunctionUse {
    pub name: &'static str,
    /// Invocations of this function per order.
    pub per_order: f64,
    /// Median duration of a warm invocation here (a whole core, loopback servers), ms.
    pub wall_ms: f64,
    /// CPU time (user + system) per warm invocation, ms.
    pub cpu_ms: f64,
    /// Bytes the function logs per invocation.
    pub log_bytes: f64,
    /// Median init duration, ms.
    pub init_ms: f64,
    /// Secrets Manager calls of one cold start.
    pub init_secret_calls: f64,
    /// Requests through API Gateway per invocation (1 for the HTTP functions, 0 for scheduled ones).
    pub http: f64,
    /// Peak resident memory measured after the function's load (`VmHWM`), MiB; 0 when not measured.
    pub peak_mib: f64,
}

impl FunctionUse {
    /// The modelled duration at `mb`: the wait (wall minus CPU, where the CPU was a whole core) plus the CPU
    /// time stretched by the memory's share of a vCPU. Lambda bills whole milliseconds.
    pub fn duration_ms(&self, mb: f64) -> f64 {
        let share = (mb / MB_PER_VCPU).min(1.0);
        let wait = (self.wall_ms - self.cpu_ms).max(0.0);
        (wait + self.cpu_ms / share).ceil()
    }
}

/// Everything the model reads.
#[derive(Debug, Clone)]
pub struct CostInputs {
    pub functions: Vec<FunctionUse>,
    /// DynamoDB write and read units per order.
    pub write_units: f64,
    pub read_units: f64,
}

/// A function may run at 128 MB only with this much of it to spare over its measured peak (the allocator,
/// a larger answer, a longer day's reconciliation).
const HEADROOM_AT_128: f64 = 0.5;
/// How much slower than at 256 MB a merchant-facing function may answer at 128 MB, ms.
const SLOWER_AT_128_MS: f64 = 50.0;

impl FunctionUse {
    /// Its compute per order at `mb`, dollars: warm duration and, for the cold share, its init.
    fn compute(&self, mb: f64) -> f64 {
        let warm = self.duration_ms(mb) / 1000.0 * mb / 1024.0 * LAMBDA_GB_SECOND;
        // A cold start is billed its init too (Lambda bills the INIT phase), taken as measured here whatever
        // the size (an assumption: init is mostly waiting on the AWS calls).
        let init = self.init_ms.ceil() / 1000.0 * mb / 1024.0 * LAMBDA_GB_SECOND;
        self.per_order * (warm + COLD_START_SHARE * init)
    }

    /// The memory size for this function: 128 MB where it is the cheaper, its measured peak leaves
    /// [`HEADROOM_AT_128`] of it free, and (a merchant-facing function) it answers at most
    /// [`SLOWER_AT_128_MS`] slower; otherwise 256 MB. With the reason.
    pub fn memory_choice(&self) -> (u32, String) {
        let slower = self.duration_ms(128.0) - self.duration_ms(256.0);
        if self.peak_mib <= 0.0 {
            return (256, "peak memory not measured".to_owned());
        }
        if self.peak_mib > 128.0 * (1.0 - HEADROOM_AT_128) {
            return (
                256,
                format!("peak {:.1} MiB leaves under half of 128 MB", self.peak_mib),
            );
        }
        if self.http > 0.0 && slower > SLOWER_AT_128_MS {
            return (256, format!("{slower:.0} ms slower at 128 MB"));
        }
        if self.compute(128.0) > self.compute(256.0) {
            return (256, "dearer at 128 MB".to_owned());
        }
        (
            128,
            format!(
                "cheaper, peak {:.1} MiB, {slower:.0} ms slower",
                self.peak_mib
            ),
        )
    }
}

fn per_million(dollars_per_order: f64) -> f64 {
    dollars_per_order * 1e6
}

/// The table rows: each component at 128 MB and 256 MB, each function's memory size chosen from them, and
/// the totals at 128 MB, at 256 MB and at the sizes chosen.
pub fn rows(inputs: &CostInputs) -> (Vec<Row>, Vec<(&'static str, u32)>) {
    let sec = "cost per million orders (a lifecycle: POST, callback, notification, GET), USD";
    let mut rows = Vec::new();
    let sizes = [128.0, 256.0];
    let lambda_compute = |mb: f64| -> f64 { inputs.functions.iter().map(|f| f.compute(mb)).sum() };
    let invocations: f64 = inputs.functions.iter().map(|f| f.per_order).sum();
    let http: f64 = inputs.functions.iter().map(|f| f.per_order * f.http).sum();
    let log_bytes: f64 = inputs
        .functions
        .iter()
        .map(|f| f.per_order * (f.log_bytes + PLATFORM_LOG_BYTES))
        .sum();
    let cold_secret_calls: f64 = inputs
        .functions
        .iter()
        .map(|f| f.per_order * COLD_START_SHARE * f.init_secret_calls)
        .sum();
    // Refreshes: each warm container re-reads its secrets once per TTL, whatever the traffic.
    let refresh_calls_per_month: f64 = inputs
        .functions
        .iter()
        .map(|f| {
            f.init_secret_calls.max(1.0) * CONTAINERS_PER_FUNCTION * 30.0 * 86_400.0
                / SECRET_TTL_SECS
        })
        .sum();
    let secrets = cold_secret_calls * SECRETS_CALL
        + refresh_calls_per_month / ORDERS_PER_MONTH * SECRETS_CALL;
    let fixed_metrics = METRIC_SERIES * METRIC_MONTH / ORDERS_PER_MONTH;
    let durations = |mb: f64| {
        inputs
            .functions
            .iter()
            .map(|f| format!("{} {:.0} ms", f.name, f.duration_ms(mb)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for mb in sizes {
        rows.push(row(
            sec,
            &format!("Lambda GB-seconds at {mb:.0} MB (arm64, $0.0000133334/GB-s)"),
            format!(
                "${:.3} (modelled warm durations: {}; CPU per invocation: {})",
                per_million(lambda_compute(mb)),
                durations(mb),
                inputs
                    .functions
                    .iter()
                    .map(|f| format!("{} {:.2} ms", f.name, f.cpu_ms))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "",
            "",
        ));
    }
    let common = [
        (
            format!("Lambda requests ({invocations:.1} per order, $0.20/M)"),
            invocations * LAMBDA_REQUEST,
        ),
        (
            format!("API Gateway HTTP API ({http:.1} requests per order, $1.00/M)"),
            http * HTTP_API_REQUEST,
        ),
        (
            format!(
                "DynamoDB on-demand writes ({:.1} WRU per order, $0.625/M)",
                inputs.write_units
            ),
            inputs.write_units * DYNAMODB_WRU,
        ),
        (
            format!(
                "DynamoDB on-demand reads ({:.1} RRU per order, $0.125/M)",
                inputs.read_units
            ),
            inputs.read_units * DYNAMODB_RRU,
        ),
        (
            format!(
                "Secrets Manager ($0.05/10k calls; {:.0}% cold starts, {CONTAINERS_PER_FUNCTION:.0} containers per function refreshing every {SECRET_TTL_SECS:.0} s, {:.0}M orders/month)",
                COLD_START_SHARE * 100.0,
                ORDERS_PER_MONTH / 1e6
            ),
            secrets,
        ),
        (
            format!(
                "CloudWatch Logs ingestion ({:.0} bytes per order incl. {PLATFORM_LOG_BYTES:.0} platform bytes per invocation, $0.50/GB)",
                log_bytes
            ),
            log_bytes / 1e9 * LOGS_GB,
        ),
        (
            format!(
                "CloudWatch metrics ({METRIC_SERIES:.0} custom series at $0.30/month over {:.0}M orders/month; EMF lines are in the logs above)",
                ORDERS_PER_MONTH / 1e6
            ),
            fixed_metrics,
        ),
    ];
    let common_total: f64 = common.iter().map(|(_, d)| d).sum();
    for (name, dollars) in common {
        rows.push(row(
            sec,
            &name,
            format!("${:.3}", per_million(dollars)),
            "",
            "",
        ));
    }
    let chosen: Vec<(&'static str, u32)> = inputs
        .functions
        .iter()
        .map(|f| {
            let (mb, why) = f.memory_choice();
            rows.push(row(
                sec,
                &format!("memory size of {}", f.name),
                format!(
                    "128 MB: ${:.3}, {:.0} ms; 256 MB: ${:.3}, {:.0} ms; peak {:.1} MiB",
                    per_million(f.compute(128.0)),
                    f.duration_ms(128.0),
                    per_million(f.compute(256.0)),
                    f.duration_ms(256.0),
                    f.peak_mib
                ),
                "128 MB if cheaper, peak <= 64 MiB, and (HTTP) <= 50 ms slower",
                &format!("chosen {mb} MB ({why})"),
            ));
            (f.name, mb)
        })
        .collect();
    let at_chosen: f64 = inputs
        .functions
        .iter()
        .zip(&chosen)
        .map(|(f, (_, mb))| f.compute(f64::from(*mb)))
        .sum();
    for mb in sizes {
        rows.push(row(
            sec,
            &format!("total, every function at {mb:.0} MB"),
            format!(
                "${:.2} per million orders",
                per_million(lambda_compute(mb) + common_total)
            ),
            "",
            "",
        ));
    }
    rows.push(row(
        sec,
        "total at the sizes chosen (infra/template.yaml MemorySize)",
        format!(
            "${:.2} per million orders",
            per_million(at_chosen + common_total)
        ),
        "",
        "",
    ));
    rows.push(row(sec, "prices", PRICES_AS_OF.to_owned(), "", ""));
    (rows, chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(wall_ms: f64, cpu_ms: f64) -> FunctionUse {
        FunctionUse {
            name: "submit-order",
            per_order: 1.0,
            wall_ms,
            cpu_ms,
            log_bytes: 500.0,
            init_ms: 10.0,
            init_secret_calls: 1.0,
            http: 1.0,
            peak_mib: 20.0,
        }
    }

    #[test]
    fn a_smaller_memory_stretches_only_the_cpu_part_of_a_duration() {
        let f = function(10.0, 2.0);
        // 8 ms of waiting stay; 2 ms of CPU at 256/1769 of a vCPU become 13.8 ms.
        assert_eq!(
            f.duration_ms(256.0),
            (8.0_f64 + 2.0 * 1769.0 / 256.0).ceil()
        );
        assert!(f.duration_ms(128.0) > f.duration_ms(256.0));
        assert_eq!(f.duration_ms(4096.0), 10.0);
    }

    #[test]
    fn the_table_prices_each_component_and_chooses_a_size() {
        let inputs = CostInputs {
            functions: vec![function(10.0, 1.0)],
            write_units: 4.0,
            read_units: 2.0,
        };
        let (rows, chosen) = rows(&inputs);
        let dynamo = rows
            .iter()
            .find(|r| r.figure.starts_with("DynamoDB on-demand writes"))
            .map(|r| r.measured.clone());
        // 4 units at $0.625 per million units: $2.50 per million orders.
        assert_eq!(dynamo.as_deref(), Some("$2.500"));
        // 1 ms of CPU: 14 ms at 128 MB against 7 at 256, cheaper, and a 20 MiB peak.
        assert_eq!(chosen, [("submit-order", 128)]);
        assert_eq!(
            rows.iter()
                .filter(|r| r.verdict.starts_with("chosen"))
                .count(),
            1
        );
    }

    #[test]
    fn a_function_stays_at_256_mb_when_128_is_too_slow_or_too_tight() {
        // 10 ms of CPU: 139 ms at 128 MB, 70 at 256: 69 ms slower for the merchant.
        assert_eq!(function(10.0, 10.0).memory_choice().0, 256);
        // The same CPU in a scheduled function: nobody waits on it, and 128 MB is cheaper.
        let scheduled = FunctionUse {
            http: 0.0,
            ..function(10.0, 10.0)
        };
        assert_eq!(scheduled.memory_choice().0, 128);
        // A peak of 70 MiB leaves less than half of 128 MB.
        let big = FunctionUse {
            peak_mib: 70.0,
            ..function(10.0, 1.0)
        };
        assert_eq!(big.memory_choice().0, 256);
        // Unmeasured: the safe size.
        let unknown = FunctionUse {
            peak_mib: 0.0,
            ..function(10.0, 1.0)
        };
        assert_eq!(unknown.memory_choice().0, 256);
        // Mostly waiting: 128 MB halves the GB-seconds.
        let waiting = function(40.0, 1.0);
        assert!(waiting.compute(128.0) < waiting.compute(256.0));
    }
}
