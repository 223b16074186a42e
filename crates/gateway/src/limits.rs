//! The cheap limits, met before a request costs anything: requests per client address, buys
//! per buyer, and order-status reads per buyer apart (watching an order never costs a buy).
//!
//! The client's address is the connection's peer, unless the peer is one of
//! `http.trusted_proxies`: then it is the last address of `X-Forwarded-For` that is not a trusted
//! proxy (each proxy appends the address it was reached from, so the addresses left of the last
//! untrusted one are the client's own words). An IPv6 client is counted by its /64, which one
//! subscriber holds whole.
//!
//! The limiters remember a caller until its allowance is full again; every
//! `gateway.limiter_prune_secs` [`Limits::keep_pruned`] forgets those, so their memory holds the
//! callers of the last few seconds, not every buyer ever seen.

use domain::UserId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A limiter per key, or none (unlimited).
struct Limiter<K: Hash + Eq + Clone>(Option<DefaultKeyedRateLimiter<K>>);

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `rate` per second with a burst of `burst` (0: the rate); a rate of 0 is unlimited.
    fn new(rate: u32, burst: u32) -> Self {
        Self(NonZeroU32::new(rate).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        }))
    }

    fn allow(&self, key: &K) -> bool {
        self.0
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(key).is_ok())
    }

    /// Forgets the keys whose allowance is full again; how many it still remembers.
    fn prune(&self) -> usize {
        self.0.as_ref().map_or(0, |limiter| {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            limiter.len()
        })
    }
}

/// Which limit refused a request (the label of `seckill_rate_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum Limit {
    /// Requests of one client address.
    Address,
    /// Buys of one buyer.
    Buy,
    /// Order-status reads of one buyer.
    Read,
}

/// The limits of one gateway process.
pub struct Limits {
    per_address: Limiter<IpAddr>,
    buys: Limiter<UserId>,
    reads: Limiter<UserId>,
    trusted_proxies: Vec<IpNet>,
}

impl Limits {
    /// The limits the settings describe.
    pub fn from_settings(
        http: &settings::HttpSettings,
        gateway: &settings::GatewaySettings,
    ) -> Result<Self, settings::SettingsError> {
        Ok(Self {
            per_address: Limiter::new(gateway.per_address_rate_per_sec, gateway.per_address_burst),
            buys: Limiter::new(gateway.per_user_rate_per_sec, gateway.per_user_burst),
            reads: Limiter::new(
                gateway.per_user_read_rate_per_sec,
                gateway.per_user_read_burst,
            ),
            trusted_proxies: http.trusted_proxies()?,
        })
    }

    /// Whether requests are counted per client address at all (`gateway.per_address_rate_per_sec`
    /// above 0): when not, nothing of the request is read for it.
    pub fn counts_addresses(&self) -> bool {
        self.per_address.0.is_some()
    }

    /// Whether the client at `address` may make one more request now.
    pub fn allow_address(&self, address: IpAddr) -> bool {
        self.per_address.allow(&address)
    }

    /// Whether `user` may make one more buy now.
    pub fn allow_buy(&self, user: &UserId) -> bool {
        self.buys.allow(user)
    }

    /// Whether `user` may read one more order's status now.
    pub fn allow_read(&self, user: &UserId) -> bool {
        self.reads.allow(user)
    }

    /// [`client_address`](Self::client_address) of a request from `peer` with `headers`: every
    /// line of `X-Forwarded-For`, in order (a proxy may add its own), read only when the peer is
    /// a trusted proxy.
    pub fn client_of(&self, peer: IpAddr, headers: &actix_web::http::header::HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted_proxies.iter().any(|n| n.contains(&peer)) {
            return counted_as(peer);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        self.client_address(peer, &forwarded)
    }

    /// The address a request is counted under: see the module's header. `forwarded` is the
    /// request's `X-Forwarded-For` (its lines joined with commas, in order), read only when
    /// `peer` is a trusted proxy.
    pub fn client_address(&self, peer: IpAddr, forwarded: &str) -> IpAddr {
        let trusted = |address: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(address));
        let mut client = canonical(peer);
        if trusted(&client) {
            for hop in forwarded.rsplit(',').map(str::trim) {
                // A hop that is no address ends what can be believed: the last proxy named it.
                let Some(address) = hop_address(hop) else {
                    break;
                };
                client = address;
                if !trusted(&address) {
                    break;
                }
            }
        }
        counted_as(client)
    }

