//! The sale terms of events homed here (status, limits, prices), cached for a second: every
//! reserve needs them, the API never changes them once the event exists, and the second bounds
//! how long an operator's edit in the database goes unseen. Saves two queries per reserve on
//! the hot path.

use std::sync::Arc;
use std::time::Duration;

use id_gen::Id;
use sqlx::PgPool;

use crate::catalog::store::{self, SaleTerms};
use crate::error::{ApiError, ApiResult};
use crate::reads::cache::shared_error;

impl SaleTerms {
    /// The price of `tier`; a tier the event does not have is a `400` naming the ones it has.
    pub fn price_of(&self, tier: &str) -> ApiResult<i64> {
        self.prices
            .iter()
            .find(|(name, _)| name == tier)
            .map(|(_, price)| *price)
            .ok_or_else(|| {
                let names: Vec<&str> = self.prices.iter().map(|(n, _)| n.as_str()).collect();
                ApiError::Validation(format!(
                    "unknown tier {tier:?}; this event has {}",
                    names.join(", ")
                ))
            })
    }
}

pub struct TermsCache(moka::future::Cache<i64, Arc<SaleTerms>>);

impl TermsCache {
    pub fn new() -> TermsCache {
        TermsCache(
            moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(1))
                .build(),
        )
    }

    /// The terms of `id`, read from `primary` at most once a second however many ask.
    pub async fn get(&self, primary: &PgPool, id: Id) -> ApiResult<Arc<SaleTerms>> {
        self.0
            .try_get_with(id.as_i64(), async {
                let mut conn = primary.acquire().await?;
                store::sale_terms(&mut conn, id).await.map(Arc::new)
            })
            .await
            .map_err(|e: Arc<ApiError>| shared_error(&e))
    }

    /// Forgets `event_id`'s terms on this node, after a change to them (its waiting room) that
    /// the next reserve must see at once.
    pub async fn invalidate(&self, event_id: i64) {
        self.0.invalidate(&event_id).await;
    }
}

impl Default for TermsCache {
    fn default() -> Self {
        TermsCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_tier_names_the_tiers_the_event_has() {
        let terms = SaleTerms {
            id: 1,
            status: "on_sale".into(),
            max_per_order: 10,
            max_tickets_per_user: None,
            hold_seconds: 600,
            prices: sqlx::types::Json(vec![("VIP".into(), 10_000), ("GA".into(), 1_000)]),
        };
        assert_eq!(terms.price_of("GA").unwrap(), 1_000);
        assert_eq!(
            terms.price_of("Balcony").unwrap_err().to_string(),
            "unknown tier \"Balcony\"; this event has VIP, GA"
        );
    }
}
