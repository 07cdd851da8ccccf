//! Budgets for work an anonymous caller can make paygate do. An unverifiable callback costs an
//! audit row and a warning; without a budget anyone could fill the disk with them. Each source
//! address has a token bucket, and all sources together share one more, so that many addresses
//! cannot add up to more than one budget. Memory stays bounded: at most `max_sources` sources
//! are tracked; once that many are busy at the same time, new ones share a single bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shape of a token bucket: how many at once, then how many per second.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// How many may come at once after a quiet spell.
    pub burst: f64,
    /// How many per second after the burst.
    pub per_second: f64,
}

/// What to do with one more unit of work from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Do it; `suppressed` units from the same source were skipped since the last one done.
    Admit {
        /// How many were skipped before this one.
        suppressed: u64,
    },
    /// Skip it: the source (or everyone together) is over budget.
    Suppress,
}

/// Per-source and overall token buckets with a bounded number of tracked sources.
#[derive(Debug)]
pub struct SourceThrottle {
    per_source: Rate,
    overall: Rate,
    max_sources: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    sources: HashMap<SourceKey, Bucket>,
    /// Shared by new sources while the table is full.
    overflow: Bucket,
    overall: Bucket,
    last_pruned: Instant,
}

/// A source address: IPv4 whole, IPv6 by its /64 (one host usually owns a whole /64, so
/// counting single addresses would let it rotate through them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl SourceKey {
    fn of(address: IpAddr) -> SourceKey {
        match address {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let octets = v6.octets();
                    let mut prefix = [0_u8; 8];
                    prefix.copy_from_slice(&octets[..8]);
                    SourceKey::V6(prefix)
                }
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    suppressed: u64,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            updated: now,
            suppressed: 0,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    /// Whether forgetting this bucket loses nothing: it would be full again by now.
    fn is_idle(&self, rate: Rate, now: Instant) -> bool {
        let mut refilled = *self;
        refilled.refill(rate, now);
        refilled.tokens >= rate.burst && self.suppressed == 0
    }
}

/// How often a full table is searched for sources that have gone quiet.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

impl SourceThrottle {
    /// A throttle allowing `per_source` from each source and `overall` from all together,
    /// tracking at most `max_sources` sources.
    pub fn new(per_source: Rate, overall: Rate, max_sources: usize) -> SourceThrottle {
        let now = Instant::now();
        SourceThrottle {
            per_source,
            overall,
            max_sources,
            state: Mutex::new(State {
                sources: HashMap::new(),
                overflow: Bucket::full(per_source, now),
                overall: Bucket::full(overall, now),
                last_pruned: now,
            }),
        }
    }

    /// Asks for one unit of work from `source` now.
    pub fn admit(&self, source: IpAddr) -> Admission {
        self.admit_at(source, Instant::now())
    }

    /// Whether one more unit from `source` would be admitted now by its own bucket, without
    /// spending anything (the overall bucket is not consulted: a flood from elsewhere must not
    /// make a quiet source look guilty).
    pub fn source_has_budget(&self, source: IpAddr) -> bool {
        self.source_has_budget_at(source, Instant::now())
    }

    fn source_has_budget_at(&self, source: IpAddr, now: Instant) -> bool {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = SourceKey::of(source);
        let bucket = match state.sources.get(&key) {
            Some(bucket) => *bucket,
            None if state.sources.len() < self.max_sources => return true,
            None => state.overflow,
        };
        let mut refilled = bucket;
        refilled.refill(self.per_source, now);
        refilled.tokens >= 1.0
    }

