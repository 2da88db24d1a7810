//! The registry: the one place that knows every adapter. It loads an account with its credentials into a
//! [`Provider`], and runs each flow of a provider call (submit, probe, query, verify, balance, callback
//! review) once for every protocol: fresh context, build, execute, parse, then the checks every answer gets
//! (docs/providers/README.md §4): unlisted codes counted, answers about another order and amounts that do not fit
//! turned into findings (and the former into Unknown), a connection never made into a refusal.

use crate::account::{ConfigError, Protocol, ProviderAccount, redacted};
use crate::adapter::{
    BalanceError, CallbackEvent, Capabilities, Parsed, ProviderAdapter, QueryRequest,
    RequestContext, SubmitRequest, VerificationRequest,
};
use crate::codes::{self, CodeOverrides, Meaning, Phase};
use crate::executor::{Executor, TransportError};
use crate::http::{HttpRequest, HttpResponse};
use crate::latency::{self, CallPhase, OutcomeClass};
use crate::{ice_microservice, openapi_rsa, sms_billing, suka_xml, wikeyun};
use recharge_core::{
    AttemptId, AttemptNo, Fen, Finding, Order, Outcome, Policy, Reason, Report, Reported, Timestamp,
};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// Typed credentials of one account, parsed from the secret's JSON text. Debug redacts every secret.
#[derive(Debug)]
pub enum Credentials {
    SukaXml(suka_xml::Credentials),
    Wikeyun(wikeyun::Credentials),
    IceMicroservice(ice_microservice::Credentials),
    OpenapiRsa(openapi_rsa::Credentials),
    SmsBilling(sms_billing::Credentials),
}

impl Credentials {
    /// Parses and validates (non-empty fields, RSA keys parse) the secret for `protocol`.
    pub fn from_secret_json(protocol: Protocol, text: &str) -> Result<Credentials, ConfigError> {
        let err = |message: String| ConfigError::Secret { protocol, message };
        Ok(match protocol {
            Protocol::SukaXml => Credentials::SukaXml(
                serde_json::from_str::<suka_xml::Credentials>(text)
                    .map_err(|e| err(redacted(&e)))?
                    .validated()
                    .map_err(err)?,
            ),
            Protocol::Wikeyun => Credentials::Wikeyun(
                serde_json::from_str::<wikeyun::Credentials>(text)
                    .map_err(|e| err(redacted(&e)))?
                    .validated()
                    .map_err(err)?,
            ),
            Protocol::OpenapiRsa => {
                Credentials::OpenapiRsa(openapi_rsa::Credentials::from_json(text).map_err(err)?)
            }
            Protocol::IceMicroservice => Credentials::IceMicroservice(
                serde_json::from_str::<ice_microservice::Credentials>(text)
                    .map_err(|e| err(redacted(&e)))?
                    .validated()
                    .map_err(err)?,
            ),
            Protocol::SmsBilling => Credentials::SmsBilling(
                serde_json::from_str::<sms_billing::Credentials>(text)
                    .map_err(|e| err(redacted(&e)))?
                    .validated()
                    .map_err(err)?,
            ),
        })
    }
}

/// A loaded account: configuration, its adapter (holding the credentials) and its limits.
#[derive(Debug)]
pub struct Provider {
    /// The configuration the adapter was built from (with the operators' code overrides, if any, in `codes`).
    pub account: ProviderAccount,
    pub adapter: Box<dyn ProviderAdapter>,
    /// The secret's text, kept to rebuild the adapter when the operators' code overrides change. Debug
    /// redacts it.
    secret: SecretString,
}

impl Provider {
    /// Loads an account with its secret's JSON text. Every option, endpoint and key is checked here.
    pub fn load(account: ProviderAccount, secret_json: &str) -> Result<Provider, ConfigError> {
        let mut p = Provider::build(account, secret_json)?;
        p.secret = SecretString::from(secret_json.to_owned());
        Ok(p)
    }

    /// This account rebuilt with the operators' runtime code overrides on top of its configured `codes`
    /// (configured defaults < account config < operator; docs/operations.md §3). Fails as a load would, with
    /// the loader's message: an override that takes away a vocabulary the protocol requires is refused.
    pub fn with_code_overrides(&self, overrides: &CodeOverrides) -> Result<Provider, ConfigError> {
        let mut account = self.account.clone();
        account.codes = codes::layered(&self.account.codes, overrides);
        let mut p = Provider::build(account, self.secret.expose_secret())?;
        p.secret = self.secret.clone();
        Ok(p)
    }

