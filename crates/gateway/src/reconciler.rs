//! The reconciler: the background task that makes the database agree with the providers when
//! notifies are lost, calls time out or the process died half-way.
//!
//! Each pass, while this replica holds the `reconciler` lease:
//! 1. orders past `expires_at + expiry_grace` are closed **at the provider first**; a provider
//!    that says "already paid" wins and the order becomes paid, never closed;
//! 2. pending orders older than `query_pending_after` are queried and what the provider says is
//!    applied by [`apply_trade_facts`], the same checks and compare-and-set as a notify. The
//!    queue is fair (`Store::pending_orders_due`): half a batch goes to the least-queried orders,
//!    newest due first, so a new order is reached whatever the backlog, the rest to the longest
//!    overdue, so every order is reached; an order found unpaid backs off, doubling per query;
//! 3. orders closed while the provider had no trade (an Alipay app order closed before the
//!    buyer opened it: its signed `orderString` stays payable until `expires_at`) are watched
//!    by the same backing-off query until they expire, and a payment found reopens the order
//!    as paid with a `late_payment` anomaly, instead of the provider keeping money paygate
//!    calls closed;
//! 4. refunds still `processing` (a timed-out refund call, a lost refund notify) are queried
//!    with their original `out_refund_no` until final; one the provider never received is sent
//!    again with the same `out_refund_no` and amount, never new ones.
//!
//! Orders of apps no longer configured are left out of 1 to 3 (they could fill every batch)
//! and reported once each as an `app_unconfigured` anomaly.
//!
//! Every change is a compare-and-set, so a notify, an API call or another replica racing the
//! reconciler can only make it lose a transition, never apply one twice.

use std::time::{Duration, Instant};

use actix_web::web;
use chrono::{DateTime, Utc};
use paygate_core::{
    AppName, Order, OrderEvent, OrderId, OrderStatus, ProviderError, ProviderKind, RefundQuery,
    RefundRequest, RefundState, RefundStatus, TradeState,
};
use paygate_store::{
    AnomalyKind, DueQuery, EventKind, OrderChanges, QueryAgain, Refund, Store, StoreError,
    Transition,
};
use tokio::sync::watch;

use crate::config::ReconcilerSettings;
use crate::payments::{ApplyError, PaymentOutcome, apply_trade_facts};
use crate::registry::ProviderApp;
use crate::state::AppState;

/// A named lease held by this process, renewed as work goes on. Work that needs a single
/// runner across replicas calls [`Lease::hold`] before each unit of work.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    name: &'static str,
    holder: String,
    ttl: Duration,
    renewed_at: Option<Instant>,
}

impl Lease {
    /// A lease on `name` for `holder`, lasting three intervals (at least one second) so a
    /// replica that stops renewing — killed, partitioned — is replaced within that time.
    pub fn new(store: Store, name: &'static str, holder: String, interval: Duration) -> Lease {
        Lease {
            store,
            name,
            holder,
            ttl: (interval * 3).max(Duration::from_secs(1)),
            renewed_at: None,
        }
    }

    /// True while this process holds the lease; claims or renews it when a third of its
    /// lifetime has gone by.
    pub async fn hold(&mut self) -> bool {
        if let Some(at) = self.renewed_at
            && at.elapsed() < self.ttl / 3
        {
            return true;
        }
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::seconds(1));
        match self
            .store
            .try_claim_lease(self.name, &self.holder, ttl)
            .await
        {
            Ok(true) => {
                self.renewed_at = Some(Instant::now());
                true
            }
            Ok(false) => {
                self.renewed_at = None;
                false
            }
            Err(error) => {
                tracing::warn!(%error, lease = self.name, "cannot claim lease");
                self.renewed_at = None;
                false
            }
        }
    }

    /// Gives the lease up so another replica can take over at once.
    pub async fn release(&mut self) {
        if self.renewed_at.take().is_some()
            && let Err(error) = self.store.release_lease(self.name, &self.holder).await
        {
            tracing::warn!(%error, lease = self.name, "cannot release lease");
        }
    }
}

/// The lease that makes one replica at a time reconcile.
pub const LEASE: &str = "reconciler";

/// What one pass did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Pending orders found paid by a query (or by a refused close).
    pub paid: usize,
    /// Expired orders closed at the provider and then locally.
    pub closed: usize,
    /// Processing refunds that reached a final state.
    pub refunds_settled: usize,
    /// Pending orders of apps no longer configured, reported (once each) and parked.
    pub parked: usize,
}