    fn admit_at(&self, source: IpAddr, now: Instant) -> Admission {
        // A panic while holding the lock leaves only counters behind; they are still usable.
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = &mut *guard;
        let key = SourceKey::of(source);
        let known = state.sources.contains_key(&key);
        if !known
            && state.sources.len() >= self.max_sources
            && now.saturating_duration_since(state.last_pruned) >= PRUNE_INTERVAL
        {
            let rate = self.per_source;
            state.sources.retain(|_, bucket| !bucket.is_idle(rate, now));
            state.last_pruned = now;
        }
        let bucket = if known || state.sources.len() < self.max_sources {
            state
                .sources
                .entry(key)
                .or_insert_with(|| Bucket::full(self.per_source, now))
        } else {
            &mut state.overflow
        };
        bucket.refill(self.per_source, now);
        state.overall.refill(self.overall, now);
        if bucket.tokens >= 1.0 && state.overall.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            state.overall.tokens -= 1.0;
            Admission::Admit {
                suppressed: std::mem::take(&mut bucket.suppressed),
            }
        } else {
            bucket.suppressed += 1;
            Admission::Suppress
        }
    }

    /// How many sources are tracked (for tests of the memory bound).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sources
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_SOURCE: Rate = Rate {
        burst: 3.0,
        per_second: 1.0,
    };
    const OVERALL: Rate = Rate {
        burst: 10.0,
        per_second: 5.0,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn admitted(throttle: &SourceThrottle, source: &str, now: Instant, times: usize) -> usize {
        (0..times)
            .filter(|_| throttle.admit_at(ip(source), now) != Admission::Suppress)
            .count()
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_hears_how_many_were_skipped() {
        let throttle = SourceThrottle::new(PER_SOURCE, OVERALL, 100);
        let start = Instant::now();
        assert_eq!(admitted(&throttle, "192.0.2.1", start, 10), 3);
        assert_eq!(
            admitted(&throttle, "192.0.2.2", start, 1),
            1,
            "others unaffected"
        );
        let later = start + Duration::from_secs(2);
        assert_eq!(
            throttle.admit_at(ip("192.0.2.1"), later),
            Admission::Admit { suppressed: 7 }
        );
        assert_eq!(admitted(&throttle, "192.0.2.1", later, 5), 1);
    }

    #[test]
    fn many_sources_together_get_the_overall_budget_only() {
        let throttle = SourceThrottle::new(PER_SOURCE, OVERALL, 1_000);
        let now = Instant::now();
        let total: usize = (0..100)
            .map(|i| admitted(&throttle, &format!("10.0.{}.{}", i / 250, i % 250), now, 3))
            .sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn the_table_stays_bounded_and_rotating_addresses_share_one_bucket() {
        let throttle = SourceThrottle::new(PER_SOURCE, OVERALL, 50);
        let now = Instant::now();
        for i in 0..5_000_u32 {
            let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            throttle.admit_at(address, now);
        }
        assert_eq!(throttle.tracked(), 50);
        // IPv6 addresses within one /64 are one source.
        let a = throttle.admit_at(ip("2001:db8::1"), now + Duration::from_secs(60));
        let b = throttle.admit_at(ip("2001:db8::2"), now + Duration::from_secs(60));
        assert!(matches!(a, Admission::Admit { .. }) && matches!(b, Admission::Admit { .. }));
        assert!(throttle.tracked() <= 50);
    }

    #[test]
    fn budget_is_peeked_without_spending_and_only_per_source() {
        let throttle = SourceThrottle::new(PER_SOURCE, OVERALL, 100);
        let now = Instant::now();
        for _ in 0..10 {
            assert!(throttle.source_has_budget_at(ip("192.0.2.1"), now));
        }
        assert_eq!(
            admitted(&throttle, "192.0.2.1", now, 3),
            3,
            "peeks spent nothing"
        );
        assert!(!throttle.source_has_budget_at(ip("192.0.2.1"), now));
        assert!(
            throttle.source_has_budget_at(ip("192.0.2.2"), now),
            "others unaffected"
        );
        assert!(
            throttle.source_has_budget_at(ip("192.0.2.1"), now + Duration::from_secs(1)),
            "refilled at its rate"
        );
    }
}
