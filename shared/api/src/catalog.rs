//! The product catalog (DESIGN §5): data, loaded and checked once at cold start. Maps our product codes to a
//! kind, a face value, a merchant price, and an ordered list of routes to provider accounts.

use crate::error::ApiError;
use recharge_core::msisdn::{Carrier, Msisdn};
use recharge_core::{Fen, ProductCode, ProviderAccountId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// What a product delivers, and so how its account is validated and which protocols can serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// 话费快充
    MobileFast,
    /// 话费慢充
    MobileSlow,
    /// 游戏直充
    Game,
    /// 电费 (国网 / 南网)
    Electricity,
    /// 会员直充
    Vip,
    /// Carrier billing, MP flow: the user sends SMS.
    BillingSms,
    /// Carrier billing, PC flow: the user enters a verification code.
    BillingCode,
}

impl ProductKind {
    pub fn is_mobile_number(self) -> bool {
        match self {
            ProductKind::MobileFast
            | ProductKind::MobileSlow
            | ProductKind::BillingSms
            | ProductKind::BillingCode => true,
            ProductKind::Game | ProductKind::Electricity | ProductKind::Vip => false,
        }
    }

    /// How long an attempt of this kind may stay open without a definite answer before an operator must look
    /// at it (DESIGN §11): fast products 30 minutes, slow ones (slow top-ups, electricity) 72 hours.
    pub fn escalate_after(self) -> std::time::Duration {
        let minutes = match self {
            ProductKind::MobileFast
            | ProductKind::Game
            | ProductKind::Vip
            | ProductKind::BillingSms
            | ProductKind::BillingCode => 30,
            ProductKind::MobileSlow | ProductKind::Electricity => 72 * 60,
        };
        std::time::Duration::from_secs(minutes * 60)
    }

    /// Carrier billing needs a two-step protocol; everything else needs a one-step one.
    pub fn needs_two_step(self) -> bool {
        match self {
            ProductKind::BillingSms | ProductKind::BillingCode => true,
            ProductKind::MobileFast
            | ProductKind::MobileSlow
            | ProductKind::Game
            | ProductKind::Electricity
            | ProductKind::Vip => false,
        }
    }
}

/// One way to fulfil a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRoute {
    pub provider_account: ProviderAccountId,
    /// The provider's product code (`productid`, `money`, `goodsId`, …).
    pub provider_product: String,
    pub cost_fen: i64,
    /// Only for numbers of these carriers (mobile kinds); all carriers when absent.
    #[serde(default)]
    pub carriers: Option<Vec<Carrier>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub kind: ProductKind,
    pub name: String,
    pub face_value_fen: i64,
    /// What the merchant pays us.
    pub price_fen: i64,
    /// `extra` fields a merchant must send for this product (e.g. electricity region).
    #[serde(default)]
    pub required_extra: Vec<String>,
    pub routes: Vec<CatalogRoute>,
}

/// Routing settings of a provider account (not the protocol config, which lives with the account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Alert when the balance falls below this.
    #[serde(default)]
    pub low_balance_fen: Option<i64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub products: BTreeMap<ProductCode, Product>,
    #[serde(default)]
    pub accounts: BTreeMap<ProviderAccountId, AccountSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog: {0}")]
pub struct CatalogError(pub String);

impl Catalog {
    /// Parses and checks a catalog: positive amounts, at least one route per product, known accounts.
    pub fn from_json(
        text: &str,
        known_accounts: &HashSet<ProviderAccountId>,
    ) -> Result<Catalog, CatalogError> {
        let catalog: Catalog =
            serde_json::from_str(text).map_err(|e| CatalogError(e.to_string()))?;
        for (code, p) in &catalog.products {
            if p.face_value_fen <= 0 || p.price_fen <= 0 {
                return Err(CatalogError(format!(
                    "{code}: face value and price must be positive"
                )));
            }
            if p.routes.is_empty() {
                return Err(CatalogError(format!("{code}: has no route")));
            }
            for r in &p.routes {
                if !known_accounts.contains(&r.provider_account) {
                    return Err(CatalogError(format!(
                        "{code}: route to unknown provider account {}",
                        r.provider_account
                    )));
                }
                if r.cost_fen <= 0 {
                    return Err(CatalogError(format!("{code}: route cost must be positive")));
                }
            }
        }
        for id in catalog.accounts.keys() {
            if !known_accounts.contains(id) {
                return Err(CatalogError(format!(
                    "settings for unknown provider account {id}"
                )));
            }
        }
        Ok(catalog)
    }