/// Runs passes every `settings.interval_ms` until `shutdown` flips; a pass in progress
/// finishes first. Only the holder of the `reconciler` lease works.
pub async fn run(
    state: web::Data<AppState>,
    settings: ReconcilerSettings,
    holder: String,
    shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(settings.interval_ms);
    let lease = Lease::new(state.store.clone(), LEASE, holder, interval);
    run_leased(lease, interval, shutdown, |lease| {
        let (state, settings) = (state.clone(), settings.clone());
        Box::pin(async move {
            match reconcile_once(&state, &settings, lease).await {
                Ok(report) if report != PassReport::default() => {
                    tracing::info!(?report, "reconciler pass");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reconciler pass failed; retrying"),
            }
        })
    })
    .await;
}

/// A pass of leased work, borrowing the lease to renew it as it goes.
pub type LeasedPass<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// Runs `pass` every `interval` while this process holds `lease`, until `shutdown` flips; then
/// releases the lease so another replica can take over at once.
pub async fn run_leased<F>(
    mut lease: Lease,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut pass: F,
) where
    F: for<'a> FnMut(&'a mut Lease) -> LeasedPass<'a>,
{
    loop {
        if lease.hold().await {
            pass(&mut lease).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => break,
        }
    }
    lease.release().await;
}

/// One pass over expired orders, pending orders and processing refunds. Stops early when the
/// lease is lost. Provider failures are logged and retried next pass; database failures end
/// the pass.
pub async fn reconcile_once(
    state: &AppState,
    settings: &ReconcilerSettings,
    lease: &mut Lease,
) -> Result<PassReport, StoreError> {
    let mut report = PassReport::default();
    let now = Utc::now();

    // Orders of apps no longer configured can be neither queried nor closed: they are left
    // out of every queue below (so they cannot fill a batch) and reported once each.
    let apps: Vec<(ProviderKind, AppName)> = state
        .registry
        .iter()
        .map(|app| (app.kind(), app.name.clone()))
        .collect();
    report.parked = report_unconfigured(state, &apps, settings.batch_size).await?;

    let expired_before = now - chrono::Duration::seconds(settings.expiry_grace_seconds);
    for order in state
        .store
        .expired_pending_orders(&apps, expired_before, settings.batch_size)
        .await?
    {
        if !lease.hold().await {
            return Ok(report);
        }
        match close_expired(state, order).await? {
            ExpiryOutcome::Closed => report.closed += 1,
            ExpiryOutcome::Paid => report.paid += 1,
            ExpiryOutcome::Left => {}
        }
    }

    let query_after = chrono::Duration::seconds(
        i64::try_from(settings.query_pending_after_seconds).unwrap_or(i64::MAX / 2),
    );
    let due = state
        .store
        .pending_orders_due(&apps, now - query_after, now, settings.batch_size)
        .await?;
    if query_all(state, settings, lease, Queue::Pending, due, &mut report).await? {
        return Ok(report);
    }
    let watched = state
        .store
        .closed_orders_to_watch(&apps, now - WATCH_MARGIN, now, settings.batch_size)
        .await?;
    if query_all(
        state,
        settings,
        lease,
        Queue::WatchedClosed,
        watched,
        &mut report,
    )
    .await?
    {
        return Ok(report);
    }

    for refund in state
        .store
        .refunds_in_status(RefundStatus::Processing, settings.batch_size)
        .await?
    {
        if !lease.hold().await {
            return Ok(report);
        }
        let order = state.store.order(&refund.order_id).await?;
        let Some(app) = configured_app(state, &order) else {
            continue;
        };
        let old_enough =
            refund.created_at < now - query_after && !state.refunds_in_flight.contains(&refund);
        if settle_refund(state, app, &order, &refund, old_enough).await? {
            report.refunds_settled += 1;
        }
    }
    Ok(report)
}

