//! What `recharge-local` prints when the stack is up: where it listens, the demo apps, one line per simulator,
//! and an example order that reaches this stack (with `--base` when it does not listen where `order` looks
//! first).

/// Where `recharge-local order` looks for a running stack unless told `--base`.
pub const DEFAULT_BASE: &str = "http://127.0.0.1:8080";

/// The banner for a stack at `base_url` with `sims` (provider account, simulator URL).
pub fn banner<'a>(base_url: &str, sims: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut text = format!("recharge gateway (local) at {base_url}\n");
    text.push_str("  apps: demo / demo-secret, demo2 / demo2-secret, ops / ops-secret (admin)\n");
    for (id, url) in sims {
        text.push_str(&format!("  provider {id:<14} simulator {url}\n"));
    }
    text.push_str(&format!(
        "  GET {base_url}/_local shows the accounts and the catalog\n"
    ));
    text.push_str(&format!(
        "  operator console: {base_url}/ops/console (local mode; signed as the admin app ops)\n"
    ));
    let base = if base_url.trim_end_matches('/') == DEFAULT_BASE {
        String::new()
    } else {
        format!(" --base {base_url}")
    };
    text.push_str(&format!(
        "  try: cargo run -p recharge-local -- order mobile.100 13800138000{base}\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banners_example_order_reaches_a_stack_listening_elsewhere() {
        let text = banner(
            "http://127.0.0.1:9090",
            [("wikeyun-main", "http://127.0.0.1:4000")],
        );
        assert!(
            text.contains("order mobile.100 13800138000 --base http://127.0.0.1:9090\n"),
            "{text}"
        );
        assert!(text.contains("provider wikeyun-main"), "{text}");
    }

    #[test]
    fn the_banners_example_needs_no_base_on_the_default_address() {
        let text = banner(DEFAULT_BASE, []);
        assert!(text.contains("order mobile.100 13800138000\n"), "{text}");
        assert!(!text.contains("--base"), "{text}");
    }
}
