//! The two writes on every payment's path, through the real `Store` (pool, semaphore,
//! `spawn_blocking`): inserting a new order, and the compare-and-set `pending → paid`
//! transition a notify performs. SQLite always (a temp file); PostgreSQL too when
//! `PAYGATE_BENCH_DATABASE_URL` names a server (a throwaway database is created there and
//! dropped afterwards).

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Duration, Utc};
use criterion::{BenchmarkId, Criterion, criterion_main};
use paygate_core::{
    AppName, Channel, Currency, Fen, OrderEvent, OrderId, OrderStatus, OutTradeNo, ProviderKind,
};
use paygate_store::{NewOrder, OrderChanges, Store, Transition};
use tokio::runtime::Runtime;

mod support;
use support::{PG_ENV, PgDatabase};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn new_order() -> NewOrder {
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let now = Utc::now();
    NewOrder {
        provider: ProviderKind::WECHAT,
        app: AppName::parse("shop").unwrap_or_else(|e| panic!("{e}")),
        channel: Channel::MiniProgram,
        out_trade_no: OutTradeNo::parse(format!("bench_{n}")).unwrap_or_else(|e| panic!("{e}")),
        amount: Fen::new(1999).unwrap_or_else(|e| panic!("{e}")),
        currency: Currency::Cny,
        subject: "Oolong tea".into(),
        description: None,
        payer_id: Some("o_bench_buyer".into()),
        pay_params: None,
        metadata: None,
        request_hash: format!("hash-{n}"),
        created_at: now,
        expires_at: now + Duration::minutes(30),
    }
}

async fn insert(store: &Store) -> OrderId {
    store
        .insert_order(new_order())
        .await
        .unwrap_or_else(|e| panic!("insert: {e}"))
        .id
}

async fn mark_paid(store: &Store, id: &OrderId) {
    let changes = OrderChanges {
        provider_trade_no: Some("4200000000000000000000000001".into()),
        paid_at: Some(Utc::now()),
        ..OrderChanges::default()
    };
    let outcome = store
        .transition_order(
            id,
            OrderStatus::Pending,
            OrderEvent::PaymentConfirmed,
            changes,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("transition: {e}"));
    assert!(matches!(outcome, Transition::Applied(_)));
}

fn bench_backend(c: &mut Criterion, runtime: &Runtime, backend: &str, url: &str) {
    let store = runtime
        .block_on(Store::connect(url, paygate_store::PoolOptions::sized(8)))
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
    let mut group = c.benchmark_group("store");
    group.bench_function(BenchmarkId::new("insert_order", backend), |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = std::time::Instant::now();
                for _ in 0..iterations {
                    insert(&store).await;
                }
                started.elapsed()
            })
        })
    });
    group.bench_function(BenchmarkId::new("cas_pending_to_paid", backend), |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut ids = Vec::with_capacity(iterations as usize);
                for _ in 0..iterations {
                    ids.push(insert(&store).await);
                }
                let started = std::time::Instant::now();
                for id in &ids {
                    mark_paid(&store, id).await;
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

fn store_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench_backend(c, &runtime, "sqlite", &sqlite_url);
    if let Ok(admin_url) = std::env::var(PG_ENV)
        && !admin_url.is_empty()
    {
        let (database, url) = PgDatabase::create(&admin_url);
        bench_backend(c, &runtime, "postgres", &url);
        drop(database);
    }
}

mod harness {
    // criterion's macro generates an undocumented function.
    #![allow(missing_docs)]
    use super::store_benches;
    criterion::criterion_group!(benches, store_benches);
}
criterion_main!(harness::benches);
