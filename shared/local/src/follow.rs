//! `recharge-local order PRODUCT ACCOUNT`: places one order as the demo merchant and follows it to the end,
//! playing the end user where carrier billing needs one (sending the SMS, entering the code).

use crate::client::{SigningClient, is_final};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What the order command needs.
#[derive(Debug, Clone)]
pub struct OrderCommand {
    pub base_url: String,
    pub app: String,
    pub secret: String,
    pub product: String,
    pub account: String,
    pub extra: Vec<(String, String)>,
    pub merchant_order_no: Option<String>,
    pub timeout: Duration,
}

/// Runs the order command, printing each step; returns the final order view.
pub async fn run(cmd: &OrderCommand) -> anyhow::Result<Value> {
    let client = SigningClient::new(&cmd.base_url, &cmd.app, &cmd.secret);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let info: Value = http
        .get(format!("{}/_local", cmd.base_url))
        .send()
        .await?
        .json()
        .await?;
    let no = cmd.merchant_order_no.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("demo-{ms}")
    });
    let mut extra: serde_json::Map<String, Value> = cmd
        .extra
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    demo_extras(&cmd.product, &cmd.account, &mut extra);
    let body = json!({"merchant_order_no": no, "product_code": cmd.product, "account": cmd.account, "extra": extra});
    println!("POST /v1/orders {body}");
    let created = client.create_order(&body).await?;
    println!("-> {} {}", created.status, created.body);
    if created.status >= 300 {
        anyhow::bail!("the order was not accepted");
    }
    let started = Instant::now();
    let mut acted = false;
    let mut last_sequence = 0;
    loop {
        let reply = client.get_order(&no).await?;
        let view = reply.body;
        let status = view["status"].as_str().unwrap_or("?").to_owned();
        let sequence = view["sequence"].as_u64().unwrap_or(0);
        if sequence != last_sequence {
            println!("   {status} (sequence {sequence}) {}", view["next_action"]);
            last_sequence = sequence;
        }
        if is_final(&status) {
            println!("final: {view}");
            return Ok(view);
        }
        if status == "action_required" && !acted {
            acted = true;
            act_as_user(&client, &http, &info, &no, &view).await?;
        }
        if started.elapsed() > cmd.timeout {
            println!(
                "still {status} after {:?}; it stays open and the sweep keeps following it",
                cmd.timeout
            );
            return Ok(view);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fills in the extras the demo products need, unless given.
fn demo_extras(product: &str, account: &str, extra: &mut serde_json::Map<String, Value>) {
    let mut default = |k: &str, v: String| {
        extra.entry(k.to_owned()).or_insert(json!(v));
    };
    if product.starts_with("electricity.") {
        default("area", "江苏".into());
        default("city", "南京".into());
        default("phone", "13800138000".into());
    }
    if product.starts_with("billing.sms") {
        // The simulator's scripts read the last four digits of the IMSI: derive it from the phone number.
        let digits: String = account.chars().filter(char::is_ascii_digit).collect();
        default("imsi", format!("4600{digits}"));
        default("imei", "860000000000001".into());
        default("iccid", "89860000000000000001".into());
    }
}

async fn act_as_user(
    client: &SigningClient,
    http: &reqwest::Client,
    info: &Value,
    no: &str,
    view: &Value,
) -> anyhow::Result<()> {
    match view["next_action"]["type"].as_str() {
        Some("enter_verification_code") => {
            let code = info["demo"]["verification_code"]
                .as_str()
                .unwrap_or("123456");
            println!("   the user enters the code {code}");
            let r = client.verify(no, code).await?;
            println!("-> {} {}", r.status, r.body);
        }
        Some("send_sms") => {
            // Play the user's phone: tell the simulator the MO SMS arrived.
            let order_id = view["order_id"].as_str().unwrap_or_default();
            for account in info["accounts"].as_array().into_iter().flatten() {
                let Some(sim) = account["simulator"].as_str() else {
                    continue;
                };
                if account["protocol"] != "sms-billing" {
                    continue;
                }
                let ledger: Value = http
                    .get(format!("{sim}/_sim/orders"))
                    .send()
                    .await?
                    .json()
                    .await?;
                for o in ledger.as_array().into_iter().flatten() {
                    if o["caller_order_id"]
                        .as_str()
                        .is_some_and(|c| c.starts_with(order_id))
                    {
                        let provider_id = o["provider_order_id"].as_str().unwrap_or_default();
                        println!(
                            "   the user sends the SMS ({} -> {})",
                            view["next_action"]["messages"], provider_id
                        );
                        http.post(format!("{sim}/_sim/mo/{provider_id}"))
                            .send()
                            .await?;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}