    pub fn product(&self, code: &ProductCode) -> Option<&Product> {
        self.products.get(code)
    }

    pub fn settings(&self, account: &ProviderAccountId) -> AccountSettings {
        self.accounts
            .get(account)
            .cloned()
            .unwrap_or(AccountSettings {
                enabled: true,
                low_balance_fen: None,
            })
    }
}

/// A validated recharge target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The account as the provider needs it (a normalised phone number for mobile kinds).
    pub account: String,
    pub carrier: Option<Carrier>,
}

/// Validates the account for a product's kind, with a message that names the rule.
pub fn validate_account(product: &Product, account: &str) -> Result<Target, ApiError> {
    if product.kind.is_mobile_number() {
        let m = Msisdn::parse(account)
            .map_err(|e| ApiError::bad_request("invalid_account", e.to_string()))?;
        return Ok(Target {
            account: m.as_str().to_owned(),
            carrier: Some(m.carrier()),
        });
    }
    let a = account.trim();
    if a.is_empty() || a.chars().count() > 64 || a.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_account",
            "account: 1 to 64 characters, no control characters",
        ));
    }
    Ok(Target {
        account: a.to_owned(),
        carrier: None,
    })
}

impl Product {
    pub fn face_value(&self) -> Fen {
        Fen::new(self.face_value_fen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(ids: &[&str]) -> HashSet<ProviderAccountId> {
        ids.iter()
            .map(|i| ProviderAccountId::parse(i).unwrap())
            .collect()
    }

    const CATALOG: &str = r#"{
        "products": {
            "mobile.100": {"kind": "mobile_fast", "name": "话费100", "face_value_fen": 10000, "price_fen": 9980,
                "routes": [{"provider_account": "wky", "provider_product": "100", "cost_fen": 9850}]}
        },
        "accounts": {"wky": {"enabled": true, "low_balance_fen": 100000}}
    }"#;

    #[test]
    fn a_catalog_loads_and_checks_its_accounts() {
        let c = Catalog::from_json(CATALOG, &known(&["wky"])).unwrap();
        let p = c
            .product(&ProductCode::parse("mobile.100").unwrap())
            .unwrap();
        assert_eq!(p.face_value(), Fen::new(10_000));
        assert_eq!(
            c.settings(&ProviderAccountId::parse("wky").unwrap())
                .low_balance_fen,
            Some(100_000)
        );
        let err = Catalog::from_json(CATALOG, &known(&["other"])).unwrap_err();
        assert!(err.0.contains("unknown provider account wky"), "{err}");
    }

    #[test]
    fn accounts_are_validated_per_kind() {
        let c = Catalog::from_json(CATALOG, &known(&["wky"])).unwrap();
        let p = c
            .product(&ProductCode::parse("mobile.100").unwrap())
            .unwrap();
        let t = validate_account(p, "+86 138-0013-8000").unwrap();
        assert_eq!(t.account, "13800138000");
        assert_eq!(t.carrier, Some(Carrier::Mobile));
        assert_eq!(
            validate_account(p, "12345").unwrap_err().code(),
            "invalid_account"
        );
        let mut game = p.clone();
        game.kind = ProductKind::Game;
        assert_eq!(
            validate_account(&game, " player-1 ").unwrap().account,
            "player-1"
        );
        assert!(validate_account(&game, "").is_err());
        assert!(validate_account(&game, "a\nb").is_err());
    }
}
