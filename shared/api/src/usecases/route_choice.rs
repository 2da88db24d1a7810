//! Routing (docs/architecture.md §4): the first usable route of a product, in catalog order. A route is skipped when
//! its account is disabled, not loaded, lacks the capability the product needs, serves other carriers, has a last known
//! balance below the cost, costs more than the price, or was already tried for this order.

use crate::catalog::{Catalog, Product};
use recharge_core::msisdn::Carrier;
use recharge_core::store::BalanceSnapshot;
use recharge_core::{Fen, ProviderAccountId, Route};
use recharge_providers::Capabilities;
use std::collections::HashMap;

/// Why one candidate was passed over (logged, never shown to merchants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    AlreadyTried,
    Disabled,
    NotLoaded,
    Capability,
    Carrier,
    Balance { balance: Fen, cost: Fen },
    CostOverPrice,
}

/// The result of routing: the chosen route, and what was skipped on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub route: Option<Route>,
    pub skipped: Vec<(ProviderAccountId, Skip)>,
}

/// What routing needs to know about the accounts.
pub trait AccountView {
    fn capabilities(&self, account: &ProviderAccountId) -> Option<Capabilities>;

    /// An operator's runtime switch (docs/operations.md §3), if one was set: `Some(false)` for a disabled or draining
    /// account. `None` keeps the catalog's `enabled`.
    fn takes_new_orders(&self, _account: &ProviderAccountId) -> Option<bool> {
        None
    }
}

pub fn choose(
    catalog: &Catalog,
    product: &Product,
    carrier: Option<Carrier>,
    tried: &[ProviderAccountId],
    accounts: &dyn AccountView,
    balances: &HashMap<ProviderAccountId, BalanceSnapshot>,
) -> Decision {
    let mut skipped = Vec::new();
    for r in &product.routes {
        let skip = if tried.contains(&r.provider_account) {
            Some(Skip::AlreadyTried)
        } else if !accounts
            .takes_new_orders(&r.provider_account)
            .unwrap_or_else(|| catalog.settings(&r.provider_account).enabled)
        {
            Some(Skip::Disabled)
        } else if let Some(caps) = accounts.capabilities(&r.provider_account) {
            if caps.two_step != product.kind.needs_two_step() {
                Some(Skip::Capability)
            } else if let (Some(allowed), Some(c)) = (&r.carriers, carrier)
                && !allowed.contains(&c)
            {
                Some(Skip::Carrier)
            } else if r.cost_fen > product.price_fen {
                Some(Skip::CostOverPrice)
            } else {
                match balances.get(&r.provider_account) {
                    Some(b) if b.balance.get() < r.cost_fen => Some(Skip::Balance {
                        balance: b.balance,
                        cost: Fen::new(r.cost_fen),
                    }),
                    _ => None,
                }
            }
        } else {
            Some(Skip::NotLoaded)
        };
        match skip {
            Some(s) => skipped.push((r.provider_account.clone(), s)),
            None => {
                return Decision {
                    route: Some(Route {
                        provider_account: r.provider_account.clone(),
                        provider_product: r.provider_product.clone(),
                        cost: Fen::new(r.cost_fen),
                    }),
                    skipped,
                };
            }
        }
    }
    Decision {
        route: None,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recharge_core::{ProductCode, Timestamp};
    use std::collections::HashSet;

    struct Accounts(HashMap<ProviderAccountId, Capabilities>);
    impl AccountView for Accounts {
        fn capabilities(&self, a: &ProviderAccountId) -> Option<Capabilities> {
            self.0.get(a).copied()
        }
    }

    fn id(s: &str) -> ProviderAccountId {
        ProviderAccountId::parse(s).unwrap()
    }

    fn caps(two_step: bool) -> Capabilities {
        Capabilities {
            query_by_our_id: true,
            dedupes_our_id: true,
            sends_callbacks: true,
            callback_signed: true,
            has_balance: true,
            two_step,
            provider_side_failover: false,
        }
    }

    fn setup() -> (Catalog, Accounts) {
        let text = r#"{"products": {"mobile.100": {"kind": "mobile_fast", "name": "x", "face_value_fen": 10000,
            "price_fen": 9980, "routes": [
              {"provider_account": "a", "provider_product": "100", "cost_fen": 9850, "carriers": ["unicom"]},
              {"provider_account": "b", "provider_product": "100", "cost_fen": 9900},
              {"provider_account": "c", "provider_product": "100", "cost_fen": 9990},
              {"provider_account": "d", "provider_product": "100", "cost_fen": 9800}
            ]}},
            "accounts": {"b": {"enabled": true}}}"#;
        let known: HashSet<_> = ["a", "b", "c", "d"].iter().map(|s| id(s)).collect();
        let catalog = Catalog::from_json(text, &known).unwrap();
        let accounts = Accounts(
            ["a", "b", "c", "d"]
                .iter()
                .map(|s| (id(s), caps(false)))
                .collect(),
        );
        (catalog, accounts)
    }

    fn product(c: &Catalog) -> Product {
        c.product(&ProductCode::parse("mobile.100").unwrap())
            .unwrap()
            .clone()
    }

    #[test]
    fn the_first_usable_route_in_catalog_order_wins() {
        let (c, accts) = setup();
        let d = choose(
            &c,
            &product(&c),
            Some(Carrier::Unicom),
            &[],
            &accts,
            &HashMap::new(),
        );
        assert_eq!(d.route.unwrap().provider_account, id("a"));
    }

    #[test]
    fn routes_for_other_carriers_tried_accounts_low_balances_and_dear_routes_are_skipped() {
        let (c, accts) = setup();
        let balances = HashMap::from([(
            id("b"),
            BalanceSnapshot {
                account: id("b"),
                balance: Fen::new(100),
                at: Timestamp::from_millis(0),
            },
        )]);
        let d = choose(
            &c,
            &product(&c),
            Some(Carrier::Mobile),
            &[],
            &accts,
            &balances,
        );
        assert_eq!(d.route.unwrap().provider_account, id("d"));
        assert_eq!(
            d.skipped.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
            vec![
                Skip::Carrier,
                Skip::Balance {
                    balance: Fen::new(100),
                    cost: Fen::new(9900)
                },
                Skip::CostOverPrice
            ]
        );
        let none = choose(
            &c,
            &product(&c),
            Some(Carrier::Mobile),
            &[id("d")],
            &accts,
            &balances,
        );
        assert_eq!(none.route, None);
    }

    #[test]
    fn disabled_and_incapable_accounts_are_skipped() {
        let (mut c, mut accts) = setup();
        c.accounts.get_mut(&id("b")).unwrap().enabled = false;
        accts.0.insert(id("d"), caps(true));
        let d = choose(
            &c,
            &product(&c),
            Some(Carrier::Mobile),
            &[],
            &accts,
            &HashMap::new(),
        );
        assert_eq!(d.route, None);
        assert!(d.skipped.contains(&(id("b"), Skip::Disabled)));
        assert!(d.skipped.contains(&(id("d"), Skip::Capability)));
    }
}