    /// Forgets the callers whose allowance is full again; how many callers the limiters still
    /// remember.
    pub fn prune(&self) -> usize {
        self.per_address.prune() + self.buys.prune() + self.reads.prune()
    }

    /// Prunes every `every` until `shutdown`, setting `remembered` to what the limiters hold.
    pub async fn keep_pruned(
        self: std::sync::Arc<Self>,
        every: Duration,
        remembered: prometheus::IntGauge,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            remembered.set(i64::try_from(self.prune()).unwrap_or(i64::MAX));
        }
    }
}

/// An IPv4 address written as IPv6 (a dual-stack listener's peers), as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The address of one hop of `X-Forwarded-For`: an address, or one with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), or a bracketed IPv6 address.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let address = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(canonical(address))
}

/// The key an address is counted under: an IPv4 address (also when written as IPv6), or the
/// /64 of an IPv6 one.
fn counted_as(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &str, per_address: u32) -> Limits {
        let mut settings = settings::Settings::defaults();
        settings.http.trusted_proxies = trusted.into();
        settings.gateway.per_address_rate_per_sec = per_address;
        settings.gateway.per_address_burst = per_address;
        Limits::from_settings(&settings.http, &settings.gateway).expect("valid")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_trusted_proxy_and_only_past_the_trusted_hops() {
        let none = limits("", 1);
        // No trusted proxy: the header is anyone's to write and is never read.
        assert_eq!(
            none.client_address(ip("203.0.113.9"), "198.51.100.1"),
            ip("203.0.113.9")
        );
        let behind = limits("10.0.0.0/8, 192.0.2.7", 1);
        // The balancer (trusted) names the client; what the client wrote before it is ignored.
        assert_eq!(
            behind.client_address(ip("10.1.2.3"), "6.6.6.6, 198.51.100.1"),
            ip("198.51.100.1")
        );
        // Two trusted hops, then the client.
        assert_eq!(
            behind.client_address(ip("10.1.2.3"), "198.51.100.1, 192.0.2.7"),
            ip("198.51.100.1")
        );
        // A peer outside the trusted networks is the client, whatever it forwards.
        assert_eq!(
            behind.client_address(ip("198.51.100.2"), "10.0.0.1"),
            ip("198.51.100.2")
        );
        // A hop that is no address: the last believable one is the proxy that wrote it.
        assert_eq!(
            behind.client_address(ip("10.1.2.3"), "198.51.100.1, junk"),
            ip("10.1.2.3")
        );
        // An IPv6 client is counted by its /64.
        assert_eq!(
            none.client_address(ip("2001:db8:1:2:aaaa::1"), ""),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            none.client_address(ip("::ffff:192.0.2.1"), ""),
            ip("192.0.2.1")
        );
        // A proxy on a dual-stack listener (an IPv4 peer written as IPv6) is still trusted, and
        // hops written with a port or in brackets are read.
        assert_eq!(
            behind.client_address(ip("::ffff:10.1.2.3"), "198.51.100.1:4711"),
            ip("198.51.100.1")
        );
        assert_eq!(
            behind.client_address(ip("10.1.2.3"), "[2001:db8:1:2::7]:443"),
            ip("2001:db8:1:2::")
        );
    }

    #[test]
    fn an_address_past_its_allowance_is_refused_and_others_are_not() {
        let limits = limits("", 2);
        let flood = ip("203.0.113.9");
        assert!(limits.allow_address(flood));
        assert!(limits.allow_address(flood));
        assert!(!limits.allow_address(flood));
        assert!(limits.allow_address(ip("203.0.113.10")));
    }

    #[test]
    fn pruning_forgets_the_callers_whose_allowance_is_full_again() {
        let limits = limits("", 10);
        for i in 0..=255u8 {
            assert!(limits.allow_address(IpAddr::from([198, 51, 100, i])));
            assert!(limits.allow_buy(&UserId::parse(format!("user-{i}")).unwrap()));
        }
        // Right away they are remembered (their allowance is not full yet)...
        assert_eq!(limits.prune(), 512);
        // ...and forgotten once it is (an address at 10 per second is full again after 100 ms,
        // a buyer at the default 20 per second after 50).
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(limits.prune(), 0);
    }
}