    fn build(account: ProviderAccount, secret_json: &str) -> Result<Provider, ConfigError> {
        let creds = Credentials::from_secret_json(account.protocol, secret_json)?;
        let adapter: Box<dyn ProviderAdapter> = match creds {
            Credentials::SukaXml(c) => Box::new(suka_xml::SukaXml::new(&account, c)?),
            Credentials::Wikeyun(c) => Box::new(wikeyun::Wikeyun::new(&account, c)?),
            Credentials::IceMicroservice(c) => {
                Box::new(ice_microservice::IceMicroservice::new(&account, c)?)
            }
            Credentials::OpenapiRsa(c) => Box::new(openapi_rsa::OpenapiRsa::new(&account, c)?),
            Credentials::SmsBilling(c) => Box::new(sms_billing::SmsBilling::new(&account, c)?),
        };
        if let Some(narrow) = account.capabilities {
            check_narrowing(narrow, adapter.capabilities())?;
        }
        Ok(Provider {
            account,
            adapter,
            secret: SecretString::default(),
        })
    }

    /// The protocol's capabilities, narrowed by the account's configuration.
    pub fn capabilities(&self) -> Capabilities {
        self.account
            .capabilities
            .unwrap_or_else(|| self.adapter.capabilities())
    }

    /// The state machine's timing rules for this account.
    pub fn policy(&self) -> Policy {
        let caps = self.capabilities();
        Policy {
            // The sweep must not call an attempt lost before our own HTTP call could have timed out.
            call_timeout: Duration::from_millis(self.account.timeouts.call_ms)
                .saturating_add(Duration::from_secs(20)),
            not_found_grace: Duration::from_secs(self.account.not_found_grace_secs),
            // Only a provider that refuses a reused id makes "not found" safe to fail over (docs/providers/README.md §3
            // rule 3); and there a resubmit of the same id is the safe probe that replaces "not found" altogether
            // (docs/providers/README.md §4 rule 4).
            not_found_failover: caps.dedupes_our_id,
            not_found_probe: caps.dedupes_our_id,
            ..Policy::default()
        }
    }
}

/// What a provider call came to: the outcome to record, and the amounts and findings that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub report: Report,
}

impl From<Outcome> for Answer {
    fn from(outcome: Outcome) -> Answer {
        Answer {
            outcome,
            report: Report::default(),
        }
    }
}

/// What an answer about one attempt must fit: its id, the route's cost, the order's face value, and the
/// provider's own number once we know it.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub attempt: AttemptId,
    pub cost: Fen,
    pub face: Fen,
    pub provider_ref: Option<&'a str>,
}

impl<'a> Expect<'a> {
    /// What answers about attempt `no` of `order` must fit; `None` if the order has no such attempt.
    pub fn of(order: &'a Order, no: AttemptNo) -> Option<Expect<'a>> {
        let a = order.attempt(no)?;
        Some(Expect {
            attempt: order.attempt_id(no),
            cost: a.route().cost,
            face: order.face_value(),
            provider_ref: a.provider_ref(),
        })
    }
}

/// How far one call got: a parsed answer (a transport failure after the connection opened included), or
/// nothing sent at all.
enum Exchange {
    Parsed(Parsed),
    /// No request could be built: nothing was sent.
    NotBuilt(crate::AdapterError),
    /// The connection never opened: nothing was sent.
    NotConnected(TransportError),
}

/// Every route sells one unit: the merchant cannot set a quantity (docs/providers/README.md §4 rule 6).
const EXPECTED_QUANTITY: u32 = 1;

impl Provider {
    /// Asks for the balance (see `balance_untimed`), recording the call's latency; a protocol without a
    /// balance API made no call and records nothing.
    pub async fn balance(&self, executor: &Executor, now: Timestamp) -> Result<Fen, BalanceError> {
        let started = std::time::Instant::now();
        let r = self.balance_untimed(executor, now).await;
        let class = match &r {
            Ok(_) => Some(OutcomeClass::Answered),
            Err(BalanceError::Unknown(reason)) if reason.code == "request_not_built" => {
                Some(OutcomeClass::NotSent)
            }
            Err(BalanceError::Unknown(_)) => Some(OutcomeClass::Unknown),
            Err(BalanceError::Unsupported) => None,
        };
        if let Some(class) = class {
            latency::record(
                self.account.id.as_str(),
                CallPhase::Balance,
                class,
                started.elapsed(),
            );
        }
        r
    }

