//! IAM proven by a test: every AWS call each function makes in its end-to-end flows is recorded at the SDK
//! (`CallCounter::recording`), turned into the IAM requests AWS authorizes it as (action and resource ARN; a
//! `TransactWriteItems` is one `PutItem`/`UpdateItem`/`DeleteItem`/`ConditionCheckItem` per item, a
//! `BatchGetSecretValue` also a `GetSecretValue` per secret), and evaluated against that function's own
//! statements in `infra/template.yaml` (intrinsics resolved to a test account, region and stage) by
//! `@cloud-copilot/iam-simulate`, a maintained IAM policy evaluator with AWS's authorization data
//! (`tools/iam/evaluate.cjs`; `./scripts/test` installs the package into `.tools/iam`). Each DynamoDB item
//! request carries the partition keys it touches as `dynamodb:LeadingKeys` (every item of a batch or
//! transaction; a table query's `pk`), so the template's `ForAllValues:StringLike` conditions are evaluated,
//! not vacuously true: `leading_key_conditions_deny_a_write_to_another_function_s_partition` proves a `CONFIG`
//! write by any function but ops is denied.
//!
//! A call not allowed fails the test; so does a granted action that does not exist. A grant no call used is
//! listed in the report (`$CARGO_TARGET_TMPDIR/iam-report.md`, also printed). moto cannot do this: it
//! evaluates Secrets Manager and DynamoDB requests against resource `*`.
//!
//! The flows, each function cold-started as deployed over DynamoDB Local and moto, with a suka-xml simulator as
//! the provider: submit-order creates two orders (one with a notify URL) and replays one, and takes a client
//! verification request (issue 18's client routes, with the order's client secret); provider-callback
//! takes the provider's signed callback for the first (success: a merchant notification is made due, not sent);
//! order-status reads it (merchant and client routes) and lists the balances; ops (an IAM principal) lists
//! orders and the operator queue, shows one, queries the second now and drains an account; reconcile, two
//! hours later, queries the second and sends the
//! first one's notification; check-balance asks the provider and stores the balance.

use crate::common::workspace_root;
use crate::deployed::{Deployment, good_provider_secrets};
use crate::support::{self, DEMO_SECRET, OPS_SECRET};
use crate::template::{resources_of, template};
use recharge_api::ApiRequest;
use recharge_aws::{CallCounter, RecordedCall};
use recharge_lambda::bootstrap::Function;
use recharge_lambda::handlers;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// What CloudFormation would make of the template's intrinsics in this deployment.
struct Resolver<'a> {
    stage: &'a str,
    table: &'a str,
}

impl Resolver<'_> {
    fn table_arn(&self) -> String {
        format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", self.table)
    }

    fn reference(&self, name: &str) -> String {
        match name {
            "AWS::Partition" => "aws".to_owned(),
            "AWS::Region" => REGION.to_owned(),
            "AWS::AccountId" => ACCOUNT.to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "Stage" => self.stage.to_owned(),
            "OrdersTable" => self.table.to_owned(),
            "OrdersTable.Arn" => self.table_arn(),
            // Ref of an AWS::SecretsManager::Secret is its ARN (random suffix included).
            "ClientSecretKey" => format!(
                "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:recharge/{}/client-secret-key-AbCdEf",
                self.stage
            ),
            other => panic!("the IAM test cannot resolve {other}: teach Resolver::reference"),
        }
    }

    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::Object(m) if m.len() == 1 && m.contains_key("Ref") => {
                json!(self.reference(m["Ref"].as_str().unwrap()))
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::GetAtt") => {
                let parts = m["Fn::GetAtt"].as_array().unwrap();
                json!(self.reference(&format!(
                    "{}.{}",
                    parts[0].as_str().unwrap(),
                    parts[1].as_str().unwrap()
                )))
            }
            Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => {
                let mut s = m["Fn::Sub"].as_str().unwrap().to_owned();
                while let Some(start) = s.find("${") {
                    let end = start + s[start..].find('}').unwrap();
                    let value = self.reference(&s[start + 2..end]);
                    s.replace_range(start..=end, &value);
                }
                json!(s)
            }
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.resolve(x)).collect()),
            other => other.clone(),
        }
    }
}

