//! API keys. A key is shown once at creation; only its SHA-256 is stored, so a database leak
//! does not leak usable keys. Keys carry a role (merchant or finance) and an optional app
//! scope, checked by the `Principal` extractor before a handler runs.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore;

/// What a key may do: merchant keys create and refund orders of their apps, finance keys
/// read everything and change nothing.
pub use paygate_store::ApiKeyRole as Role;

/// A freshly generated key: the plaintext to show once, and what is stored.
pub struct GeneratedKey {
    /// The full key, shown once and never stored.
    pub plaintext: String,
    /// Hex SHA-256 of the plaintext.
    pub hash: String,
    /// The first characters, stored for display in `keys list`.
    pub prefix: String,
}

/// Generates a key with 256 bits from the OS CSPRNG, e.g. `pgm_3vQ…` for a merchant key.
pub fn generate_key(role: Role) -> GeneratedKey {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 43];
    rand::rng().fill_bytes(&mut bytes);
    // 43 base-62 digits from bytes reduced mod 62 carry ~255 bits; the slight bias is
    // irrelevant at this length.
    let body: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % 62] as char)
        .collect();
    let tag = match role {
        Role::Merchant => "pgm",
        Role::Finance => "pgf",
    };
    let plaintext = format!("{tag}_{body}");
    let prefix = plaintext.chars().take(10).collect();
    GeneratedKey {
        hash: paygate_store::hash_api_key_secret(&plaintext),
        plaintext,
        prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(key_id: &str) -> Principal {
        Principal {
            key_id: key_id.to_owned(),
            role: Role::Merchant,
            apps: Vec::new(),
        }
    }

    #[test]
    fn a_cached_key_is_trusted_for_the_ttl_and_then_looked_up_again() {
        let cache = KeyCache::new(Duration::from_millis(50));
        assert!(cache.get("h1").is_none(), "misses are never invented");
        cache.put("h1".into(), principal("key_1"));
        assert_eq!(cache.get("h1").map(|p| p.key_id), Some("key_1".to_owned()));
        assert!(cache.get("h2").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            cache.get("h1").is_none(),
            "an expired entry must not authenticate"
        );
    }

    #[test]
    fn a_miss_is_remembered_for_the_ttl_only_and_never_authenticates() {
        let cache = KeyCache::new(Duration::from_millis(50));
        assert!(!cache.recently_missed("bad"));
        cache.put_miss("bad".into());
        assert!(cache.recently_missed("bad"));
        assert!(cache.get("bad").is_none());
        assert!(!cache.recently_missed("other"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            !cache.recently_missed("bad"),
            "looked up again after the ttl"
        );
        for n in 0..=KEY_CACHE_MAX_ENTRIES {
            cache.put_miss(format!("m{n}"));
        }
        assert!(cache.misses.lock().unwrap().len() <= KEY_CACHE_MAX_ENTRIES);
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let cache = KeyCache::new(Duration::from_secs(60));
        for n in 0..KEY_CACHE_MAX_ENTRIES {
            cache.put(format!("h{n}"), principal("k"));
        }
        cache.put("newest".into(), principal("k"));
        let held = cache.entries.lock().unwrap().len();
        assert!(held <= KEY_CACHE_MAX_ENTRIES, "{held}");
        assert!(cache.get("newest").is_some());
    }

    #[test]
    fn keys_are_unique_and_only_their_hash_is_kept() {
        let a = generate_key(Role::Merchant);
        let b = generate_key(Role::Merchant);
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.starts_with("pgm_") && a.plaintext.len() == 47);
        assert_eq!(a.hash, paygate_store::hash_api_key_secret(&a.plaintext));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.plaintext[4..]));
        assert!(generate_key(Role::Finance).plaintext.starts_with("pgf_"));
    }
}

/// How long a key found in the database is trusted without asking again. This bounds how long
/// a key revoked from another process (`paygate keys revoke`) keeps working; one second turns a
/// database read per API call into one per key per second.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// The most keys held; past it the cache starts over, so it cannot grow without bound.
const KEY_CACHE_MAX_ENTRIES: usize = 4096;

/// Recently authenticated keys by hash, so a busy merchant backend does not cost a database read
/// per request. Only hits are kept: a new key works at once, and random bearer strings cannot
/// fill it.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Principal)>>,
    /// Hashes looked up and not found (or revoked) less than `ttl` ago: a client repeating a
    /// wrong key costs one database read per `ttl`, not one per request.
    misses: Mutex<HashMap<String, Instant>>,
}