    /// Awaits `call`, recording how long it took and how it came out.
    async fn timed(&self, phase: CallPhase, call: impl Future<Output = Answer>) -> Answer {
        let started = std::time::Instant::now();
        let answer = call.await;
        latency::record(
            self.account.id.as_str(),
            phase,
            OutcomeClass::of(&answer.outcome),
            started.elapsed(),
        );
        answer
    }

    /// Builds a request with `build`, sends it and parses the answer with `parse`. What a request that was
    /// never built or never connected means is each caller's (it differs by call); any other transport failure
    /// may have reached the provider and is the transport's outcome (`Unknown`).
    async fn exchange(
        &self,
        executor: &Executor,
        now: Timestamp,
        build: impl FnOnce(&RequestContext) -> Result<HttpRequest, crate::AdapterError>,
        parse: impl FnOnce(&HttpResponse) -> Parsed,
    ) -> Exchange {
        let http = match self.fresh(now).and_then(|ctx| build(&ctx)) {
            Ok(h) => h,
            Err(e) => return Exchange::NotBuilt(e),
        };
        match executor.execute(&http, &self.account.limits()).await {
            Ok(resp) => Exchange::Parsed(parse(&resp)),
            Err(e @ TransportError::NotConnected(_)) => Exchange::NotConnected(e),
            Err(e) => Exchange::Parsed(e.to_outcome().into()),
        }
    }

    fn fresh(&self, now: Timestamp) -> Result<RequestContext, crate::AdapterError> {
        RequestContext::fresh(now)
    }

    /// Submits one attempt. A request that could not be built, or whose connection was never made, sent
    /// nothing: a definite refusal, failover allowed (docs/providers/README.md §4 rule 3). Anything after the first
    /// request byte may have been executed: `Unknown`. Records the call's latency.
    pub async fn submit(&self, executor: &Executor, req: &SubmitRequest, now: Timestamp) -> Answer {
        self.timed(CallPhase::Submit, async {
            let exchange = self.exchange(
                executor,
                now,
                |ctx| self.adapter.build_submit(req, ctx),
                |resp| self.adapter.parse_submit(resp),
            );
            let parsed = match exchange.await {
                Exchange::Parsed(p) => p,
                Exchange::NotBuilt(e) => return refused("request_not_built", e.to_string()),
                Exchange::NotConnected(e) => return refused("not_connected", e.to_string()),
            };
            self.review(Phase::Submit, parsed, &submit_expect(req))
        })
        .await
    }

    /// The safe probe of an attempt a deduplicating provider keeps answering "not found" about
    /// (docs/providers/README.md §4 rule 4): resubmit the *same* attempt id to the same account. "Duplicate" means the
    /// provider has it (`Accepted`); an acceptance means it has it now, once; a refusal that nothing was
    /// created. A probe that never connected learned nothing: `Unknown`. Records the call's latency.
    pub async fn probe(&self, executor: &Executor, req: &SubmitRequest, now: Timestamp) -> Answer {
        self.timed(CallPhase::Probe, async {
            let exchange = self.exchange(
                executor,
                now,
                |ctx| self.adapter.build_submit(req, ctx),
                |resp| self.adapter.parse_submit(resp),
            );
            let mut parsed = match exchange.await {
                Exchange::Parsed(p) => p,
                Exchange::NotBuilt(e) => return unknown_answer("probe_not_built", e.to_string()),
                Exchange::NotConnected(e) => e.to_outcome().into(),
            };
            if parsed.meaning == Some(Meaning::Duplicate) {
                parsed.outcome = Outcome::Accepted { provider_ref: None };
            }
            self.review(Phase::Submit, parsed, &submit_expect(req))
        })
        .await
    }

