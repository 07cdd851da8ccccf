use paygate_store::{Backend, OrderFilter, Store, StoreError};

use crate::harness::new_order;

#[tokio::test]
async fn an_unreachable_postgres_url_names_the_problem_but_not_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let url = "postgres://paygate:Sup3rSecretPw@127.0.0.1:1/paygate";

    let err = Store::connect(url, paygate_store::PoolOptions::sized(2))
        .await
        .unwrap_err();

    let message = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: Backend::Postgres,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message.contains("PostgreSQL"), "{message}");
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(
        message.contains("refused") || message.contains("connect"),
        "{message}"
    );
    assert!(!message.contains("Sup3rSecretPw"), "{message}");
    assert!(!format!("{err:?}").contains("Sup3rSecretPw"));
    assert!(!message.contains("multiconnection"), "{message}");
}

#[tokio::test]
async fn an_unknown_scheme_is_refused_rather_than_opened_as_a_file() {
    let err = Store::connect(
        "mysql://root@localhost/paygate",
        paygate_store::PoolOptions::sized(2),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::UnsupportedUrl { scheme } if scheme == "mysql"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unopenable_sqlite_path_names_sqlite_and_the_path() {
    let err = Store::connect(
        "sqlite:///nonexistent-dir/for/sure/paygate.db",
        paygate_store::PoolOptions::sized(2),
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: Backend::Sqlite,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        message.contains("/nonexistent-dir/for/sure/paygate.db"),
        "{message}"
    );
}

#[tokio::test]
async fn an_in_memory_database_keeps_its_data_across_calls() {
    let store = Store::connect("sqlite::memory:", paygate_store::PoolOptions::sized(8))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store.ping().await.unwrap();

    let order = store
        .insert_order(new_order("order_0001", 100))
        .await
        .unwrap();

    assert_eq!(store.order(&order.id).await.unwrap(), order);
    let page = store
        .list_orders(&OrderFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(page.items, vec![order]);
}

#[tokio::test]
async fn a_bare_path_opens_sqlite_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bare.db");
    let path = path.to_str().unwrap();
    let first = Store::connect(path, paygate_store::PoolOptions::sized(2))
        .await
        .unwrap();
    let order = first
        .insert_order(new_order("order_0001", 100))
        .await
        .unwrap();
    // The write-ahead log exists beside the file while connections are open: WAL is on.
    assert!(std::path::Path::new(&format!("{path}-wal")).exists());
    drop(first);

    // Connecting again must not re-run migrations over existing tables.
    let second = Store::connect(
        &format!("sqlite://{path}"),
        paygate_store::PoolOptions::sized(2),
    )
    .await
    .unwrap();

    assert_eq!(second.order(&order.id).await.unwrap(), order);
}