/// Queries a processing refund and records a final answer. A refund the provider has never
/// heard of (the request was lost before reaching it) is sent again when `resend` allows,
/// with the **same** `out_refund_no`, amount and reason, which both providers treat as the
/// same refund. True when the refund reached a final state.
async fn settle_refund(
    state: &AppState,
    app: &ProviderApp,
    order: &Order,
    refund: &Refund,
    resend: bool,
) -> Result<bool, StoreError> {
    let query = RefundQuery {
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: refund.out_refund_no.clone(),
    };
    let facts = match app.provider.query_refund(&query).await {
        Ok(facts) if facts.state == RefundState::NotFound && resend => {
            tracing::warn!(refund = %refund.id, "provider does not know a processing refund; sending it again");
            let request = RefundRequest {
                out_trade_no: order.out_trade_no.clone(),
                provider_trade_no: order.provider_trade_no.clone(),
                out_refund_no: refund.out_refund_no.clone(),
                refund_amount: refund.amount,
                order_amount: order.amount,
                reason: refund.reason.clone(),
                notify_url: Some(state.refund_notify_url(app)),
            };
            match app.provider.refund(&request).await {
                Ok(facts) => facts,
                // The provider never had it and now definitely refuses it: it failed.
                Err(error) if error.is_definite_refusal() => {
                    return crate::refunds::fail_refund(state, order, refund, &error).await;
                }
                Err(error) => {
                    // No usable answer again: the next pass queries again.
                    tracing::warn!(%error, refund = %refund.id, "resending a refund failed; retrying later");
                    return Ok(false);
                }
            }
        }
        Ok(facts) => facts,
        Err(error) => {
            tracing::warn!(%error, refund = %refund.id, "refund query failed; retrying later");
            return Ok(false);
        }
    };
    crate::refunds::apply_refund_facts(state, refund, &facts).await
}

/// What happened to an expired order.
enum ExpiryOutcome {
    Closed,
    Paid,
    Left,
}

fn configured_app<'a>(state: &'a AppState, order: &Order) -> Option<&'a ProviderApp> {
    let app = state.registry.get(order.provider, &order.app);
    if app.is_none() {
        tracing::warn!(order = %order.id, app = %order.app, "app no longer configured; skipped");
    }
    app
}

/// Closes an expired order at the provider, then locally. "Already paid" at the provider
/// becomes a query and a payment; an unknown outcome leaves the order pending for next pass.
async fn close_expired(state: &AppState, order: Order) -> Result<ExpiryOutcome, StoreError> {
    let Some(app) = configured_app(state, &order) else {
        return Ok(ExpiryOutcome::Left);
    };
    Ok(match close_at_provider_first(state, app, &order).await? {
        CloseOutcome::Closed => ExpiryOutcome::Closed,
        CloseOutcome::Paid => ExpiryOutcome::Paid,
        // A notify won the race: whatever it did stands.
        CloseOutcome::Lost => ExpiryOutcome::Left,
        CloseOutcome::Unresolved(error) => {
            tracing::warn!(%error, order = %order.id, "expired order not closed; retrying later");
            ExpiryOutcome::Left
        }
    })
}

/// What closing a pending order did.
#[derive(Debug)]
pub enum CloseOutcome {
    /// Closed at the provider, then here.
    Closed,
    /// The provider says the buyer paid: the order is paid now, never closed.
    Paid,
    /// Something else (a notify) moved the order first.
    Lost,
    /// The provider gave no usable answer; nothing changed here.
    Unresolved(ProviderError),
}

/// Closes `order` at the provider first, then locally; a provider that says (or, refusing the
/// close, turns out on query to say) the trade is paid wins. Shared by the reconciler's expiry
/// and `POST /v1/orders/{id}/close`.
pub async fn close_at_provider_first(
    state: &AppState,
    app: &ProviderApp,
    order: &Order,
) -> Result<CloseOutcome, StoreError> {
    let closed_locally = |transition| match transition {
        Transition::Applied(_) => CloseOutcome::Closed,
        Transition::Lost(_) => CloseOutcome::Lost,
    };
    match app
        .provider
        .close_payment(&paygate_core::TradeRef::of(order))
        .await
    {
        Ok(()) | Err(ProviderError::AlreadyClosed) => Ok(closed_locally(
            close_order_locally(&state.store, order, None).await?,
        )),
        // The provider has no trade to close. Where the buyer creates it (an Alipay app
        // order is signed here and becomes a trade only when the buyer opens it), the pay
        // parameters stay payable until they expire: the order closes here but is watched by
        // query until then, and a payment that turns up reopens it as paid, with an anomaly.
        Err(ProviderError::NotFound) => {
            let watch = (order.expires_at + WATCH_MARGIN > Utc::now()).then(Utc::now);
            Ok(closed_locally(
                close_order_locally(&state.store, order, watch).await?,
            ))
        }
        // "Already paid"; a refusal that may mean it (Alipay answers a close of a paid trade
        // with ACQ.TRADE_STATUS_ERROR); or no usable answer, behind which the provider may
        // have closed the trade. Ask what the trade is: paid wins, closed closes here, and
        // anything else leaves the order pending, to be closed again or queried later.
        Err(error) => match query_and_apply(state, app, order.clone()).await? {
            Queried::Paid | Queried::Unchanged(TradeState::Paid) => Ok(CloseOutcome::Paid),
            Queried::ClosedUnpaid | Queried::Unchanged(TradeState::Closed) => Ok(closed_locally(
                close_order_locally(&state.store, order, None).await?,
            )),
            _ => Ok(CloseOutcome::Unresolved(error)),
        },
    }
}