    /// Queries one attempt. Nothing a query says can refuse an attempt: a query that never connected, or
    /// could not be built, is `Unknown` (nothing learned). Records the call's latency.
    pub async fn query(
        &self,
        executor: &Executor,
        req: &QueryRequest,
        expect: &Expect<'_>,
        now: Timestamp,
    ) -> Answer {
        self.timed(CallPhase::Query, async {
            let exchange = self.exchange(
                executor,
                now,
                |ctx| self.adapter.build_query(req, ctx),
                |resp| self.adapter.parse_query(resp),
            );
            let parsed = match exchange.await {
                Exchange::Parsed(p) => p,
                Exchange::NotBuilt(e) => return unknown_answer("query_not_built", e.to_string()),
                Exchange::NotConnected(e) => e.to_outcome().into(),
            };
            self.review(Phase::Query, parsed, expect)
        })
        .await
    }

    /// Sends the carrier-billing verification code (second step). A request that was never sent (not built,
    /// never connected) charged nothing: the provider's order simply expires unpaid, so the attempt fails
    /// without failover (the user's code is used up; it is never sent twice). Records the call's latency.
    pub async fn verify(
        &self,
        executor: &Executor,
        req: &VerificationRequest,
        expect: &Expect<'_>,
        now: Timestamp,
    ) -> Answer {
        self.timed(CallPhase::Verify, async {
            let unpaid = |code: &str, why: String| -> Answer {
                Outcome::Failed {
                    failover_allowed: false,
                    reason: Reason::new(code, why),
                }
                .into()
            };
            let exchange = self.exchange(
                executor,
                now,
                |ctx| self.adapter.build_verification(req, ctx),
                |resp| self.adapter.parse_verification(resp),
            );
            let parsed = match exchange.await {
                Exchange::Parsed(p) => p,
                Exchange::NotBuilt(e) => return unpaid("request_not_built", e.to_string()),
                Exchange::NotConnected(e) => return unpaid("not_connected", e.to_string()),
            };
            self.review(Phase::Submit, parsed, expect)
        })
        .await
    }

    /// Asks for the account's balance.
    async fn balance_untimed(
        &self,
        executor: &Executor,
        now: Timestamp,
    ) -> Result<Fen, BalanceError> {
        let http = self
            .fresh(now)
            .and_then(|ctx| self.adapter.build_balance(&ctx))
            .map_err(|e| match e {
                crate::AdapterError::Unsupported(_) => BalanceError::Unsupported,
                other => BalanceError::Unknown(Reason::new("request_not_built", other.to_string())),
            })?;
        let resp = executor
            .execute(&http, &self.account.limits())
            .await
            .map_err(|e| BalanceError::Unknown(Reason::new("transport", e.to_string())))?;
        self.adapter.parse_balance(&resp)
    }

    /// The checks every verified callback gets once the order it names is known: its code counted when
    /// unlisted, its amounts checked against the route and the order, and a provider number that contradicts
    /// the one we hold raised as a finding. The callback names our attempt id under a signature, so it is
    /// about our order and its outcome stands; the other number is for an operator to look at.
    pub fn review_callback(&self, event: CallbackEvent, expect: &Expect<'_>) -> Answer {
        let echoed_ref = event.provider_ref.clone();
        let parsed = Parsed {
            outcome: event.outcome,
            meaning: None,
            echoed: None,
            reported: event.reported,
            unlisted: event.unlisted,
        };
        let mut answer = self.review(Phase::Callback, parsed, expect);
        if let (Some(known), Some(said)) = (expect.provider_ref, echoed_ref.as_deref())
            && known != said
        {
            let f = Finding::ForeignOrder {
                echoed: said.to_owned(),
            };
            self.alert(expect, std::slice::from_ref(&f));
            answer.report.findings.insert(0, f);
        }
        answer
    }

