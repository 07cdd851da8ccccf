//! API keys. Only the SHA-256 of a secret is stored; the secret is shown once at creation
//! and looked up again by hashing what the caller presents.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::AppName;
use sha2::{Digest, Sha256};

use crate::schema::api_keys;
use crate::text::text_enum;
use crate::{ApiKeyId, LockKey, Store, StoreError, corrupt, db_time, utc};

text_enum!(
    /// What a key may do.
    ApiKeyRole {
        /// Create, read and refund orders of its apps.
        Merchant => "merchant",
        /// Read orders, summaries and anomalies.
        Finance => "finance",
    }
);

/// The stored form of a key secret: lowercase hex SHA-256. A secret is random and long, so a
/// plain hash (no salt, no slow KDF) is enough and lets the lookup use an index.
pub fn hash_api_key_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A key to store. Build `key_hash` with [`hash_api_key_secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// A label for people ("shop backend").
    pub name: String,
    /// What the key may do.
    pub role: ApiKeyRole,
    /// Hex SHA-256 of the secret.
    pub key_hash: String,
    /// The first characters of the secret, to recognise it in listings.
    pub key_prefix: String,
    /// The apps the key may touch; empty means all.
    pub apps: Vec<AppName>,
    /// When it was created (UTC).
    pub created_at: DateTime<Utc>,
}

/// A stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// A label for people.
    pub name: String,
    /// What the key may do.
    pub role: ApiKeyRole,
    /// Hex SHA-256 of the secret.
    pub key_hash: String,
    /// The first characters of the secret.
    pub key_prefix: String,
    /// The apps the key may touch; empty means all.
    pub apps: Vec<AppName>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key may act on `app`.
    pub fn allows_app(&self, app: &AppName) -> bool {
        self.apps.is_empty() || self.apps.contains(app)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
struct ApiKeyRow {
    id: String,
    name: String,
    role: String,
    key_hash: String,
    key_prefix: String,
    apps: String,
    created_at: NaiveDateTime,
    revoked_at: Option<NaiveDateTime>,
    last_used_at: Option<NaiveDateTime>,
}

impl ApiKeyRow {
    fn into_key(self) -> Result<ApiKey, StoreError> {
        let bad = |reason: String| corrupt("api_keys", &self.id, reason);
        let apps: Vec<AppName> =
            serde_json::from_str(&self.apps).map_err(|e| bad(format!("apps: {e}")))?;
        Ok(ApiKey {
            id: ApiKeyId::parse(&self.id).map_err(|e| bad(e.to_string()))?,
            role: ApiKeyRole::parse(&self.role)
                .ok_or_else(|| bad(format!("unknown role {:?}", self.role)))?,
            apps,
            name: self.name,
            key_hash: self.key_hash,
            key_prefix: self.key_prefix,
            created_at: utc(self.created_at),
            revoked_at: self.revoked_at.map(utc),
            last_used_at: self.last_used_at.map(utc),
        })
    }
}

/// Runs a single-row update and reports `NotFound` when no key matched.
fn update_key(
    conn: &mut crate::DbConnection,
    id: &ApiKeyId,
    run: impl FnOnce(&mut crate::DbConnection) -> diesel::QueryResult<usize>,
) -> Result<(), StoreError> {
    if run(conn)? == 0 {
        return Err(StoreError::NotFound {
            entity: "API key",
            key: id.to_string(),
        });
    }
    Ok(())
}

impl Store {
    /// Stores a new key.
    pub async fn insert_api_key(&self, new: NewApiKey) -> Result<ApiKey, StoreError> {
        let id = ApiKeyId::generate();
        let apps =
            serde_json::to_string(&new.apps).map_err(|e| corrupt("api_keys", id.as_str(), e))?;
        let row = ApiKeyRow {
            id: id.to_string(),
            name: new.name,
            role: new.role.as_str().to_owned(),
            key_hash: new.key_hash,
            key_prefix: new.key_prefix,
            apps,
            created_at: db_time(new.created_at),
            revoked_at: None,
            last_used_at: None,
        };
        self.write(LockKey::NewRows, move |conn| {
            diesel::insert_into(api_keys::table)
                .values(&row)
                .execute(conn)?;
            row.into_key()
        })
        .await
    }

    /// The unrevoked key whose secret hashes to `key_hash`, if any. Revoked keys are never
    /// returned, so an authentication check cannot forget to test `revoked_at`.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let key_hash = key_hash.to_owned();
        self.read(move |conn| {
            api_keys::table
                .filter(api_keys::key_hash.eq(&key_hash))
                .filter(api_keys::revoked_at.is_null())
                .select(ApiKeyRow::as_select())
                .first(conn)
                .optional()?
                .map(ApiKeyRow::into_key)
                .transpose()
        })
        .await
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.run(move |conn| {
            let rows: Vec<ApiKeyRow> = api_keys::table
                .order(api_keys::id.asc())
                .select(ApiKeyRow::as_select())
                .load(conn)?;
            rows.into_iter().map(ApiKeyRow::into_key).collect()
        })
        .await
    }

    /// Revokes a key from `at` on; revoking again keeps the first revocation time.
    pub async fn revoke_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(LockKey::ApiKey(id.clone()), move |conn| {
            diesel::update(
                api_keys::table
                    .find(id.as_str())
                    .filter(api_keys::revoked_at.is_null()),
            )
            .set(api_keys::revoked_at.eq(Some(db_time(at))))
            .execute(conn)?;
            // Zero rows updated may mean "already revoked"; only a missing key is an error.
            update_key(conn, &id, |conn| {
                api_keys::table
                    .find(id.as_str())
                    .count()
                    .get_result::<i64>(conn)
                    .map(|n| usize::from(n > 0))
            })
        })
        .await
    }

    /// Records that a key authenticated a request at `at`.
    pub async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(LockKey::ApiKey(id.clone()), move |conn| {
            update_key(conn, &id, |conn| {
                diesel::update(api_keys::table.find(id.as_str()))
                    .set(api_keys::last_used_at.eq(Some(db_time(at))))
                    .execute(conn)
            })
        })
        .await
    }
}