/// How long past its expiry an order closed without a provider trade is still watched: the
/// provider enforces the expiry on its own clock, which may run behind ours.
pub const WATCH_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// Moves a pending order to closed by compare-and-set, writing `order.closed` to the outbox in
/// the same transaction. Call it only after the provider has closed (or never knew) the trade;
/// `watch_from` (for a trade the provider never knew) keeps the closed order in the
/// reconciler's watch from then until it expires.
pub async fn close_order_locally(
    store: &Store,
    order: &Order,
    watch_from: Option<DateTime<Utc>>,
) -> Result<Transition, StoreError> {
    let changes = OrderChanges {
        closed_at: Some(Utc::now()),
        query_again_at: watch_from,
        ..OrderChanges::default()
    };
    let event = crate::events::order_event(EventKind::OrderClosed, order);
    store
        .transition_order(
            &order.id,
            OrderStatus::Pending,
            OrderEvent::Closed,
            changes,
            Some(event),
        )
        .await
}

/// Queries a due pending order and applies the answer. `None` when it became paid; otherwise when to query it again: the wait doubles with each query that found it
/// unpaid, from `query_backoff_ms` up to `query_backoff_max_ms`.
async fn query_pending(
    state: &AppState,
    settings: &ReconcilerSettings,
    due: DueQuery,
) -> Result<Option<QueryAgain>, StoreError> {
    let DueQuery { order, attempts } = due;
    let id = order.id.clone();
    if let Some(app) = configured_app(state, &order) {
        match query_and_apply(state, app, order.clone()).await? {
            Queried::Paid => return Ok(None),
            // The provider closed it unpaid (a merchant's close that reached the provider, but
            // whose local write failed): close it here too, or the books disagree until expiry.
            Queried::ClosedUnpaid => {
                close_order_locally(&state.store, &order, None).await?;
                return Ok(None);
            }
            // Already paid here, or still unpaid: rescheduling only touches pending orders.
            Queried::Unchanged(_) | Queried::Unknown => {}
        }
    }
    Ok(Some(query_again(settings, id, attempts)))
}

/// The two queues of orders the reconciler queries.
#[derive(Debug, Clone, Copy)]
enum Queue {
    /// Pending orders due for a query.
    Pending,
    /// Orders closed while the provider had no trade, until they expire.
    WatchedClosed,
}

/// Queries every order of `due` from `queue` while the lease holds, counting those found paid,
/// then reschedules the rest in one write (they move behind the queue). True when the lease
/// was lost.
async fn query_all(
    state: &AppState,
    settings: &ReconcilerSettings,
    lease: &mut Lease,
    queue: Queue,
    due: Vec<DueQuery>,
    report: &mut PassReport,
) -> Result<bool, StoreError> {
    let mut again = Vec::with_capacity(due.len());
    let mut lease_lost = false;
    for due in due {
        if !lease.hold().await {
            lease_lost = true;
            break;
        }
        let next = match queue {
            Queue::Pending => query_pending(state, settings, due).await?,
            Queue::WatchedClosed => watch_closed(state, settings, due).await?,
        };
        match next {
            Some(next) => again.push(next),
            None => report.paid += 1,
        }
    }
    state.store.reschedule_queries(again).await?;
    Ok(lease_lost)
}