    /// The checks of docs/providers/README.md §4 rules 1 and 5 on one parsed answer.
    fn review(&self, phase: Phase, parsed: Parsed, expect: &Expect<'_>) -> Answer {
        let account = self.account.id.as_str();
        if let Some(u) = &parsed.unlisted {
            codes::note_unlisted(account, u);
        }
        let mut outcome = parsed.outcome;
        let mut findings = Vec::new();
        if let Some(echoed) = &parsed.echoed
            && echoed != expect.attempt.as_str()
        {
            findings.push(Finding::ForeignOrder {
                echoed: echoed.clone(),
            });
            outcome = Outcome::Unknown {
                reason: Reason::new(
                    "foreign_answer",
                    format!(
                        "the {phase} answer names order {echoed}, not {}",
                        expect.attempt
                    ),
                ),
            };
        }
        findings.extend(amount_findings(&parsed.reported, expect));
        if let Outcome::PartiallySucceeded { delivered } = outcome
            && (delivered.get() <= 0 || delivered > expect.face)
        {
            if delivered > expect.face {
                findings.push(Finding::DeliveredAboveFace {
                    delivered,
                    face: expect.face,
                });
            }
            outcome = Outcome::Unknown {
                reason: Reason::new(
                    "partial_out_of_range",
                    format!(
                        "partial delivery of {delivered} yuan for a face value of {} yuan",
                        expect.face
                    ),
                ),
            };
        }
        if !findings.is_empty() {
            self.alert(expect, &findings);
        }
        Answer {
            outcome,
            report: Report {
                reported: parsed.reported,
                findings,
            },
        }
    }

    fn alert(&self, expect: &Expect<'_>, findings: &[Finding]) {
        for f in findings {
            tracing::error!(
                alert = "provider_answer_mismatch",
                finding = f.as_str(),
                provider_account = %self.account.id,
                attempt_id = %expect.attempt,
                detail = %f,
                "a provider answer does not fit the attempt"
            );
        }
    }
}

fn submit_expect(req: &SubmitRequest) -> Expect<'_> {
    Expect {
        attempt: req.attempt.clone(),
        cost: req.route.cost,
        face: req.face_value,
        provider_ref: None,
    }
}

fn refused(code: &str, why: String) -> Answer {
    Outcome::Rejected {
        failover_allowed: true,
        reason: Reason::new(code, why),
    }
    .into()
}

fn unknown_answer(code: &str, why: String) -> Answer {
    Outcome::Unknown {
        reason: Reason::new(code, why),
    }
    .into()
}

/// Reported amounts against the route and the order (docs/providers/README.md §4 rule 5). Findings only: nothing is
/// decided on a reported amount alone.
fn amount_findings(r: &Reported, expect: &Expect<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(cost) = r.cost
        && cost != expect.cost
    {
        out.push(Finding::CostMismatch {
            reported: cost,
            route: expect.cost,
        });
    }
    if let Some(face) = r.face
        && face != expect.face
    {
        out.push(Finding::FaceMismatch {
            reported: face,
            expected: expect.face,
        });
    }
    if let Some(q) = r.quantity
        && q != EXPECTED_QUANTITY
    {
        out.push(Finding::QuantityMismatch {
            reported: q,
            expected: EXPECTED_QUANTITY,
        });
    }
    if let Some(d) = r.delivered
        && d > expect.face
    {
        out.push(Finding::DeliveredAboveFace {
            delivered: d,
            face: expect.face,
        });
    }
    out
}

