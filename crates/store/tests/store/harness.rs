//! Runs each test on SQLite (a fresh temporary file) and on PostgreSQL (a fresh database,
//! dropped afterwards) when `PAYGATE_TEST_DATABASE_URL` is set.

use std::future::Future;
use std::io::Write;

use chrono::{DateTime, Duration, TimeZone, Utc};
use diesel::{Connection, PgConnection, RunQueryDsl};
use paygate_core::{AppName, Channel, Currency, Fen, Order, OutTradeNo, ProviderKind};
use paygate_store::{NewOrder, Store};

/// The environment variable naming the PostgreSQL server for the PostgreSQL variants.
pub const PG_ENV: &str = "PAYGATE_TEST_DATABASE_URL";

/// What a test gets: the store, and its URL for tests that go behind the store's back.
pub struct TestDb {
    pub store: Store,
    pub url: String,
}

/// Runs `test` against a store on a fresh SQLite file.
pub async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("paygate.db").display());
    let store = Store::connect(&url, paygate_store::PoolOptions::sized(8))
        .await
        .unwrap();
    assert_eq!(store.backend(), paygate_store::Backend::Sqlite);
    test(TestDb { store, url }).await;
    drop(dir);
}

/// Drops the per-test PostgreSQL database when the test ends, passed or failed.
struct DropDatabase {
    admin_url: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        // WITH (FORCE) ends the pool's connections, which may still be open.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        match PgConnection::establish(&self.admin_url) {
            Ok(mut conn) => {
                if let Err(e) = diesel::sql_query(sql).execute(&mut conn) {
                    let _ = writeln!(std::io::stderr(), "could not drop {}: {e}", self.name);
                }
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "could not drop {}: {e}", self.name);
            }
        }
    }
}

/// Runs `test` against a store on a fresh PostgreSQL database, or prints a skip line when
/// the variable is unset. A set but unreachable server fails the test.
pub async fn run_postgres<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(admin_url) = std::env::var(PG_ENV) else {
        // Written to stderr directly: libtest's capture only hooks the print macros.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED postgres variant: {PG_ENV} is not set"
        );
        return;
    };
    let name = format!(
        "paygate_test_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut admin = PgConnection::establish(&admin_url)
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .unwrap();
    drop(admin);
    let _guard = DropDatabase {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    let store = Store::connect(&url, paygate_store::PoolOptions::sized(8))
        .await
        .unwrap();
    assert_eq!(store.backend(), paygate_store::Backend::Postgres);
    test(TestDb { store, url }).await;
}

/// Generates `<test>::sqlite` and `<test>::postgres` for each async test function
/// `fn(TestDb)` listed.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    crate::harness::run_sqlite(super::$test).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    crate::harness::run_postgres(super::$test).await
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

/// A fixed instant, so expected values do not depend on the clock.
pub fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

pub fn fen(n: i64) -> Fen {
    Fen::new(n).unwrap()
}

pub fn app(name: &str) -> AppName {
    AppName::parse(name).unwrap()
}

/// Inserts [`new_order`] and returns the stored pending order.
pub async fn pending_order(store: &Store, out_trade_no: &str, amount: i64) -> Order {
    store
        .insert_order(new_order(out_trade_no, amount))
        .await
        .unwrap()
}

/// A valid pending-order request; tests change the fields they care about.
pub fn new_order(out_trade_no: &str, amount: i64) -> NewOrder {
    NewOrder {
        provider: ProviderKind::WECHAT,
        app: app("shop"),
        channel: Channel::Jsapi,
        out_trade_no: OutTradeNo::parse(out_trade_no).unwrap(),
        amount: fen(amount),
        currency: Currency::Cny,
        subject: "green tea".into(),
        description: Some("500 g".into()),
        payer_id: Some("openid_1".into()),
        pay_params: None,
        metadata: Some(r#"{"cart":42}"#.into()),
        request_hash: format!("hash-of-{out_trade_no}"),
        created_at: at(1, 10) + Duration::microseconds(123_456),
        expires_at: at(1, 12),
    }
}
