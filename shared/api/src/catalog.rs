//! The product catalog (docs/architecture.md §4): data, loaded and checked once at cold start. Maps our product codes
//! to a kind, a face value, a merchant price, and an ordered list of routes to provider accounts.

use crate::http::error::ApiError;
use recharge_core::msisdn::{Carrier, Msisdn};
use recharge_core::{Fen, ProductCode, ProviderAccountId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

pub use recharge_core::ProductKind;

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
    /// `extra` fields a merchant may send. Any key in neither list is refused: what is delivered (quantity,
    /// fast/slow, supplier, product) comes from the route, never from the merchant (docs/providers/README.md §4
    /// rule 6).
    #[serde(default)]
    pub optional_extra: Vec<String>,
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
    if a.is_empty() || a.chars().count() > 64 || first_hidden(a).is_some() {
        return Err(ApiError::bad_request(
            "invalid_account",
            "account: 1 to 64 characters, no control or invisible formatting characters",
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

    /// Whether the merchant may send `extra.<key>` for this product.
    pub fn allows_extra(&self, key: &str) -> bool {
        self.required_extra
            .iter()
            .chain(&self.optional_extra)
            .any(|k| k == key)
    }
}

/// The first character of `text` that a person cannot see or that reorders what they see: control
/// characters, zero-width and direction marks (U+200B–200F, U+202A–202E, U+2060–206F, U+FEFF), and a
/// combining mark with nothing visible to combine with. Such text in an account makes two orders that look
/// alike go to different accounts.
pub fn first_hidden(text: &str) -> Option<char> {
    let mut prev: Option<char> = None;
    for c in text.chars() {
        let hidden = c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
            || (is_combining(c) && !prev.is_some_and(|p| p.is_alphanumeric()));
        if hidden {
            return Some(c);
        }
        prev = Some(c);
    }
    None
}

/// The combining-mark blocks (Combining Diacritical Marks and their supplements, for symbols, half marks).
fn is_combining(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_reordering_characters_are_found() {
        for bad in [
            "1380013\u{200B}8000",
            "abc\u{202E}def",
            "\u{FEFF}player",
            "player\u{2060}",
            "\u{0301}player",
            "player \u{0301}",
            "tab\there",
        ] {
            assert!(first_hidden(bad).is_some(), "{bad:?}");
        }
        for good in ["player-42", "江苏南京", "Café", "cafe\u{0301}", "a b"] {
            assert_eq!(first_hidden(good), None, "{good:?}");
        }
    }

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