/// Each function's identity policy, as deployed: its inline statements with intrinsics resolved.
fn policies(r: &Resolver<'_>) -> BTreeMap<String, Value> {
    let t = template();
    resources_of(&t, "AWS::Serverless::Function")
        .into_iter()
        .map(|(_, f)| {
            let name = f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned();
            let statements: Vec<Value> = f["Properties"]["Policies"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| p["Statement"].as_array().unwrap().clone())
                .map(|s| r.resolve(&s))
                .collect();
            (
                name,
                json!({"Version": "2012-10-17", "Statement": statements}),
            )
        })
        .collect()
}

/// One IAM request: action, resource ARN, and the partition key values of the items it touches (the
/// `dynamodb:LeadingKeys` condition key; empty where it does not apply).
type IamRequest = (String, String, Vec<String>);

/// The partition key value (`pk`, shared/aws/src/dynamo.rs `attr::PK`) of an item or key in DynamoDB's JSON.
fn pk_of(item: &Value) -> String {
    item["pk"]["S"]
        .as_str()
        .unwrap_or_else(|| panic!("no string pk in {item}: teach pk_of"))
        .to_owned()
}

/// The partition key value a table Query names: the `pk = :v` clause of its key condition.
fn query_pk(body: &Value) -> String {
    let names = &body["ExpressionAttributeNames"];
    let condition = body["KeyConditionExpression"].as_str().unwrap();
    for clause in condition.split(" AND ") {
        if let Some((name, value)) = clause.split_once(" = ") {
            let name = name.trim();
            let attr = if name.starts_with('#') {
                names[name].as_str().unwrap_or_default()
            } else {
                name
            };
            if attr == "pk" {
                return body["ExpressionAttributeValues"][value.trim()]["S"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no value for {value} in {body}"))
                    .to_owned();
            }
        }
    }
    panic!("a table query without `pk = :v` in {condition:?}: teach query_pk")
}

fn keys(mut pks: Vec<String>) -> Vec<String> {
    pks.sort();
    pks.dedup();
    pks
}

/// The IAM requests AWS authorizes one SDK call as, with the partition keys it touches: DynamoDB gives
/// `dynamodb:LeadingKeys` the partition key values of every item of the request (a batch: of all its items on
/// that table), so a `ForAllValues:StringLike` grant matches only when every one fits.
fn iam_requests(call: &RecordedCall) -> Vec<IamRequest> {
    let body: Value = serde_json::from_str(&call.body).unwrap_or(Value::Null);
    let table = |name: &Value| {
        format!(
            "arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}",
            name.as_str().unwrap()
        )
    };
    // A secret's ARN ends in a random six-character suffix; policies match it with their trailing `*`.
    let secret = |id: &Value| {
        let id = id.as_str().unwrap();
        if id.starts_with("arn:") {
            id.to_owned()
        } else {
            format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{id}-AbCdEf")
        }
    };
    let op = call.operation.as_str();
    let none = Vec::new;
    match op {
        "GetItem" | "UpdateItem" | "DeleteItem" => vec![(
            format!("dynamodb:{op}"),
            table(&body["TableName"]),
            vec![pk_of(&body["Key"])],
        )],
        "PutItem" => vec![(
            "dynamodb:PutItem".to_owned(),
            table(&body["TableName"]),
            vec![pk_of(&body["Item"])],
        )],
        "Scan" | "DescribeTable" => {
            vec![(format!("dynamodb:{op}"), table(&body["TableName"]), none())]
        }
        // A table query names one partition; an index query names the index's own key, which is not the
        // table's `pk` (no grant on an index carries a LeadingKeys condition).
        "Query" => match body["IndexName"].as_str() {
            Some(index) => vec![(
                "dynamodb:Query".to_owned(),
                format!("{}/index/{index}", table(&body["TableName"])),
                none(),
            )],
            None => vec![(
                "dynamodb:Query".to_owned(),
                table(&body["TableName"]),
                vec![query_pk(&body)],
            )],
        },
        // DynamoDB authorizes each item of a transaction as its own operation (there is no IAM action
        // "TransactWriteItems"): Developer Guide, "Using IAM with DynamoDB transactions".
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                let (kind, inner) = item.as_object().unwrap().iter().next().unwrap();
                let (action, key) = match kind.as_str() {
                    "Put" => ("dynamodb:PutItem", &inner["Item"]),
                    "Update" => ("dynamodb:UpdateItem", &inner["Key"]),
                    "Delete" => ("dynamodb:DeleteItem", &inner["Key"]),
                    "ConditionCheck" => ("dynamodb:ConditionCheckItem", &inner["Key"]),
                    other => panic!("transaction item {other}"),
                };
                (
                    action.to_owned(),
                    table(&inner["TableName"]),
                    vec![pk_of(key)],
                )
            })
            .collect(),
        "TransactGetItems" => body["TransactItems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    "dynamodb:GetItem".to_owned(),
                    table(&item["Get"]["TableName"]),
                    vec![pk_of(&item["Get"]["Key"])],
                )
            })
            .collect(),
        "BatchGetItem" => body["RequestItems"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(t, r)| {
                let pks = r["Keys"].as_array().unwrap().iter().map(pk_of).collect();
                (
                    "dynamodb:BatchGetItem".to_owned(),
                    table(&json!(t)),
                    keys(pks),
                )
            })
            .collect(),
        "BatchWriteItem" => body["RequestItems"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(t, writes)| {
                let pks = writes
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| match (w.get("PutRequest"), w.get("DeleteRequest")) {
                        (Some(p), _) => pk_of(&p["Item"]),
                        (_, Some(d)) => pk_of(&d["Key"]),
                        _ => panic!("batch write {w}"),
                    })
                    .collect();
                (
                    "dynamodb:BatchWriteItem".to_owned(),
                    table(&json!(t)),
                    keys(pks),
                )
            })
            .collect(),
        "GetSecretValue" | "DescribeSecret" | "PutSecretValue" => {
            vec![(
                format!("secretsmanager:{op}"),
                secret(&body["SecretId"]),
                none(),
            )]
        }
        // CreateSecret is authorized on the ARN the new secret gets.
        "CreateSecret" => vec![(
            "secretsmanager:CreateSecret".to_owned(),
            secret(&body["Name"]),
            none(),
        )],
        // BatchGetSecretValue needs its own action (resource "*") and GetSecretValue on every secret it returns.
        "BatchGetSecretValue" => {
            let mut out = vec![(
                "secretsmanager:BatchGetSecretValue".to_owned(),
                "*".to_owned(),
                none(),
            )];
            out.extend(body["SecretIdList"].as_array().unwrap().iter().map(|id| {
                (
                    "secretsmanager:GetSecretValue".to_owned(),
                    secret(id),
                    none(),
                )
            }));
            out
        }
        other => {
            panic!("the IAM test does not know how AWS authorizes {other}: teach iam_requests")
        }
    }
}

