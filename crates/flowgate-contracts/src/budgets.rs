//! The budget counters in shared state (Redis), as the proxy claims and settles them and the
//! worker opens, reconciles and reads them; and the `spend` row a budget's spend is recorded in.
//!
//! A budget's *row* is the key's id for a key budget and `tenant:{tenant id}` for a tenant budget:
//! the `spend.key_id` its settled spend is written under.

use std::time::Duration;

/// How long a period's settled-spend counter is kept in shared state after its last change.
pub const SETTLED_TTL: Duration = Duration::from_secs(35 * 86_400);

/// The `spend` row of a tenant's budget.
pub fn tenant_row(tenant_id: &str) -> String {
    format!("tenant:{tenant_id}")
}

/// The counter of spend settled in a row's period (nano-dollars).
pub fn settled_key(row: &str, period_start: i64) -> String {
    format!("spend:{row}:{period_start}:settled")
}

/// The counter of spend reserved by requests in flight in a row's period (nano-dollars).
pub fn reserved_key(row: &str, period_start: i64) -> String {
    format!("spend:{row}:{period_start}:reserved")
}

/// The (row, period start) of a settled-spend counter made by [`settled_key`].
pub fn settled_row(key: &str) -> Option<(&str, i64)> {
    let inner = key.strip_prefix("spend:")?.strip_suffix(":settled")?;
    let (row, period_start) = inner.rsplit_once(':')?;
    Some((row, period_start.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_key_reads_back_as_its_row_and_period() {
        let key = settled_key(&tenant_row("t:1"), 1_700_000_000_000);
        assert_eq!(key, "spend:tenant:t:1:1700000000000:settled");
        assert_eq!(settled_row(&key), Some(("tenant:t:1", 1_700_000_000_000)));
        assert_eq!(settled_row("spend:k:x:reserved"), None);
        assert_eq!(reserved_key("k", 5), "spend:k:5:reserved");
    }
}
