//! `infra/template.yaml` against the code it deploys: every function is a bin of `functions/` (and every bin
//! is deployed), the HTTP routes are exactly `recharge_api::http::routes::ROUTES` with the same function, the table
//! is `infra/table.json`, IAM is explicit statements (no wildcard actions, no SAM policy templates), and the
//! sample config of `infra/config/` loads as the functions load it.

use crate::common::workspace_root;
use recharge_api::apps::AppConfig;
use recharge_api::catalog::Catalog;
use recharge_api::http::routes::ROUTES;
use recharge_providers::ProviderAccount;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// YAML to JSON, with CloudFormation's short-form tags as their long form: `!Ref X` → `{"Ref": "X"}`,
/// `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` → `{"Fn::Sub": s}`, and so on.
fn to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => json!(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap(),
        Y::String(s) => json!(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    other => serde_yaml::to_string(&other).unwrap().trim().to_owned(),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(t.value);
            match name {
                "Ref" | "Condition" => json!({ name: inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (res, attr) = s.split_once('.').unwrap();
                        json!({"Fn::GetAtt": [res, attr]})
                    }
                    other => json!({"Fn::GetAtt": other}),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

pub fn template() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    to_json(serde_yaml::from_str(&text).unwrap())
}

pub fn resources_of(t: &Value, ty: &str) -> Vec<(String, Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect()
}

/// A statement's actions (`Action` is one string or a list).
fn actions_of(name: &str, statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
        other => panic!("{name}: {other}"),
    }
}

/// Every inline policy statement of every function: (resource name, function, statement).
fn function_statements(t: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for (name, f) in resources_of(t, "AWS::Serverless::Function") {
        for p in f["Properties"]["Policies"].as_array().unwrap() {
            let statements = p["Statement"].as_array().unwrap_or_else(|| {
                panic!("{name}: only inline statements, no SAM policy templates: {p}")
            });
            for s in statements {
                out.push((name.clone(), f.clone(), s.clone()));
            }
        }
    }
    out
}

/// `functions/<dir>` → its bin names, from its Cargo.toml.
fn bins() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in std::fs::read_dir(workspace_root().join("functions")).unwrap() {
        let manifest = dir.unwrap().path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        let bins = parsed["bin"].as_array().unwrap();
        assert_eq!(
            bins.len(),
            1,
            "{}: one bin per function crate",
            manifest.display()
        );
        out.insert(bins[0]["name"].as_str().unwrap().to_owned());
    }
    out
}

fn binary(f: &Value) -> String {
    f["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn every_template_function_is_a_bin_and_every_bin_is_deployed() {
    let t = template();
    let functions = resources_of(&t, "AWS::Serverless::Function");
    let deployed: BTreeSet<String> = functions.iter().map(|(_, f)| binary(f)).collect();
    assert_eq!(deployed, bins());
    assert_eq!(deployed.len(), functions.len(), "a bin is deployed twice");
    for (name, f) in &functions {
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        assert_eq!(
            f["Properties"]["CodeUri"], "..",
            "{name}: CodeUri is the workspace root"
        );
    }
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], json!(["arm64"]));
}

#[test]
fn template_routes_are_exactly_the_router_routes() {
    let t = template();
    let mut in_template = BTreeSet::new();
    for (_, f) in resources_of(&t, "AWS::Serverless::Function") {
        let bin = binary(&f);
        let Some(events) = f["Properties"]["Events"].as_object() else {
            continue;
        };
        for e in events.values().filter(|e| e["Type"] == "HttpApi") {
            let p = &e["Properties"];
            assert_eq!(p["PayloadFormatVersion"], "2.0");
            in_template.insert((
                p["Method"].as_str().unwrap().to_owned(),
                p["Path"].as_str().unwrap().to_owned(),
                bin.clone(),
            ));
        }
    }
    let in_code: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|(m, p, f)| ((*m).to_owned(), (*p).to_owned(), (*f).to_owned()))
        .collect();
    assert_eq!(in_template, in_code);
}

#[test]
fn client_routes_have_their_own_throttling_and_no_route_answers_cross_origin_from_the_api() {
    // Issue 18: CORS is answered in code on the client routes only; an API-wide CorsConfiguration would make
    // API Gateway answer preflights of the merchant routes too.
    let t = template();
    let apis = resources_of(&t, "AWS::Serverless::HttpApi");
    assert_eq!(apis.len(), 1);
    let props = &apis[0].1["Properties"];
    assert!(props.get("CorsConfiguration").is_none(), "no API-wide CORS");
    let throttled: BTreeSet<String> = props["RouteSettings"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, v)| {
            assert!(v["ThrottlingBurstLimit"].as_u64().unwrap() > 0, "{key}");
            assert!(v["ThrottlingRateLimit"].as_f64().unwrap() > 0.0, "{key}");
            key.clone()
        })
        .collect();
    let client: BTreeSet<String> = ROUTES
        .iter()
        .filter(|(_, p, _)| p.starts_with("/v1/client/"))
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(client.len(), 4);
    assert_eq!(throttled, client);
}