/// Queries a watched closed order (closed while the provider had no trade). `None` when a
/// payment turned up and reopened it as paid (with a `late_payment` anomaly); otherwise when to
/// look again, backing off like pending queries.
async fn watch_closed(
    state: &AppState,
    settings: &ReconcilerSettings,
    due: DueQuery,
) -> Result<Option<QueryAgain>, StoreError> {
    let DueQuery { order, attempts } = due;
    let id = order.id.clone();
    if let Some(app) = configured_app(state, &order)
        && query_and_apply(state, app, order).await? == Queried::Paid
    {
        tracing::warn!(order = %id, "closed order paid at the provider; reopened as paid");
        return Ok(None);
    }
    Ok(Some(query_again(settings, id, attempts)))
}

/// The next query of an order found unpaid by its `attempts`-th earlier query.
fn query_again(settings: &ReconcilerSettings, order: OrderId, attempts: u32) -> QueryAgain {
    let attempts = attempts.saturating_add(1);
    QueryAgain {
        order,
        attempts,
        at: Utc::now()
            + chrono::Duration::from_std(query_backoff(settings, attempts)).unwrap_or_default(),
    }
}

/// The wait after the `attempts`-th query that found an order unpaid.
fn query_backoff(settings: &ReconcilerSettings, attempts: u32) -> Duration {
    let floor = Duration::from_millis(settings.query_backoff_ms);
    let ceiling = Duration::from_millis(settings.query_backoff_max_ms).max(floor);
    let doublings = attempts.saturating_sub(1).min(30);
    floor.saturating_mul(1 << doublings).min(ceiling)
}

/// Records one `app_unconfigured` anomaly for each pending order (up to `limit` a pass) whose
/// app is not among `apps` and has none yet. Such an order stays pending and out of the
/// reconciler's queues until its app is configured again.
async fn report_unconfigured(
    state: &AppState,
    apps: &[(ProviderKind, AppName)],
    limit: u32,
) -> Result<usize, StoreError> {
    let orders = state
        .store
        .unconfigured_pending_orders_unreported(apps, AnomalyKind::AppUnconfigured, limit)
        .await?;
    for order in &orders {
        tracing::warn!(order = %order.id, app = %order.app, "pending order of an app no longer configured; parked");
        crate::payments::record_anomaly(
            &state.store,
            order.provider,
            order.app.as_str(),
            Some(order),
            AnomalyKind::AppUnconfigured,
            format!(
                "pending order of {} app {} which is no longer configured: paygate can neither \
                 query nor close it; check the trade at the provider, or configure the app \
                 again to let the reconciler settle it",
                order.provider, order.app
            ),
            None,
        )
        .await?;
    }
    Ok(orders.len())
}

/// What a query found, once applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queried {
    /// The order moved to paid now.
    Paid,
    /// Nothing changed here; the provider says the trade is in this state (`Paid` when the
    /// order was already paid).
    Unchanged(TradeState),
    /// The provider closed the trade and it was never paid (no payment time reported: an
    /// Alipay `TRADE_CLOSED` after a payment is a full refund, which this is not).
    ClosedUnpaid,
    /// No usable answer (no such trade, no answer, a mismatch).
    Unknown,
}

/// Asks the provider about `order` and applies the answer like a notify; a mismatch is
/// recorded as an anomaly for finance.
async fn query_and_apply(
    state: &AppState,
    app: &ProviderApp,
    order: Order,
) -> Result<Queried, StoreError> {
    let facts = match app
        .provider
        .query_payment(&paygate_core::TradeRef::of(&order))
        .await
    {
        Ok(facts) => facts,
        Err(ProviderError::NotFound) => return Ok(Queried::Unknown),
        Err(error) => {
            tracing::warn!(%error, order = %order.id, "payment query failed; retrying later");
            return Ok(Queried::Unknown);
        }
    };
    if facts.state == TradeState::Closed && facts.paid_at.is_none() {
        return Ok(Queried::ClosedUnpaid);
    }
    let queried = order.clone();
    match apply_trade_facts(&state.store, app.provider.as_ref(), order, &facts, None).await {
        Ok(PaymentOutcome::Paid(_) | PaymentOutcome::PaidAfterClose(_)) => Ok(Queried::Paid),
        Ok(PaymentOutcome::AlreadyPaid(_)) => Ok(Queried::Unchanged(TradeState::Paid)),
        Ok(PaymentOutcome::NotPaid(state)) => Ok(Queried::Unchanged(state)),
        Ok(PaymentOutcome::Mismatch(mismatch)) => {
            crate::payments::record_anomaly(
                &state.store,
                queried.provider,
                queried.app.as_str(),
                Some(&queried),
                AnomalyKind::PaymentMismatch,
                format!("reconciler query: {mismatch}"),
                None,
            )
            .await?;
            Ok(Queried::Unknown)
        }
        Err(ApplyError::Store(error)) => Err(error),
        Err(ApplyError::Provider(error)) => {
            tracing::warn!(%error, order = %queried.id, "confirming query failed; retrying later");
            Ok(Queried::Unknown)
        }
    }
}

