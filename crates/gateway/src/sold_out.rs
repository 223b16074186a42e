//! The local sold-out flag: after Redis answered `sold_out` for a sale, the gateway answers the
//! same from memory, with no Redis round trip, for as long as Redis would.
//!
//! Three rules keep the memory's answer equal to Redis's:
//! - **Units that come back** (a compensation, an admin raising stock): the flag is trusted for
//!   `recheck` only; then one request goes to Redis again. A sold-out answer renews the flag,
//!   any other clears it. So one replica turns buyers away for at most `recheck` after units
//!   came back, and no coordination between replicas is needed.
//! - **Retries of accepted orders**: the reserve script answers a known (buyer, key) with its
//!   order before it looks at the stock, and so must the gateway. When the flag is set it takes
//!   the sale's idempotency fields from Redis (one `HKEYS`) and keeps an 8-byte fingerprint of
//!   each; a request whose fingerprint is known goes to Redis. While the sale stays sold out no
//!   order can be added (an order takes a unit), so the set stays whole; `reserved` tells when
//!   it no longer is. A fingerprint collision only sends a request to Redis. One case is left
//!   to the re-check bound: when units came back and sold again between two re-checks, a retry
//!   of such a new order may be answered `sold_out` until the next re-check reads the orders
//!   again.
//! - **The end of the sale**, after which Redis answers `not_active`: past it, requests go to
//!   Redis.

use domain::SkuId;
use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use stock::{SoldOut, StockLedger};

/// Sold-out flags of the sales one gateway process has seen sold out.
pub struct SoldOutFlags {
    recheck_ms: i64,
    max_orders: usize,
    flags: RwLock<HashMap<SkuId, Arc<Flag>>>,
    /// Sales whose idempotency fields are being read (one read per sale at a time).
    loading: Mutex<HashSet<SkuId>>,
}

struct Flag {
    seen: SoldOut,
    /// Fingerprints of `<user>|<key>` of every order the sale had when `seen` was answered;
    /// `None` when it had too many to remember (the flag then answers nothing, and only saves
    /// reading them again until new orders come).
    orders: Option<Arc<HashSet<u64>>>,
    /// Until when (ms since the epoch) the flag answers without asking Redis.
    trusted_until: AtomicI64,
}

/// A request as the flag sees it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The sale.
    pub sku: &'a SkuId,
    /// The buyer.
    pub user: &'a str,
    /// The buyer's idempotency key.
    pub key: &'a str,
    /// Units asked for.
    pub quantity: i64,
    /// Now, in ms since the epoch.
    pub now_ms: i64,
}

impl SoldOutFlags {
    /// Flags trusted for `recheck`, for sales of at most `max_orders` orders (0: no flag).
    pub fn new(recheck: Duration, max_orders: usize) -> Self {
        Self {
            recheck_ms: i64::try_from(recheck.as_millis()).unwrap_or(i64::MAX),
            max_orders,
            flags: RwLock::default(),
            loading: Mutex::default(),
        }
    }

