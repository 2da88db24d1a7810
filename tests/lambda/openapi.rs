//! `docs/openapi.yaml` (the merchant API as OpenAPI 3.1) against the code: its paths and methods are exactly
//! the merchant routes of `recharge_api::http::routes::ROUTES`, and the bodies the handlers really answer (an order
//! created, read, a balance list) have exactly the properties its schemas list, each of the declared type.

use crate::common::workspace_root;
use crate::deployed::signed;
use crate::support::{self, DEMO_SECRET, OPS_SECRET, SIGNED_AT};
use recharge_api::http::routes::ROUTES;
use recharge_core::memory::InMemoryOrderStore;
use recharge_lambda::bootstrap::Function;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

fn spec() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("docs/openapi.yaml")).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    serde_json::to_value(yaml).unwrap()
}

fn schema<'a>(spec: &'a Value, name: &str) -> &'a Value {
    &spec["components"]["schemas"][name]
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The JSON types a schema allows (`type` as a string or a list, or the types of its `oneOf` branches).
fn types(s: &Value) -> BTreeSet<String> {
    match (&s["type"], &s["oneOf"]) {
        (Value::String(t), _) => BTreeSet::from([t.clone()]),
        (Value::Array(ts), _) => names(&Value::Array(ts.clone())),
        (_, Value::Array(branches)) => branches.iter().flat_map(types).collect(),
        _ => BTreeSet::new(),
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `body` has exactly `properties` (all of them: the views always carry every field, null when empty), each
/// of a type its schema allows, and a value of the schema's `enum` where it has one.
fn conforms(body: &Value, properties: &Value, what: &str) {
    let props = properties.as_object().unwrap();
    let got: BTreeSet<String> = body.as_object().unwrap().keys().cloned().collect();
    let want: BTreeSet<String> = props.keys().cloned().collect();
    assert_eq!(
        got, want,
        "{what}: properties of the answer against the spec"
    );
    for (k, s) in props {
        let t = type_of(&body[k]);
        assert!(
            types(s).contains(t),
            "{what}.{k}: {t} is not one of {:?}",
            types(s)
        );
        if let Some(allowed) = s.get("enum") {
            assert!(
                allowed.as_array().unwrap().contains(&body[k]),
                "{what}.{k}: {}",
                body[k]
            );
        }
    }
}

#[test]
fn the_spec_has_exactly_the_merchant_and_client_routes_of_the_router() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|(_, path, _)| {
            path.starts_with("/v1/orders")
                || path.starts_with("/v1/balances")
                || path.starts_with("/v1/statements/")
                || path.starts_with("/v1/client/")
        })
        // CORS preflights are answered by the client routes and described there, not operations of their own.
        .filter(|(method, _, _)| *method != "OPTIONS")
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routed);
}

#[tokio::test]
async fn the_answers_of_the_handlers_conform_to_the_spec_schemas() {
    let spec = spec();
    let store = Arc::new(InMemoryOrderStore::new(8));
    let (submit, _, _) = support::service_over(Function::SubmitOrder, Arc::clone(&store)).await;
    let (status, _, _) = support::service_over(Function::OrderStatus, store).await;
    let view = schema(&spec, "OrderView");
    let required = names(&view["required"]);
    let view_props: BTreeSet<String> = view["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(required, view_props, "every view field is always present");

    let body =
        json!({"merchant_order_no": "M1", "product_code": "mobile.100", "account": "13800138000"})
            .to_string();
    let r = recharge_api::http::routes::handle(
        &submit.state,
        signed(
            ("demo", DEMO_SECRET),
            SIGNED_AT,
            "POST",
            "/v1/orders",
            body.as_bytes(),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created: Value = serde_json::from_slice(&r.body).unwrap();
    let mut created_props = view["properties"].as_object().unwrap().clone();
    created_props.extend(
        schema(&spec, "CreatedOrder")["properties"]
            .as_object()
            .unwrap()
            .clone(),
    );
    conforms(
        &created,
        &Value::Object(created_props),
        "POST /v1/orders 201",
    );

    let r = recharge_api::http::routes::handle(
        &status.state,
        signed(
            ("demo", DEMO_SECRET),
            SIGNED_AT,
            "GET",
            "/v1/orders/M1",
            b"",
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    conforms(
        &serde_json::from_slice(&r.body).unwrap(),
        &view["properties"],
        "GET /v1/orders/{no} 200",
    );

    // The client route, with the client secret the create handed out (issue 18).
    let secret = created["client_secret"].as_str().expect("a client secret");
    let order_id = created["order_id"].as_str().unwrap();
    let r = recharge_api::http::routes::handle(
        &status.state,
        recharge_api::http::ApiRequest {
            method: "GET".to_owned(),
            path: format!("/v1/client/orders/{order_id}"),
            raw_query: String::new(),
            headers: vec![("Authorization".to_owned(), format!("Bearer {secret}"))],
            body: Vec::new(),
        },
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    conforms(
        &serde_json::from_slice(&r.body).unwrap(),
        &schema(&spec, "ClientOrderView")["properties"],
        "GET /v1/client/orders/{order_id} 200",
    );

    let r = recharge_api::http::routes::handle(
        &status.state,
        signed(("ops", OPS_SECRET), SIGNED_AT, "GET", "/v1/balances", b""),
    )
    .await;
    assert_eq!(r.status, 200);
    let balances: Value = serde_json::from_slice(&r.body).unwrap();
    let accounts = balances["accounts"].as_array().unwrap();
    assert!(!accounts.is_empty());
    for a in accounts {
        conforms(
            a,
            &schema(&spec, "Balance")["properties"],
            "GET /v1/balances item",
        );
    }

    // Errors: the shape of every error answer.
    let r = recharge_api::http::routes::handle(
        &status.state,
        signed(
            ("demo", DEMO_SECRET),
            SIGNED_AT,
            "GET",
            "/v1/orders/nope",
            b"",
        ),
    )
    .await;
    assert_eq!(r.status, 404);
    let err: Value = serde_json::from_slice(&r.body).unwrap();
    let error_schema =
        &spec["components"]["responses"]["Error"]["content"]["application/json"]["schema"];
    conforms(
        &err["error"],
        &error_schema["properties"]["error"]["properties"],
        "404 error",
    );
}
