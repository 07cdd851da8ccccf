//! The actix workers never wait on the database or on RSA: while a batch of Alipay creates is
//! stuck behind a database write lock held from outside the gateway, `/healthz` keeps
//! answering. Only the order of completions is asserted, never a duration.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use std::sync::mpsc;
use tokio::sync::oneshot;

use crate::helpers::{TestApp, spawn_app};

const CREATES: usize = 50;
const HEALTH_CHECKS: usize = 20;

/// Holds the database's write lock on a thread of its own until told to let go, the way a
/// long transaction or a slow disk would. Returns once the lock is held.
fn hold_write_lock(database_url: &str) -> mpsc::Sender<()> {
    let (release, released) = mpsc::channel::<()>();
    let (locked, is_locked) = mpsc::channel::<()>();
    let url = database_url.to_owned();
    std::thread::spawn(move || {
        let hold = |conn: &mut dyn SimpleConnection, lock: &str| {
            conn.batch_execute(lock).expect("take the write lock");
            locked.send(()).expect("report locked");
            let _ = released.recv();
            conn.batch_execute("ROLLBACK").expect("release");
        };
        match url.strip_prefix("sqlite://") {
            Some(path) => hold(
                &mut SqliteConnection::establish(path).expect("open sqlite"),
                // Waits its turn like the gateway's own connections: the gateway's writer and
                // its WAL checkpointer may be at work on the file just then.
                "PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE",
            ),
            None => hold(
                &mut PgConnection::establish(&url).expect("open postgres"),
                "BEGIN; LOCK TABLE orders IN EXCLUSIVE MODE",
            ),
        }
    });
    is_locked.recv().expect("the lock holder started");
    release
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthz_answers_while_alipay_creates_wait_on_a_locked_database() {
    let app = spawn_app().await;
    let release = hold_write_lock(&app.database_url);

    // 50 concurrent Alipay app creates: each signs an orderString (RSA-2048) and must write
    // its order, which the held lock forbids.
    let (creates_done, mut creates_finished) = oneshot::channel::<Vec<u16>>();
    let creator = app.http.clone();
    let (address, key) = (app.address.clone(), app.merchant_key.clone());
    tokio::spawn(async move {
        let requests = (0..CREATES).map(|i| {
            let body = TestApp::order_body("alipay", "app", &format!("latency_{i}"), 100);
            creator
                .post(format!("{address}/v1/orders"))
                .bearer_auth(&key)
                .json(&body)
                .send()
        });
        let statuses = futures_util::future::join_all(requests)
            .await
            .into_iter()
            .map(|r| r.map_or(0, |r| r.status().as_u16()))
            .collect();
        let _ = creates_done.send(statuses);
    });

    // Meanwhile, health checks one after another.
    let mut health_statuses = Vec::new();
    for _ in 0..HEALTH_CHECKS {
        let response = app
            .http
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .expect("healthz");
        health_statuses.push(response.status().as_u16());
    }
    let creates_finished_before_health = creates_finished.try_recv().is_ok();

    release.send(()).expect("release the lock");
    // The client's own 30 s timeout bounds this wait; it is not an assertion on time.
    let create_statuses = creates_finished.await.expect("the create task reports");

    assert_eq!(health_statuses, vec![200; HEALTH_CHECKS]);
    assert!(
        !creates_finished_before_health,
        "every health check must be answered while the creates still wait on the database"
    );
    assert_eq!(
        create_statuses,
        vec![201; CREATES],
        "creates succeed after the lock"
    );
}