    /// Whether `ask` can be answered `sold_out` from memory. When the flag is due for a
    /// re-check, the first caller to see that is told no (and asks Redis); the others keep the
    /// memory's answer meanwhile.
    pub fn answers_sold_out(&self, ask: Ask<'_>) -> bool {
        let Some(flag) = self.get(ask.sku) else {
            return false;
        };
        let Some(orders) = &flag.orders else {
            return false;
        };
        if ask.now_ms >= flag.seen.ends_at_ms
            || ask.quantity <= flag.seen.remaining
            || orders.contains(&fingerprint(&[
                ask.user.as_bytes(),
                b"|",
                ask.key.as_bytes(),
            ]))
        {
            return false;
        }
        let until = flag.trusted_until.load(Ordering::Acquire);
        if ask.now_ms < until {
            return true;
        }
        // Due: one caller takes the re-check. If its Redis call fails, the next one is due a
        // quarter of the interval later.
        let retry_at = ask.now_ms + (self.recheck_ms / 4).max(1);
        flag.trusted_until
            .compare_exchange(until, retry_at, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    }

    /// Redis answered `seen` (sold out) for a request at `now_ms`: renew the flag, or set it,
    /// reading the sale's orders when there is no flag or new orders came since.
    pub async fn sold_out(&self, ledger: &StockLedger, sku: &SkuId, seen: SoldOut, now_ms: i64) {
        if self.max_orders == 0 {
            return;
        }
        if let Some(flag) = self.get(sku) {
            if flag.seen == seen {
                flag.trusted_until
                    .fetch_max(now_ms + self.recheck_ms, Ordering::AcqRel);
                return;
            }
            if seen.reserved < flag.seen.reserved {
                // An answer older than the flag's, arriving late.
                return;
            }
            if seen.reserved == flag.seen.reserved {
                // No new order, so the same orders; what changed is the units left (some came
                // back, too few for that request) or the end of the sale.
                self.put(sku, flag.orders.clone(), seen, now_ms);
                return;
            }
        }
        let Some(_loading) = Loading::take(&self.loading, sku) else {
            return;
        };
        let orders = match ledger.order_requests(sku, self.max_orders).await {
            Ok(Some(fields)) => Some(Arc::new(
                fields
                    .iter()
                    .map(|field| fingerprint(&[field.as_bytes()]))
                    .collect(),
            )),
            Ok(None) => {
                tracing::info!(%sku, max = self.max_orders, reserved = seen.reserved, "sold out with too many orders to remember; asking redis every time");
                None
            }
            Err(error) => {
                tracing::warn!(%sku, %error, "could not read the sale's orders; asking redis every time");
                self.clear(sku);
                return;
            }
        };
        self.put(sku, orders, seen, now_ms);
    }

    fn get(&self, sku: &SkuId) -> Option<Arc<Flag>> {
        self.flags
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sku)
            .cloned()
    }

    /// Sets the flag of `sku`, unless one from a later answer is there already.
    fn put(&self, sku: &SkuId, orders: Option<Arc<HashSet<u64>>>, seen: SoldOut, now_ms: i64) {
        let mut flags = self.flags.write().unwrap_or_else(PoisonError::into_inner);
        if flags
            .get(sku)
            .is_some_and(|flag| flag.seen.reserved > seen.reserved)
        {
            return;
        }
        let flag = Flag {
            seen,
            orders,
            trusted_until: AtomicI64::new(now_ms + self.recheck_ms),
        };
        flags.insert(sku.clone(), Arc::new(flag));
    }

    /// Redis answered anything but `sold_out` for `sku`: forget the flag.
    pub fn clear(&self, sku: &SkuId) {
        let known = self
            .flags
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(sku);
        if known {
            self.flags
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(sku);
        }
    }

    /// How many sales are flagged now.
    pub fn len(&self) -> usize {
        self.flags
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no sale is flagged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The fingerprint of the concatenation of `parts`: the same for `["alice|k1"]` and
/// `["alice", "|", "k1"]`, so a request needs no allocation to be looked up.
fn fingerprint(parts: &[&[u8]]) -> u64 {
    // The same keys for every hasher of the process, which is all a fingerprint needs.
    let mut hasher = std::hash::DefaultHasher::new();
    for part in parts {
        hasher.write(part);
    }
    hasher.finish()
}

/// A sale whose orders this caller reads; released on drop.
struct Loading<'a> {
    set: &'a Mutex<HashSet<SkuId>>,
    sku: SkuId,
}

impl<'a> Loading<'a> {
    fn take(set: &'a Mutex<HashSet<SkuId>>, sku: &SkuId) -> Option<Self> {
        let mut loading = set.lock().unwrap_or_else(PoisonError::into_inner);
        loading.insert(sku.clone()).then(|| Self {
            set,
            sku: sku.clone(),
        })
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.sku);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_and_its_parts_have_the_same_fingerprint() {
        assert_eq!(
            fingerprint(&[b"buyer-7|order-1"]),
            fingerprint(&[b"buyer-7", b"|", b"order-1"])
        );
        assert_ne!(
            fingerprint(&[b"buyer-7|order-1"]),
            fingerprint(&[b"buyer-7|order-2"])
        );
    }

