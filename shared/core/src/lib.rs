//! `recharge-core`: the domain of the recharge gateway. Types that are valid by construction, the order
//! state machine (docs/state-machine.md) as a pure function, and the ports (`OrderStore`, `SecretSource`, `Clock`) that
//! adapters implement. Nothing here speaks AWS or HTTP.

pub mod ids;
pub mod machine;
pub mod mask;
pub mod memory;
pub mod money;
pub mod msisdn;
pub mod order;
pub mod outcome;
pub mod product;
pub mod recon;
pub mod secrets;
pub mod store;
pub mod time;

pub use ids::{
    AppId, AttemptId, AttemptNo, IdError, MerchantOrderNo, OrderId, ProductCode, ProviderAccountId,
};
pub use machine::{Applied, Event, Policy, Refusal, apply};
pub use money::Fen;
pub use msisdn::{Carrier, Msisdn};
pub use order::{
    Anomaly, AnomalyKind, Attempt, AttemptState, Attention, NewOrder, Order, PublicStatus,
    PublicView, Resolution, Route, UnverifiedResult,
};
pub use outcome::{Finding, NextAction, Outcome, Reason, Report, Reported, SmsInstruction, Source};
pub use product::ProductKind;
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
