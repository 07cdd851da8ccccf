//! Operations that must refuse loudly rather than run wrong: a second process on one SQLite
//! file, and a database whose schema is not the one this binary was built for.

use diesel::{Connection, RunQueryDsl};
use paygate_gateway::Application;
use paygate_gateway::config::Settings;
use paygate_gateway::startup::StartError;
use paygate_store::{Store, StoreError};

use crate::helpers::{TestApp, spawn_app};

/// Runs `sql` on the gateway's database from outside, as an operator's shell would.
fn execute_behind_its_back(database_url: &str, sql: &str) {
    match database_url.strip_prefix("sqlite://") {
        Some(path) => {
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            // Waits its turn, as the gateway's own connections do.
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                "PRAGMA busy_timeout = 10000",
            )
            .unwrap();
            diesel::sql_query(sql).execute(&mut conn).unwrap();
        }
        None => {
            let mut conn = diesel::PgConnection::establish(database_url).unwrap();
            diesel::sql_query(sql).execute(&mut conn).unwrap();
        }
    }
}

fn second_gateway_settings(app: &TestApp, keys_dir: &tempfile::TempDir) -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: app.database_url.clone(),
        ..Settings::default()
    };
    settings.sandbox.keys_file = Some(keys_dir.path().join("second-sandbox-keys.json"));
    settings
}

#[tokio::test]
async fn a_second_gateway_on_the_same_sqlite_file_is_refused_but_postgres_replicas_start() {
    let app = spawn_app().await;
    let keys_dir = tempfile::tempdir().unwrap();

    let second = Application::build(second_gateway_settings(&app, &keys_dir)).await;

    if app.database_url.starts_with("sqlite://") {
        match second {
            Err(StartError::Store(StoreError::AlreadyServed { path, .. })) => {
                assert!(app.database_url.ends_with(&path), "{path}");
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a second gateway started on the same SQLite file"),
        }
    } else {
        assert!(second.is_ok(), "PostgreSQL replicas share one database");
    }
    // The first gateway is unaffected.
    assert_eq!(app.readyz().await.0, 200);
}

#[tokio::test]
async fn a_column_dropped_by_hand_makes_readyz_unready_and_a_restart_refuse() {
    let app = spawn_app().await;
    assert_eq!(app.readyz().await.0, 200);

    execute_behind_its_back(
        &app.database_url,
        "ALTER TABLE orders DROP COLUMN description",
    );

    let (status, body) = app.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "database schema mismatch");
    match Store::connect(&app.database_url, paygate_store::PoolOptions::sized(1)).await {
        Err(StoreError::SchemaMismatch(reason)) => {
            assert!(reason.contains("orders"), "{reason}");
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_migration_this_binary_does_not_know_makes_readyz_unready_and_a_restart_refuse() {
    let app = spawn_app().await;

    execute_behind_its_back(
        &app.database_url,
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')",
    );

    let (status, body) = app.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "database schema mismatch");
    match Store::connect(&app.database_url, paygate_store::PoolOptions::sized(1)).await {
        Err(StoreError::SchemaMismatch(reason)) => {
            assert!(reason.contains("29991231000000"), "{reason}");
            assert!(reason.contains("newer"), "{reason}");
        }
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
}