fn check_narrowing(narrow: Capabilities, full: Capabilities) -> Result<(), ConfigError> {
    let pairs = [
        (
            "query_by_our_id",
            narrow.query_by_our_id,
            full.query_by_our_id,
        ),
        ("dedupes_our_id", narrow.dedupes_our_id, full.dedupes_our_id),
        (
            "sends_callbacks",
            narrow.sends_callbacks,
            full.sends_callbacks,
        ),
        (
            "callback_signed",
            narrow.callback_signed,
            full.callback_signed,
        ),
        ("has_balance", narrow.has_balance, full.has_balance),
        ("two_step", narrow.two_step, full.two_step),
        (
            "provider_side_failover",
            narrow.provider_side_failover,
            full.provider_side_failover,
        ),
    ];
    for (name, n, f) in pairs {
        if n && !f {
            return Err(ConfigError::Capabilities(format!(
                "{name} is claimed but the protocol (with these options) cannot do it"
            )));
        }
    }
    if narrow.two_step != full.two_step {
        return Err(ConfigError::Capabilities(
            "two_step is a property of the protocol and cannot be changed".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Protocol;
    use std::time::Duration;

    const SUKA_TOML: &str = r#"
id = "dingyin-1"
protocol = "suka-xml"
secret_name = "recharge/provider/dingyin-1"
not_found_grace_secs = 900

[endpoints]
submit = "http://dy.example.com:9086/gameonlinepay.do"
query = "http://dy.example.com:8001/searchpay.do"
balance = "http://dy.example.com:9086/searchbalance.do"

[timeouts]
call_ms = 8000

[options]
callback_reply = "success"
query_sign = "lower"
"#;

    #[test]
    fn an_account_loads_from_toml_with_its_options() {
        let acct = ProviderAccount::from_toml(SUKA_TOML).unwrap();
        assert_eq!(acct.protocol, Protocol::SukaXml);
        let p = Provider::load(acct, r#"{"userid":"10004927","key":"k"}"#).unwrap();
        let policy = p.policy();
        assert_eq!(policy.not_found_grace, Duration::from_secs(900));
        assert!(policy.call_timeout > Duration::from_millis(8000));
        assert!(policy.not_found_failover, "001 dedupes sporderid");
        assert_eq!(p.account.limits().call_timeout, Duration::from_millis(8000));
        assert_eq!(
            p.adapter
                .callback_ack(crate::adapter::CallbackAck::Accepted)
                .body,
            b"success"
        );
    }

    #[test]
    fn every_protocol_loads_from_json() {
        let public = include_str!("openapi_rsa/fixtures/004_rsa_test_public_key.pem");
        let private = include_str!("openapi_rsa/fixtures/004_rsa_test_private_key.pem");
        let cases = [
            (
                "suka-xml",
                r#"{"submit":"http://h/a","query":"http://h/b"}"#,
                "null",
                r#"{"userid":"1","key":"k"}"#.to_owned(),
            ),
            (
                "wikeyun",
                r#"{"submit":"https://h/a","query":"https://h/b","balance":"https://h/c"}"#,
                r#"{"store_id":"1234"}"#,
                r#"{"app_key":"100001","app_secret":"s"}"#.to_owned(),
            ),
            (
                "ice-microservice",
                r#"{"submit":"http://h/a","query":"http://h/b"}"#,
                r#"{"company":"彩生活","supplier":"中国移动"}"#,
                r#"{"app_id":"A","token":"t","access_token":"x"}"#.to_owned(),
            ),
            (
                "openapi-rsa",
                r#"{"submit":"https://h/a","query":"https://h/b"}"#,
                r#"{"success_status":0}"#,
                serde_json::json!({"business_id":"b","merchant_id":"m","private_key_pem":private,"platform_public_key_pem":public}).to_string(),
            ),
            (
                "sms-billing",
                r#"{"submit":"https://h/a"}"#,
                r#"{"flow":"mp"}"#,
                r#"{"channelcode":"c","password":"p"}"#.to_owned(),
            ),
        ];
        for (protocol, endpoints, options, secret) in cases {
            let json = format!(
                r#"{{"id":"acct-1","protocol":"{protocol}","secret_name":"s","endpoints":{endpoints},"options":{options},"codes":{{"query":{{"2":"success"}}}}}}"#
            );
            let acct = ProviderAccount::from_json(&json).unwrap();
            let p = Provider::load(acct, &secret).unwrap_or_else(|e| panic!("{protocol}: {e}"));
            assert_eq!(p.account.protocol.as_str(), protocol);
            let dbg = format!("{p:?}");
            for secret_value in ["\"k\"", "app_secret\":\"s", "\"t\"", "MIIE", "\"p\""] {
                assert!(
                    !dbg.contains(secret_value),
                    "{protocol} leaks {secret_value} in {dbg}"
                );
            }
        }
    }

    #[test]
    fn unknown_fields_protocols_and_bad_secrets_fail_at_load() {
        assert!(
            ProviderAccount::from_json(
                r#"{"id":"a","protocol":"ofpay","secret_name":"s","endpoints":{}}"#
            )
            .is_err()
        );
        assert!(
            ProviderAccount::from_json(
                r#"{"id":"a","protocol":"wikeyun","secret_name":"s","endpoints":{},"colour":1}"#
            )
            .is_err()
        );
        assert!(
            ProviderAccount::from_json(
                r#"{"id":"Bad Id","protocol":"wikeyun","secret_name":"s","endpoints":{}}"#
            )
            .is_err()
        );
        assert!(matches!(
            Credentials::from_secret_json(Protocol::SukaXml, "not json"),
            Err(ConfigError::Secret { .. })
        ));
        let e =
            Credentials::from_secret_json(Protocol::Wikeyun, r#"{"app_key":"1","app_secret":""}"#)
                .unwrap_err();
        assert!(e.to_string().contains("app_secret"));
    }

    #[test]
    fn operator_overrides_rebuild_the_adapter_over_the_account_config_or_fail_as_a_load_would() {
        let public = include_str!("openapi_rsa/fixtures/004_rsa_test_public_key.pem");
        let private = include_str!("openapi_rsa/fixtures/004_rsa_test_private_key.pem");
        let acct = ProviderAccount::from_json(
            r#"{"id":"acct-1","protocol":"openapi-rsa","secret_name":"s",
                "endpoints":{"submit":"https://h/a","query":"https://h/b"},"options":{"success_status":0},
                "codes":{"submit":{"5":"refusal"},"query":{"2":"success","3":"failure"}}}"#,
        )
        .unwrap();
        let secret =
            serde_json::json!({"business_id":"b","merchant_id":"m","private_key_pem":private,
            "platform_public_key_pem":public})
            .to_string();
        let base = Provider::load(acct, &secret).unwrap();
        let ops: CodeOverrides =
            serde_json::from_str(r#"{"submit":{"7777":"refusal"},"query":{"3":"failure_final"}}"#)
                .unwrap();
        let layered = base.with_code_overrides(&ops).unwrap();
        assert_eq!(
            layered.account.codes[&Phase::Submit]["5"],
            Meaning::Refusal,
            "the account's own codes stay under the operator's"
        );
        assert_eq!(
            layered.account.codes[&Phase::Submit]["7777"],
            Meaning::Refusal
        );
        assert_eq!(
            layered.account.codes[&Phase::Query]["3"],
            Meaning::FailureFinal
        );
        assert!(
            !base.account.codes[&Phase::Submit].contains_key("7777"),
            "the base is untouched"
        );
        // The rebuilt one can be rebuilt again (it kept the secret), and says nothing of it in Debug.
        assert!(layered.with_code_overrides(&CodeOverrides::new()).is_ok());
        assert!(!format!("{layered:?}").contains("MII"), "{layered:?}");
        // Taking away the only success code of the query is what the loader refuses: same message.
        let no_success: CodeOverrides =
            serde_json::from_str(r#"{"query":{"2":"accepted"}}"#).unwrap();
        let e = base.with_code_overrides(&no_success).unwrap_err();
        assert!(
            e.to_string().contains("codes.query") && e.to_string().contains("success"),
            "{e}"
        );
    }

    #[test]
    fn capabilities_can_be_narrowed_but_not_widened() {
        let base = |caps: &str| {
            ProviderAccount::from_json(&format!(
                r#"{{"id":"a","protocol":"suka-xml","secret_name":"s","endpoints":{{"submit":"http://h/a","query":"http://h/b"}},"capabilities":{caps}}}"#
            ))
            .unwrap()
        };
        let secret = r#"{"userid":"1","key":"k"}"#;
        let narrow = r#"{"query_by_our_id":true,"dedupes_our_id":false,"sends_callbacks":true,"callback_signed":true,"has_balance":false,"two_step":false,"provider_side_failover":false}"#;
        let p = Provider::load(base(narrow), secret).unwrap();
        assert!(!p.capabilities().dedupes_our_id);
        assert!(!p.policy().not_found_failover);
        // No balance endpoint configured, so claiming a balance API is refused.
        let wide = narrow.replace("\"has_balance\":false", "\"has_balance\":true");
        assert!(matches!(
            Provider::load(base(&wide), secret),
            Err(ConfigError::Capabilities(_))
        ));
    }

    fn suka() -> Provider {
        let acct = ProviderAccount::from_toml(SUKA_TOML).unwrap();
        Provider::load(acct, r#"{"userid":"10004927","key":"k"}"#).unwrap()
    }

    fn attempt() -> AttemptId {
        AttemptId::parse("7JUWX4CXN3GSIQOKCCTK01").unwrap()
    }

    fn expect(id: &AttemptId) -> Expect<'static> {
        Expect {
            attempt: id.clone(),
            cost: Fen::new(9_850),
            face: Fen::new(10_000),
            provider_ref: Some("XS1"),
        }
    }

    #[test]
    fn an_answer_that_names_another_order_is_unknown_with_a_finding() {
        let p = suka();
        let id = attempt();
        let parsed = Parsed::from(Outcome::Succeeded { provider_ref: None })
            .echoing(Some("OTHERORDERXXXXXXXXXX01".to_owned()));
        let a = p.review(Phase::Query, parsed, &expect(&id));
        assert!(
            matches!(a.outcome, Outcome::Unknown { reason } if reason.code == "foreign_answer")
        );
        assert_eq!(
            a.report.findings,
            vec![Finding::ForeignOrder {
                echoed: "OTHERORDERXXXXXXXXXX01".to_owned()
            }]
        );
        // Our own id echoed: nothing to say.
        let ours = Parsed::from(Outcome::Succeeded { provider_ref: None })
            .echoing(Some(id.as_str().to_owned()));
        let a = p.review(Phase::Query, ours, &expect(&id));
        assert!(matches!(a.outcome, Outcome::Succeeded { .. }) && a.report.findings.is_empty());
    }

    #[test]
    fn reported_amounts_that_do_not_fit_are_findings_and_decide_nothing() {
        let p = suka();
        let id = attempt();
        let parsed = Parsed::from(Outcome::Succeeded { provider_ref: None }).reporting(Reported {
            cost: Some(Fen::new(9_990)),
            face: Some(Fen::new(5_000)),
            delivered: None,
            quantity: Some(100),
        });
        let a = p.review(Phase::Query, parsed, &expect(&id));
        assert!(
            matches!(a.outcome, Outcome::Succeeded { .. }),
            "{:?}",
            a.outcome
        );
        let kinds: Vec<&str> = a.report.findings.iter().map(Finding::as_str).collect();
        assert_eq!(
            kinds,
            ["cost_mismatch", "face_mismatch", "quantity_mismatch"]
        );
        assert_eq!(a.report.reported.cost, Some(Fen::new(9_990)));
        // What fits is silent.
        let fits = Parsed::from(Outcome::Succeeded { provider_ref: None }).reporting(Reported {
            cost: Some(Fen::new(9_850)),
            face: Some(Fen::new(10_000)),
            delivered: Some(Fen::new(10_000)),
            quantity: Some(1),
        });
        assert!(
            p.review(Phase::Query, fits, &expect(&id))
                .report
                .findings
                .is_empty()
        );
    }

    #[test]
    fn a_partial_delivery_above_the_face_value_is_unknown() {
        let p = suka();
        let id = attempt();
        for delivered in [Fen::new(10_001), Fen::new(0), Fen::new(-5)] {
            let parsed = Parsed::from(Outcome::PartiallySucceeded { delivered });
            let a = p.review(Phase::Callback, parsed, &expect(&id));
            assert!(
                matches!(a.outcome, Outcome::Unknown { .. }),
                "{delivered:?}"
            );
        }
        let half = Parsed::from(Outcome::PartiallySucceeded {
            delivered: Fen::new(5_000),
        });
        assert!(matches!(
            p.review(Phase::Callback, half, &expect(&id)).outcome,
            Outcome::PartiallySucceeded { .. }
        ));
    }

    #[test]
    fn a_callback_that_contradicts_the_providers_own_number_is_raised_and_its_signed_outcome_stands()
     {
        let p = suka();
        let id = attempt();
        let event = CallbackEvent {
            attempt: id.clone(),
            outcome: Outcome::Succeeded {
                provider_ref: Some("XS2".to_owned()),
            },
            provider_ref: Some("XS2".to_owned()),
            trust: crate::CallbackTrust::Signed,
            reported: Reported::default(),
            unlisted: None,
        };
        let a = p.review_callback(event, &expect(&id));
        assert!(
            matches!(a.outcome, Outcome::Succeeded { .. }),
            "{:?}",
            a.outcome
        );
        assert_eq!(a.report.findings[0].as_str(), "foreign_order");
    }
}