    fn flags_with(orders: &[&str], remaining: i64, trusted_until: i64) -> (SoldOutFlags, SkuId) {
        let flags = SoldOutFlags::new(Duration::from_millis(200), 1000);
        let sku = SkuId::parse("phone").expect("a valid sku");
        let flag = Flag {
            seen: SoldOut {
                remaining,
                reserved: 10,
                ends_at_ms: 10_000,
            },
            orders: Some(Arc::new(
                orders
                    .iter()
                    .map(|o| fingerprint(&[o.as_bytes()]))
                    .collect(),
            )),
            trusted_until: AtomicI64::new(trusted_until),
        };
        flags
            .flags
            .write()
            .expect("not poisoned")
            .insert(sku.clone(), Arc::new(flag));
        (flags, sku)
    }

    fn ask<'a>(sku: &'a SkuId, user: &'a str, quantity: i64, now_ms: i64) -> Ask<'a> {
        Ask {
            sku,
            user,
            key: "k1",
            quantity,
            now_ms,
        }
    }

    #[test]
    fn the_flag_answers_only_what_redis_would_answer_sold_out() {
        let (flags, sku) = flags_with(&["alice|k1"], 1, 5_000);
        assert!(flags.answers_sold_out(ask(&sku, "bob", 2, 1_000)));
        // One unit left: an order of one goes to Redis.
        assert!(!flags.answers_sold_out(ask(&sku, "bob", 1, 1_000)));
        // A retry of an accepted order goes to Redis, which answers its order.
        assert!(!flags.answers_sold_out(ask(&sku, "alice", 2, 1_000)));
        // After the end of the sale, Redis answers `not_active`.
        assert!(!flags.answers_sold_out(ask(&sku, "bob", 2, 10_000)));
        let other = SkuId::parse("tablet").expect("a valid sku");
        assert!(!flags.answers_sold_out(ask(&other, "bob", 2, 1_000)));
    }

    #[test]
    fn a_due_flag_sends_one_request_to_redis_and_answers_the_others() {
        let (flags, sku) = flags_with(&[], 0, 5_000);
        assert!(flags.answers_sold_out(ask(&sku, "bob", 1, 4_999)));
        assert!(!flags.answers_sold_out(ask(&sku, "bob", 1, 5_000)));
        assert!(flags.answers_sold_out(ask(&sku, "carol", 1, 5_001)));
        // The re-check did not come back within a quarter of the interval: the next one goes.
        assert!(!flags.answers_sold_out(ask(&sku, "dave", 1, 5_050)));
        flags.clear(&sku);
        assert!(flags.is_empty());
        assert!(!flags.answers_sold_out(ask(&sku, "bob", 1, 5_100)));
    }
}

#[cfg(test)]
mod renewal {
    use super::*;

    fn seen(remaining: i64, reserved: i64) -> SoldOut {
        SoldOut {
            remaining,
            reserved,
            ends_at_ms: 10_000,
        }
    }

    fn ask(sku: &SkuId, quantity: i64) -> Ask<'_> {
        Ask {
            sku,
            user: "bob",
            key: "k1",
            quantity,
            now_ms: 1_150,
        }
    }

    #[test]
    fn units_that_came_back_are_taken_into_the_flag_without_reading_the_orders_again() {
        let flags = SoldOutFlags::new(Duration::from_millis(200), 1000);
        let sku = SkuId::parse("phone").expect("a valid sku");
        let orders = Some(Arc::new(HashSet::from([fingerprint(&[b"alice|k1"])])));
        flags.put(&sku, orders.clone(), seen(0, 10), 1_000);
        // A unit came back; a request for two was refused by Redis, which says one is left.
        flags.put(&sku, orders, seen(1, 10), 1_100);
        assert!(!flags.answers_sold_out(ask(&sku, 1)), "one unit is left");
        assert!(flags.answers_sold_out(ask(&sku, 2)));
        // A late answer from before does not replace a later one.
        flags.put(&sku, None, seen(0, 9), 1_120);
        assert!(flags.answers_sold_out(ask(&sku, 2)));
    }

    #[test]
    fn a_sale_with_too_many_orders_is_never_answered_from_memory() {
        let flags = SoldOutFlags::new(Duration::from_millis(200), 1000);
        let sku = SkuId::parse("phone").expect("a valid sku");
        flags.put(&sku, None, seen(0, 10), 1_000);
        assert!(!flags.answers_sold_out(ask(&sku, 1)));
    }
}