/// The background work `serve` runs beside the HTTP server, built (and its secrets read)
/// before anything starts so a bad webhook secret file stops start-up.
#[derive(Debug)]
pub struct Background {
    reconciler: Option<ReconcilerSettings>,
    dispatcher: Option<crate::webhooks::Dispatcher>,
    statements: Option<crate::statements::job::Schedule>,
}

impl Background {
    /// The tasks the settings enable.
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Background, crate::config::ConfigError> {
        let dispatcher = if settings.webhooks.enabled {
            Some(crate::webhooks::Dispatcher::from_settings(
                &settings.webhooks,
            )?)
        } else {
            None
        };
        Ok(Background {
            reconciler: settings
                .reconciler
                .enabled
                .then(|| settings.reconciler.clone()),
            dispatcher,
            statements: if settings.statements.enabled {
                Some(settings.statements.schedule()?)
            } else {
                None
            },
        })
    }

    /// Starts the tasks. Start-up needs no special resume step: undelivered events and
    /// processing refunds are in the database and the first pass picks them up.
    pub fn start(self, state: web::Data<AppState>) -> RunningBackground {
        let (shutdown, watcher) = watch::channel(false);
        // One holder id per process: a restarted process is a new holder and waits for the
        // old lease to lapse, which is what keeps two live processes from overlapping.
        let holder = format!("{}-{}", std::process::id(), ulid::Ulid::new());
        let mut tasks = Vec::new();
        if let Some(settings) = self.reconciler {
            tasks.push(tokio::spawn(run(
                state.clone(),
                settings,
                holder.clone(),
                watcher.clone(),
            )));
        }
        if let Some(schedule) = self.statements {
            tasks.push(tokio::spawn(crate::statements::job::run(
                state.clone(),
                schedule,
                holder.clone(),
                watcher.clone(),
            )));
        }
        if let Some(dispatcher) = self.dispatcher {
            tasks.push(tokio::spawn(dispatcher.run(
                state.store.clone(),
                holder.clone(),
                watcher,
            )));
        }
        RunningBackground {
            shutdown,
            tasks,
            store: state.store.clone(),
            holder,
        }
    }
}

/// Started background tasks.
#[derive(Debug)]
pub struct RunningBackground {
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: Store,
    holder: String,
}

impl RunningBackground {
    /// Asks the tasks to stop after their current pass and waits for them at most `budget`
    /// (a hung webhook endpoint or provider must not hold a stop past what systemd or
    /// Kubernetes allow); past it they are cut short. Either way this process's leases and
    /// delivery claims are released, so another replica takes over at once.
    pub async fn stop(self, budget: Duration) {
        let _ = self.shutdown.send(true);
        let mut tasks = self.tasks;
        let all = futures_util::future::join_all(tasks.iter_mut());
        if tokio::time::timeout(budget, all).await.is_err() {
            tracing::warn!(
                ?budget,
                "background tasks did not stop in time; cutting them short"
            );
            for task in &tasks {
                task.abort();
            }
            // Only the unfinished ones: a handle already polled to completion must not be
            // awaited again.
            let unfinished = tasks.into_iter().filter(|task| !task.is_finished());
            futures_util::future::join_all(unfinished).await;
        }
        for lease in [LEASE, crate::webhooks::LEASE, crate::statements::job::LEASE] {
            if let Err(error) = self.store.release_lease(lease, &self.holder).await {
                tracing::warn!(%error, lease, "cannot release lease");
            }
        }
        if let Err(error) = self.store.release_event_claims(&self.holder).await {
            tracing::warn!(%error, "cannot release webhook delivery claims");
        }
    }
}