/// Runs `tools/iam/evaluate.cjs` over the input; panics with a pointer to `./scripts/test` if the evaluator
/// is not installed.
fn evaluate(input: &Value) -> Value {
    let dir = std::env::var("IAM_SIMULATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".tools/iam"));
    assert!(
        dir.join("node_modules/@cloud-copilot/iam-simulate")
            .is_dir(),
        "{} has no @cloud-copilot/iam-simulate: run ./scripts/test, which installs it",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg(workspace_root().join("tools/iam/evaluate.cjs"))
        .env("IAM_SIMULATE_DIR", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node is on PATH");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "evaluate.cjs failed: {:?}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The suka-xml account of `support`, pointed at a running simulator.
async fn accounts_with_simulator() -> (Value, recharge_sim::RunningSim) {
    let sim = recharge_sim::start(recharge_sim::SimConfig::new(
        "suka-xml".parse().unwrap(),
        json!({"userid": "10004927", "key": "abcdef0123456789ABCDEF0123456789", "balance_fen": 100_000_000,
               "products": {"3312": {"face_fen": 10000, "price_fen": 9850, "name": "话费100"}}}),
    ))
    .await
    .unwrap();
    let mut accounts = support::accounts();
    for a in accounts.as_array_mut().unwrap() {
        if a["id"] == "dingyin-1" {
            let base = sim.base_url();
            a["endpoints"] = json!({"submit": format!("{base}/gameonlinepay.do"),
                                    "query": format!("{base}/searchpay.do"),
                                    "balance": format!("{base}/searchbalance.do")});
        }
    }
    (accounts, sim)
}

/// One request as `tools/iam/evaluate.cjs` reads it: with `dynamodb:LeadingKeys` in its context when it has
/// partition keys.
fn request_json(action: &str, resource: &str, leading: &[String]) -> Value {
    let mut r = json!({"action": action, "resource": resource});
    if !leading.is_empty() {
        r["context"] = json!({"dynamodb:LeadingKeys": leading});
    }
    r
}

/// Partition keys as the report shows them: each cut after its prefix (`O#…`, `CONFIG`), deduplicated.
fn key_shapes(leading: &[Value]) -> String {
    let shapes: BTreeSet<String> = leading
        .iter()
        .map(|k| {
            let k = k.as_str().unwrap_or_default();
            match k.find('#') {
                Some(i) => format!("{}…", &k[..=i]),
                None => k.to_owned(),
            }
        })
        .collect();
    if shapes.is_empty() {
        "-".to_owned()
    } else {
        shapes.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// The negative proof that the evaluator sees `dynamodb:LeadingKeys`: without the keys in the context a
/// `ForAllValues` condition holds vacuously and a function writing another function's partition would pass.
/// Needs only the template and the evaluator (no DynamoDB, no moto).
#[test]
fn leading_key_conditions_deny_a_write_to_another_function_s_partition() {
    let resolver = Resolver {
        stage: "iam-neg",
        table: "recharge-iam-neg-orders",
    };
    let policies = policies(&resolver);
    let table = resolver.table_arn();
    let cases: &[(&str, &str, &[&str], &str)] = &[
        // Only ops may write the operators' configuration (account controls, apps).
        (
            "submit-order",
            "dynamodb:PutItem",
            &["CONFIG"],
            "ImplicitlyDenied",
        ),
        (
            "submit-order",
            "dynamodb:UpdateItem",
            &["CONFIG"],
            "ImplicitlyDenied",
        ),
        (
            "provider-callback",
            "dynamodb:UpdateItem",
            &["CONFIG"],
            "ImplicitlyDenied",
        ),
        (
            "reconcile",
            "dynamodb:BatchWriteItem",
            &["CONFIG"],
            "ImplicitlyDenied",
        ),
        (
            "check-balance",
            "dynamodb:PutItem",
            &["CONFIG"],
            "ImplicitlyDenied",
        ),
        ("ops", "dynamodb:PutItem", &["CONFIG"], "Allowed"),
        // Each function's own partitions are allowed.
        (
            "submit-order",
            "dynamodb:PutItem",
            &["O#7JUWX4CXN3GSIQOKCCTK"],
            "Allowed",
        ),
        ("check-balance", "dynamodb:PutItem", &["BALANCE"], "Allowed"),
        (
            "check-balance",
            "dynamodb:PutItem",
            &["BALHIST#suka-main"],
            "Allowed",
        ),
        (
            "reconcile",
            "dynamodb:BatchWriteItem",
            &["RECON#suka-main"],
            "Allowed",
        ),
        // A batch is allowed only if every item's partition is: one CONFIG item among orders is denied.
        (
            "reconcile",
            "dynamodb:BatchWriteItem",
            &["O#7JUWX4CXN3GSIQOKCCTK", "CONFIG"],
            "ImplicitlyDenied",
        ),
        // The balance check may not write orders.
        (
            "check-balance",
            "dynamodb:PutItem",
            &["O#7JUWX4CXN3GSIQOKCCTK"],
            "ImplicitlyDenied",
        ),
    ];
    let mut functions = serde_json::Map::new();
    for (function, ..) in cases {
        if functions.contains_key(*function) {
            continue;
        }
        let requests: Vec<Value> = cases
            .iter()
            .filter(|(f, ..)| f == function)
            .map(|(_, action, pks, _)| {
                let pks: Vec<String> = pks.iter().map(|k| (*k).to_owned()).collect();
                request_json(action, &table, &pks)
            })
            .collect();
        functions.insert(
            (*function).to_owned(),
            json!({"policy": policies[*function], "requests": requests}),
        );
    }
    let result = evaluate(&json!({"account": ACCOUNT, "functions": functions}));
    assert_eq!(result["errors"], json!([]), "{result}");
    let decisions = result["decisions"].as_array().unwrap();
    for (function, action, pks, want) in cases {
        let d = decisions
            .iter()
            .find(|d| {
                d["function"] == *function
                    && d["action"] == *action
                    && d["leadingKeys"] == json!(pks)
            })
            .unwrap_or_else(|| panic!("no decision for {function} {action} {pks:?}: {result}"));
        assert_eq!(d["result"], *want, "{function} {action} {pks:?}");
    }
}

fn status_of(r: &recharge_api::ApiResponse) -> (u16, String) {
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[tokio::test]
async fn every_aws_call_of_every_function_is_allowed_by_its_own_template_statements() {
    let (accounts, _sim) = accounts_with_simulator().await;
    let d = Deployment::create("iam", good_provider_secrets(), Some(accounts)).await;
    let counters: Vec<(Function, CallCounter)> = [
        Function::SubmitOrder,
        Function::ProviderCallback,
        Function::OrderStatus,
        Function::Reconcile,
        Function::CheckBalance,
        Function::Ops,
    ]
    .into_iter()
    .map(|f| (f, CallCounter::recording()))
    .collect();
    let counter = |f: Function| &counters.iter().find(|(g, _)| *g == f).unwrap().1;
    let demo = ("demo", DEMO_SECRET);

    // submit-order: M1 with a notify URL (the callback's notification), M2 left for the sweep, a replay.
    let (submit, _) = d
        .cold_start(Function::SubmitOrder, counter(Function::SubmitOrder))
        .await;
    let mut created = Value::Null;
    for body in [
        json!({"merchant_order_no": "M1", "product_code": "mobile.100", "account": "13800138000",
               "notify_url": "https://merchant.example.com/notify"}),
        json!({"merchant_order_no": "M2", "product_code": "mobile.100", "account": "13800138001"}),
        json!({"merchant_order_no": "M2", "product_code": "mobile.100", "account": "13800138001"}),
    ] {
        let bytes = body.to_string().into_bytes();
        let r = d.send(&submit, demo, "POST", "/v1/orders", &bytes).await;
        assert!(matches!(r.status, 200 | 201), "{:?}", status_of(&r));
        if body["merchant_order_no"] == "M1" {
            created = serde_json::from_slice(&r.body).unwrap();
        }
    }
    // The client routes (issue 18) with M1's client secret: a verification request (counted in the store).
    let order_id = created["order_id"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {}", created["client_secret"].as_str().unwrap());
    let client = |method: &str, path: String, body: &[u8]| ApiRequest {
        method: method.to_owned(),
        path,
        raw_query: String::new(),
        headers: vec![
            ("authorization".into(), bearer.clone()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.to_vec(),
    };
    let r = recharge_api::http::routes::handle(
        &submit.state,
        client(
            "POST",
            format!("/v1/client/orders/{order_id}/verification"),
            br#"{"code":"123456"}"#,
        ),
    )
    .await;
    assert!(r.status < 500, "{:?}", status_of(&r));

    // provider-callback: the provider's signed success callback for M1's first attempt.
    let (callback, callback_metrics) = d
        .cold_start(
            Function::ProviderCallback,
            counter(Function::ProviderCallback),
        )
        .await;
    let text = std::fs::read_to_string(
        workspace_root().join("events/provider-callback/suka-xml-gbk-form.json"),
    )
    .unwrap();
    let req = lambda_http::request::from_str(&text).unwrap();
    let resp = handlers::http_request(&callback, req).await;
    assert_eq!(resp.status(), 200);
    // The callback only made the merchant's notification due: the reconcile function sends it (below), so the
    // callback needs no merchant secret.
    assert!(
        !callback_metrics
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.get("MerchantNotifications").is_some()),
        "the callback does not wait on the merchant"
    );

    // order-status: the merchant's read and the admin's balances.
    let (status, _) = d
        .cold_start(Function::OrderStatus, counter(Function::OrderStatus))
        .await;
    let r = d.send(&status, demo, "GET", "/v1/orders/M1", b"").await;
    let (code, body) = status_of(&r);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"succeeded\""),
        "the callback was applied: {body}"
    );
    let r = d
        .send(&status, ("ops", OPS_SECRET), "GET", "/v1/balances", b"")
        .await;
    assert_eq!(r.status, 200, "{:?}", status_of(&r));
    let r = recharge_api::http::routes::handle(
        &status.state,
        client("GET", format!("/v1/client/orders/{order_id}"), b""),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", status_of(&r));
    // The merchant's statement of today: M1 on it.
    let statement_path = format!(
        "/v1/statements/{}",
        recharge_core::recon::ReconDay::containing(
            recharge_core::Clock::now(&d.clock),
            recharge_core::recon::BEIJING_OFFSET_MINUTES,
        )
        .date()
    );
    let r = d.send(&status, demo, "GET", &statement_path, b"").await;
    let (code, body) = status_of(&r);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"M1\""), "{body}");

    // ops: an operator (an IAM principal, as API Gateway's authorizer hands it over) lists orders by status
    // and the queue, shows M1 with its audit trail, looks M2 up, and drains and lists an account.
    let (ops, _) = d.cold_start(Function::Ops, counter(Function::Ops)).await;
    let m2_lookup = "app=demo&merchant_order_no=M2".to_owned();
    let today = recharge_core::recon::ReconDay::containing(
        recharge_core::Clock::now(&d.clock),
        recharge_core::recon::BEIJING_OFFSET_MINUTES,
    )
    .date();
    let recon_body = json!({"date": today}).to_string();
    let recon_query = format!("date={today}");
    let operator = |method: &str, path: &str, query: &str, body: &str| -> lambda_http::Request {
        lambda_http::request::from_str(&json!({
            "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": query,
            "headers": {"content-type": "application/json"},
            "requestContext": {
                "accountId": ACCOUNT, "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                         "userAgent": "recharge-ops"},
                "requestId": "ops-1", "routeKey": format!("{method} {path}"), "stage": "$default",
                "time": "22/Nov/2025:03:33:20 +0000", "timeEpoch": 0,
                "authorizer": {"iam": {"accountId": ACCOUNT,
                                       "userArn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/operator/alice")}}
            },
            "body": body, "isBase64Encoded": false
        }).to_string())
        .unwrap()
    };
    for (method, path, query, body) in [
        ("GET", "/ops/orders".to_owned(), "status=processing", ""),
        ("GET", "/ops/orders".to_owned(), "needs_operator=true", ""),
        ("GET", format!("/ops/orders/{order_id}"), "", ""),
        // Looked up by merchant number (M2 stays open for the sweep below).
        ("GET", "/ops/orders".to_owned(), &m2_lookup, ""),
        (
            "PUT",
            "/ops/accounts/dingyin-1".to_owned(),
            "",
            r#"{"mode":"draining","operator":"alice"}"#,
        ),
        ("GET", "/ops/accounts".to_owned(), "", ""),
        // The reconciliation of today (the orders above), on demand, and its mismatches.
        ("POST", "/ops/recon/run".to_owned(), "", &recon_body),
        ("GET", "/ops/recon/mismatches".to_owned(), &recon_query, ""),
    ] {
        let resp = handlers::ops_request(&ops, operator(method, &path, query, body)).await;
        assert_eq!(resp.status(), 200, "{method} {path}?{query}");
    }
    // ops: a merchant app created (its secret created in Secrets Manager), rotated, listed; then the new app
    // places an order through submit-order, which finds it in the table and reads its secret on first use.
    let resp = handlers::ops_request(
        &ops,
        operator(
            "POST",
            "/ops/apps",
            "",
            r#"{"id":"shop-iam","operator":"alice"}"#,
        ),
    )
    .await;
    assert_eq!(resp.status(), 201, "{:?}", resp.body());
    let rotate = r#"{"action":"rotate","grace_secs":60,"operator":"alice"}"#;
    for (method, path, body, want) in [
        ("PUT", "/ops/apps/shop-iam", rotate, 200),
        ("GET", "/ops/apps", "", 200),
    ] {
        let resp = handlers::ops_request(&ops, operator(method, path, "", body)).await;
        assert_eq!(resp.status(), want, "{method} {path}: {:?}", resp.body());
        if method == "PUT" {
            let text = match resp.body() {
                lambda_http::Body::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            let secret = v["secret"].as_str().unwrap().to_owned();
            let order = json!({"merchant_order_no": "S1", "product_code": "mobile.100",
                               "account": "13800138002"})
            .to_string()
            .into_bytes();
            let r = d
                .send(&submit, ("shop-iam", &secret), "POST", "/v1/orders", &order)
                .await;
            assert_eq!(r.status, 201, "{:?}", status_of(&r));
        }
    }

    // reconcile, two hours on: M2 is queried, M1's failed notification is due again.
    d.clock.advance(std::time::Duration::from_secs(2 * 3600));
    let (reconcile, reconcile_metrics) = d
        .cold_start(Function::Reconcile, counter(Function::Reconcile))
        .await;
    let report = handlers::reconcile_event(&reconcile, &json!({}))
        .await
        .unwrap();
    assert!(report["sweep"]["due"].as_u64().unwrap() >= 2, "{report}");
    // The daily rule's input: the reconciliation mode of the same function.
    let report = handlers::reconcile_event(&reconcile, &json!({"recon": {"date": today}}))
        .await
        .unwrap();
    assert_eq!(report["recon"]["date"], today.as_str(), "{report}");
    // M1's notification was signed and tried (merchant.example.com does not answer here).
    assert!(
        reconcile_metrics
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.get("MerchantNotifications").is_some() && l["Result"] == "failed"),
        "the sweep's notification try is counted: {report}"
    );

    // check-balance: the simulator answers, the snapshot is stored.
    let (balance, _) = d
        .cold_start(Function::CheckBalance, counter(Function::CheckBalance))
        .await;
    let report = handlers::check_balance_event(&balance, &json!({}))
        .await
        .unwrap();
    assert!(report.to_string().contains("dingyin-1"), "{report}");

    // Evaluate every call against its own function's statements.
    let resolver = Resolver {
        stage: &d.stage,
        table: &d.table,
    };
    let policies = policies(&resolver);
    let mut observed: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut functions = serde_json::Map::new();
    for (function, counter) in &counters {
        let calls = counter.calls();
        assert!(!calls.is_empty(), "{} made no AWS call", function.name());
        let requests: BTreeSet<IamRequest> = calls.iter().flat_map(iam_requests).collect();
        for (action, resource, _) in &requests {
            observed.insert((
                function.name().to_owned(),
                action.clone(),
                // The test's stage in names makes the table unreadable: show the template's form.
                resource.replace(&d.stage, "<stage>"),
            ));
        }
        let policy = policies
            .get(function.name())
            .unwrap_or_else(|| panic!("{} is not in the template", function.name()));
        functions.insert(
            function.name().to_owned(),
            json!({"policy": policy,
                   "requests": requests.iter().map(|(a, r, k)| request_json(a, r, k)).collect::<Vec<_>>()}),
        );
    }
    let result = evaluate(&json!({"account": ACCOUNT, "functions": functions}));

    let mut report = String::from(
        "# IAM: every AWS call of the end-to-end flows\n\n| function | action | resource | leading keys | decision |\n|---|---|---|---|---|\n",
    );
    let mut failures = Vec::new();
    let mut lines = BTreeSet::new();
    let mut with_keys = 0;
    for d_ in result["decisions"].as_array().unwrap() {
        let leading = d_["leadingKeys"].as_array().cloned().unwrap_or_default();
        if !leading.is_empty() {
            with_keys += 1;
        }
        let line = format!(
            "| {} | {} | {} | {} | {} |\n",
            d_["function"].as_str().unwrap(),
            d_["action"].as_str().unwrap(),
            d_["resource"]
                .as_str()
                .unwrap()
                .replace(&d.stage, "<stage>"),
            key_shapes(&leading),
            d_["result"].as_str().unwrap()
        );
        if d_["result"] != "Allowed" {
            failures.push(format!(
                "not allowed: {} (leading keys {leading:?})",
                line.trim()
            ));
        }
        // One row per shape of keys (every order's O#... is one row).
        if lines.insert(line.clone()) {
            report.push_str(&line);
        }
    }
    assert!(
        with_keys >= 10,
        "the DynamoDB item requests carry their partition keys"
    );
    report.push_str("\n# Grants no call used\n\n| function | statement | action | resource |\n|---|---|---|---|\n");
    for g in result["grants"].as_array().unwrap() {
        let line = format!(
            "| {} | {} | {} | {} |\n",
            g["function"].as_str().unwrap(),
            g["sid"].as_str().unwrap(),
            g["action"].as_str().unwrap(),
            g["resource"].to_string().replace(&d.stage, "<stage>")
        );
        if g["exists"] != true {
            failures.push(format!(
                "granted action does not exist in IAM: {}",
                line.trim()
            ));
        }
        if g["used"] != true {
            report.push_str(&line);
        }
    }
    for e in result["errors"].as_array().unwrap() {
        failures.push(format!("evaluator: {e}"));
    }
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("iam-report.md");
    std::fs::write(&path, &report).unwrap();
    println!("{report}\n(written to {})", path.display());
    assert!(failures.is_empty(), "{}\n\n{report}", failures.join("\n"));
    assert!(observed.len() >= 10, "{observed:#?}");
}
