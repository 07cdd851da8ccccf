//! What the store benches share: a throwaway PostgreSQL database.

use diesel::{Connection, PgConnection, RunQueryDsl};

/// Names the PostgreSQL server (an admin URL) the benches also run against when set.
pub const PG_ENV: &str = "PAYGATE_BENCH_DATABASE_URL";

/// A throwaway PostgreSQL database, dropped at the end.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    /// Creates a fresh database on the server at `admin_url`; returns it and its URL.
    pub fn create(admin_url: &str) -> (PgDatabase, String) {
        let name = format!(
            "paygate_bench_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let mut conn = PgConnection::establish(admin_url).unwrap_or_else(|e| panic!("{e}"));
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .unwrap_or_else(|e| panic!("{e}"));
        let (base, _) = admin_url
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("{PG_ENV} needs a /database path"));
        let url = format!("{base}/{name}");
        let database = PgDatabase {
            admin_url: admin_url.to_owned(),
            name,
        };
        (database, url)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin_url) {
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            let _ = diesel::sql_query(sql).execute(&mut conn);
        }
    }
}
