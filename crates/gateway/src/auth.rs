//! API keys. A key is shown once at creation; only its SHA-256 is stored, so a database leak
//! does not leak usable keys. Keys carry a role (merchant or finance) and an optional app
//! scope, checked by the `Principal` extractor before a handler runs.

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
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| paygate_store::hash_api_key_secret(k.trim()));
        Box::pin(async move {
            let state =
                state.ok_or_else(|| crate::error::ApiError::Internal("state missing".into()))?;
            let hash = presented.ok_or(crate::error::ApiError::Unauthorized)?;
            let key = state
                .store
                .api_key_by_hash(&hash)
                .await?
                .filter(|k| k.revoked_at.is_none())
                .ok_or(crate::error::ApiError::Unauthorized)?;
            Ok(Principal {
                key_id: key.id.to_string(),
                role: key.role,
                apps: key.apps.clone(),
            })
        })
    }
}