impl KeyCache {
    /// A cache trusting each entry for `ttl`.
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            misses: Mutex::new(HashMap::new()),
        }
    }

    /// The principal a key hash authenticated less than `ttl` ago.
    pub fn get(&self, key_hash: &str) -> Option<Principal> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key_hash)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, principal)| principal.clone())
    }

    /// Remembers that `key_hash` authenticated `principal` just now.
    pub fn put(&self, key_hash: String, principal: Principal) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= KEY_CACHE_MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= KEY_CACHE_MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key_hash, (Instant::now(), principal));
    }

    /// Whether `key_hash` was looked up and not found less than `ttl` ago.
    pub fn recently_missed(&self, key_hash: &str) -> bool {
        let misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        misses
            .get(key_hash)
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Remembers that `key_hash` is no valid key, as of now. Bounded like the hits: a full
    /// table drops what has expired, or starts over.
    pub fn put_miss(&self, key_hash: String) {
        let mut misses = self.misses.lock().unwrap_or_else(PoisonError::into_inner);
        if misses.len() >= KEY_CACHE_MAX_ENTRIES {
            let ttl = self.ttl;
            misses.retain(|_, at| at.elapsed() < ttl);
            if misses.len() >= KEY_CACHE_MAX_ENTRIES {
                misses.clear();
            }
        }
        misses.insert(key_hash, Instant::now());
    }
}

/// The budget of failed authentications per source address: a burst of 30, then five a
/// second, for at most 10,000 sources tracked. A source past it gets 429 without a database
/// lookup until its budget refills; sources that present valid keys are never counted. Behind
/// a proxy every caller shares the proxy's address (paygate does not trust forwarding
/// headers), so the budget is generous enough for honest mistakes of many clients.
pub fn failed_authentication_throttle() -> crate::throttle::SourceThrottle {
    use crate::throttle::{Rate, SourceThrottle};
    SourceThrottle::new(
        Rate {
            burst: 30.0,
            per_second: 5.0,
        },
        // Not limited overall: one flood must not lock every other source out.
        Rate {
            burst: f64::MAX,
            per_second: f64::MAX,
        },
        10_000,
    )
}

/// The credentials of an `Authorization: Bearer …` header. The scheme name is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` work as `Bearer` does.
fn bearer_credentials(header: &str) -> Option<&str> {
    let (scheme, credentials) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

/// The caller, as identified by its bearer key.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's id (never the key).
    pub key_id: String,
    /// What the key may do.
    pub role: Role,
    /// Apps a merchant key is limited to; empty means every app.
    pub apps: Vec<paygate_core::AppName>,
}

impl Principal {
    /// Refuses callers without `role`.
    pub fn require(&self, role: Role) -> Result<(), crate::error::ApiError> {
        if self.role == role {
            Ok(())
        } else {
            Err(crate::error::ApiError::Forbidden(format!(
                "this endpoint needs a {} key",
                role.as_str()
            )))
        }
    }

    /// Whether the caller may read orders of `app`.
    pub fn can_see(&self, app: &paygate_core::AppName) -> bool {
        self.role == Role::Finance || self.apps.is_empty() || self.apps.contains(app)
    }

    /// Refuses callers not scoped to `app`.
    pub fn require_app(&self, app: &paygate_core::AppName) -> Result<(), crate::error::ApiError> {
        if self.can_see(app) {
            Ok(())
        } else {
            Err(crate::error::ApiError::Forbidden(format!(
                "this key is not scoped to app {app}"
            )))
        }
    }
}

impl actix_web::FromRequest for Principal {
    type Error = crate::error::ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(
        request: &actix_web::HttpRequest,
        _: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let state = request
            .app_data::<actix_web::web::Data<crate::state::AppState>>()
            .cloned();
        let presented = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials)
            .map(|k| paygate_store::hash_api_key_secret(k.trim()));
        let source = request
            .peer_addr()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |peer| peer.ip());
        Box::pin(async move {
            use crate::error::ApiError;
            let state = state.ok_or_else(|| ApiError::Internal("state missing".into()))?;
            let hash = presented.ok_or(ApiError::Unauthorized)?;
            if let Some(principal) = state.keys.get(&hash) {
                return Ok(principal);
            }
            if !state.failed_authentications.source_has_budget(source) {
                state
                    .metrics
                    .failed_authentications
                    .with_label_values(&["throttled"])
                    .inc();
                return Err(ApiError::TooManyFailedAuthentications);
            }
            let failed = || {
                state.failed_authentications.admit(source);
                state
                    .metrics
                    .failed_authentications
                    .with_label_values(&["unknown_key"])
                    .inc();
                ApiError::Unauthorized
            };
            if state.keys.recently_missed(&hash) {
                return Err(failed());
            }
            let Some(key) = state
                .store
                .api_key_by_hash(&hash)
                .await?
                .filter(|k| k.revoked_at.is_none())
            else {
                state.keys.put_miss(hash);
                return Err(failed());
            };
            let principal = Principal {
                key_id: key.id.to_string(),
                role: key.role,
                apps: key.apps.clone(),
            };
            state.keys.put(hash, principal.clone());
            Ok(principal)
        })
    }
}