#[test]
fn template_schedules_are_the_sweep_every_minute_and_the_balance_check_every_five() {
    let t = template();
    let mut schedules = BTreeSet::new();
    for (_, f) in resources_of(&t, "AWS::Serverless::Function") {
        if let Some(events) = f["Properties"]["Events"].as_object() {
            for e in events.values().filter(|e| e["Type"] == "Schedule") {
                let schedule = &e["Properties"]["Schedule"];
                // A parameter's default (the daily reconciliation's time is one).
                let schedule = match schedule["Ref"].as_str() {
                    Some(param) => &t["Parameters"][param]["Default"],
                    None => schedule,
                };
                schedules.insert((binary(&f), schedule.as_str().unwrap().to_owned()));
                if binary(&f) == "reconcile" && e["Properties"]["Input"].is_string() {
                    let input: Value =
                        serde_json::from_str(e["Properties"]["Input"].as_str().unwrap()).unwrap();
                    assert_eq!(input, serde_json::json!({"recon": "daily"}));
                }
            }
        }
        if binary(&f) == "reconcile" {
            assert_eq!(f["Properties"]["ReservedConcurrentExecutions"], 1);
        }
    }
    let want: BTreeSet<(String, String)> = [
        ("reconcile", "rate(1 minute)"),
        // The daily reconciliation, 00:30 Beijing time (docs/reconciliation.md §3).
        ("reconcile", "cron(30 16 * * ? *)"),
        ("check-balance", "rate(5 minutes)"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(schedules, want);
}

#[test]
fn template_table_is_infra_table_json() {
    let t = template();
    let tables = resources_of(&t, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1, "one table");
    let mut props = tables[0].1["Properties"].clone();
    props.as_object_mut().unwrap().remove("TableName");
    let mut spec: Value = serde_json::from_str(recharge_aws::table::TABLE_JSON).unwrap();
    spec.as_object_mut().unwrap().remove("//");
    assert_eq!(props, spec);
}

#[test]
fn iam_is_explicit_actions_on_named_resources() {
    let t = template();
    for (name, _, s) in function_statements(&t) {
        assert_eq!(s["Effect"], "Allow", "{name}");
        for a in actions_of(&name, &s) {
            assert!(!a.contains('*'), "{name}: wildcard action {a}");
        }
        // BatchGetSecretValue has no resource type, so IAM takes only "*" for it; it returns nothing
        // the function may not GetSecretValue, which the Secrets statements grant by name.
        let batch_only = s["Action"] == "secretsmanager:BatchGetSecretValue";
        if !batch_only {
            assert_ne!(s["Resource"], "*", "{name}: wildcard resource");
        }
    }
}

#[test]
fn sample_config_loads_as_the_functions_load_it() {
    let dir = workspace_root().join("infra/config");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let accounts: Vec<ProviderAccount> =
        serde_json::from_str(&read("provider-accounts.json")).unwrap();
    let ids = accounts.iter().map(|a| a.id.clone()).collect();
    for a in &accounts {
        assert!(
            a.secret_name.starts_with("recharge/dev/provider/"),
            "{}: the template grants recharge/<stage>/provider/* only",
            a.id
        );
    }
    let _: Vec<AppConfig> = serde_json::from_str(&read("apps.json")).unwrap();
    Catalog::from_json(&read("catalog.json"), &ids).unwrap();
}

#[test]
fn the_secrets_example_lists_every_configured_secret_in_its_shape() {
    let dir = workspace_root().join("infra/config");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let accounts: Vec<ProviderAccount> =
        serde_json::from_str(&read("provider-accounts.json")).unwrap();
    let apps: Vec<AppConfig> = serde_json::from_str(&read("apps.json")).unwrap();
    let example: serde_json::Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("infra/secrets.example.json")).unwrap(),
    )
    .unwrap();
    let mut expected: BTreeSet<String> = accounts.iter().map(|a| a.secret_name.clone()).collect();
    let apps = recharge_api::apps::Apps::new(apps.clone(), "recharge/dev/merchant/");
    for id in apps.ids() {
        expected.insert(apps.secret_name(apps.get(id).unwrap()));
    }
    let listed: BTreeSet<String> = example.keys().cloned().collect();
    assert_eq!(
        listed, expected,
        "infra/secrets.example.json against infra/config/"
    );
    for a in &accounts {
        let mut value = example[&a.secret_name].clone();
        // The example's PEMs are placeholders; the shape is what is checked, so real (test) keys stand in.
        if value.get("private_key_pem").is_some() {
            value["private_key_pem"] = json!(crate::support::RSA_PRIVATE);
            value["platform_public_key_pem"] = json!(crate::support::RSA_PUBLIC);
        }
        let value = value.to_string();
        recharge_providers::Credentials::from_secret_json(a.protocol, &value)
            .unwrap_or_else(|e| panic!("{}: {e}", a.secret_name));
    }
    // The one command reads the same file.
    let out = std::process::Command::new(workspace_root().join("scripts/create-secrets"))
        .arg("--dry-run")
        .arg(workspace_root().join("infra/secrets.example.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for name in &expected {
        assert!(
            text.contains(&format!("would create or update {name}\n")),
            "{text}"
        );
    }
}

#[test]
fn ops_routes_and_only_they_carry_the_iam_authorizer() {
    let t = template();
    assert_eq!(
        t["Resources"]["HttpApi"]["Properties"]["Auth"]["EnableIamAuthorizer"],
        true
    );
    let mut ops_routes = 0;
    for (name, f) in resources_of(&t, "AWS::Serverless::Function") {
        let Some(events) = f["Properties"]["Events"].as_object() else {
            continue;
        };
        for e in events.values().filter(|e| e["Type"] == "HttpApi") {
            let path = e["Properties"]["Path"].as_str().unwrap();
            let auth = &e["Properties"]["Auth"]["Authorizer"];
            if path.starts_with("/ops/") {
                assert_eq!(
                    binary(&f),
                    "ops",
                    "{name}: {path} is served by the ops function"
                );
                assert_eq!(auth, "AWS_IAM", "{name}: {path} needs the IAM authorizer");
                ops_routes += 1;
            } else {
                assert!(
                    auth.is_null(),
                    "{name}: {path} is verified in code, not by IAM"
                );
            }
        }
    }
    assert_eq!(ops_routes, recharge_api::usecases::ops::OPS_ROUTES.len());
}

#[test]
fn only_the_ops_function_may_create_or_change_secrets() {
    let t = template();
    let writes = [
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecret",
        "secretsmanager:DeleteSecret",
    ];
    for (name, f, s) in function_statements(&t) {
        for a in actions_of(&name, &s) {
            if writes.contains(&a.as_str()) {
                assert_eq!(binary(&f), "ops", "{name} may not {a}");
            }
        }
    }
}

#[test]
fn the_operator_queue_metric_has_an_alarm_and_the_sweep_may_count_it() {
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    assert!(
        alarms
            .iter()
            .any(|(_, a)| a["Properties"]["MetricName"] == "OperatorQueue"),
        "no alarm on OperatorQueue"
    );
    let (_, reconcile) = resources_of(&t, "AWS::Serverless::Function")
        .into_iter()
        .find(|(_, f)| binary(f) == "reconcile")
        .unwrap();
    let text = reconcile["Properties"]["Policies"].to_string();
    assert!(text.contains("/index/attention"), "{text}");
}

#[test]
fn only_the_ops_function_may_write_the_operators_configuration() {
    // One table: every other function's DynamoDB writes are limited by partition key, and none reaches CONFIG.
    let t = template();
    let writes = [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:TransactWriteItems",
        "dynamodb:BatchWriteItem",
    ];
    let mut ops_writes_config = false;
    for (name, f, s) in function_statements(&t) {
        let actions = actions_of(&name, &s);
        if !actions.iter().any(|a| writes.contains(&a.as_str())) {
            continue;
        }
        let cond = &s["Condition"];
        let keys: Vec<String> = ["ForAllValues:StringLike", "ForAllValues:StringEquals"]
            .iter()
            .flat_map(|op| {
                cond[op]["dynamodb:LeadingKeys"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        if binary(&f) == "ops" {
            ops_writes_config |= keys.iter().any(|k| k == "CONFIG");
            continue;
        }
        assert!(
            !keys.is_empty(),
            "{name}: {actions:?} without a dynamodb:LeadingKeys condition"
        );
        for k in &keys {
            assert!(
                !k.starts_with("CONFIG") && k != "*",
                "{name}: may write {k}"
            );
        }
    }
    assert!(
        ops_writes_config,
        "the ops function writes the CONFIG partition"
    );
    assert_eq!(recharge_aws::dynamo::CONFIG_PK, "CONFIG");
}
