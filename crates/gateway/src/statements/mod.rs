//! Statement reconciliation of one app and Beijing day (issue #16, bills.md §5): fetch the
//! provider's trade bill, keep it, match it line by line against our books, store the day's
//! result in place of any earlier one, and act on what the bill proves we missed.
//!
//! The steps, and why they are in this order:
//! 1. **Download** through the provider ([`paygate_core::Provider::download_bill`]). "Not
//!    ready" stores nothing and is retried by the caller. "No bill" is an empty day only if our
//!    books are empty too; otherwise the bill is missing, which is retried like "not ready".
//! 2. **Keep the raw file** with its SHA-256 before reading it, so even a file that does not
//!    parse is evidence finance can download.
//! 3. **Read the whole file once** to check it (every row, the summary or footer totals) and to
//!    learn which orders and refunds it names. A file that fails stores a `failed` run with the
//!    parser's reason, and changes no order: never a partial result.
//! 4. **Load the ledger** of the day (our payments by the provider's success time, our refunds
//!    by request time, and whatever the bill names), and **match** the file a second time,
//!    streaming, so a million-row bill is never held in memory as rows.
//! 5. **Store** the run, replacing the day's earlier run and its differences.
//! 6. **Act**: a payment the bill shows as paid that our books have pending or closed (a lost
//!    notify) is queried at the provider and goes through [`apply_trade_facts`], the same
//!    check (amount, currency, app, merchant, state) and compare-and-set every other path to
//!    `paid` uses, webhook included. The bill alone never marks an order paid: it is unsigned
//!    evidence. The difference stays listed, with a resolution saying what was done.

pub mod job;

use std::collections::{BTreeSet, HashSet};

use chrono::{NaiveDate, TimeDelta, Utc};
use paygate_core::{
    BillDownload, BillFormat, BillLine, BillLineKind, MerchantIdentity, OrderStatus, OutTradeNo,
    ProviderError, ProviderKind,
};
use paygate_reconciliation::{
    Category, HeldItem, Item, Ledger, MatchOptions, Matcher, NeighbourBill, Report, Settlement,
    settle, waits_for,
};
use paygate_store::{
    BillDayKey, BillFileId, Difference, NewBillFile, NewReconciliationRun, ReconciliationRun,
    Resolution, RunOutcome, RunStatus, Store, StoreError,
};

use crate::payments::{ApplyError, PaymentOutcome, apply_trade_facts};
use crate::registry::ProviderApp;
use crate::state::AppState;

/// Who the resolutions written by the act step are signed with.
pub const ACTOR: &str = "paygate reconciliation";

/// Where the bill comes from.
#[derive(Debug, Clone)]
pub enum BillSource {
    /// Download it from the provider now.
    Download,
    /// A file finance downloaded by hand (the provider's bytes, unchanged).
    File(Vec<u8>),
}

/// How a day's reconciliation ended.
#[derive(Debug, Clone)]
pub enum DayOutcome {
    /// The run is stored (matched, with differences, or failed on a bad file).
    Reconciled {
        /// The stored run.
        run: Box<ReconciliationRun>,
        /// Orders marked paid by the act step after a provider query.
        paid: Vec<String>,
    },
    /// The provider has not made the bill yet: try again later.
    NotReady,
    /// The provider says there is no bill, but our books have business that day: try again
    /// later, and alert if it stays missing.
    BillMissing,
    /// The app's provider offers no bill download.
    Unsupported,
}

/// Why a day could not be reconciled at all (nothing is stored for it).
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider gave no usable answer to the download.
    #[error("bill download failed: {0}")]
    Provider(#[from] ProviderError),
}

/// Why no configured app answers to a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppLookupError {
    /// No app of that name (and provider).
    #[error("no configured app {0}")]
    NotFound(String),
    /// Both providers have an app of that name.
    #[error("app {0} exists for several providers: name the provider")]
    Ambiguous(String),
}

/// The configured app called `name`, of `provider` when given (needed only when two
/// providers use the name).
pub fn find_app<'a>(
    state: &'a AppState,
    name: &paygate_core::AppName,
    provider: Option<ProviderKind>,
) -> Result<&'a ProviderApp, AppLookupError> {
    let mut apps = state
        .registry
        .iter()
        .filter(|a| &a.name == name && provider.is_none_or(|p| a.kind() == p));
    match (apps.next(), apps.next()) {
        (Some(app), None) => Ok(app),
        (None, _) => Err(AppLookupError::NotFound(name.to_string())),
        (Some(_), Some(_)) => Err(AppLookupError::Ambiguous(name.to_string())),
    }
}

/// Reads a bill file of `format`, checking it against the merchant and day, and hands every
/// line to `on_line`. `Err` carries the parser's precise reason; lines already handed over
/// must then be discarded.
pub fn read_bill(
    format: BillFormat,
    body: &[u8],
    merchant: &MerchantIdentity,
    day: NaiveDate,
    mut on_line: impl FnMut(&BillLine<'_>),
) -> Result<(), String> {
    use paygate_wechat::bill::{BillExpectation, TradeBillReader};
    let wechat = || BillExpectation {
        mch_id: Some(merchant.merchant_id.clone()),
        day: Some(day),
    };
    match format {
        BillFormat::WechatGzip => {
            let mut reader =
                TradeBillReader::from_gzip(body, wechat()).map_err(|e| e.to_string())?;
            while let Some(row) = reader.next_row().map_err(|e| e.to_string())? {
                on_line(&row.bill_line());
            }
            Ok(())
        }
        BillFormat::WechatText => {
            let mut reader = TradeBillReader::new(body, wechat()).map_err(|e| e.to_string())?;
            while let Some(row) = reader.next_row().map_err(|e| e.to_string())? {
                on_line(&row.bill_line());
            }
            Ok(())
        }
        BillFormat::AlipayZip => {
            let expectation = paygate_alipay::bill::BillExpectation {
                // The bill names the account as the seller PID followed by 0156.
                account: Some(format!("{}0156", merchant.merchant_id)),
                day: Some(day),
            };
            paygate_alipay::bill::read_trade_bill_zip(
                std::io::Cursor::new(body),
                &expectation,
                |row| on_line(&row.bill_line()),
            )
            .map(drop)
            .map_err(|e| e.to_string())
        }
    }
}

/// The format a provider's file must have.
fn expected_format(provider: ProviderKind, body: &[u8]) -> Result<BillFormat, String> {
    let sniffed = BillFormat::sniff(body);
    let fits = match sniffed {
        BillFormat::AlipayZip => provider == ProviderKind::ALIPAY,
        BillFormat::WechatGzip | BillFormat::WechatText => provider == ProviderKind::WECHAT,
    };
    if fits {
        Ok(sniffed)
    } else {
        Err(format!("a {sniffed:?} file is not a {provider} bill"))
    }
}

/// Reconciles `app`'s bill of Beijing day `day`. Provider failures leave nothing stored and
/// are the caller's to retry; a bad file is a stored `failed` run.
pub async fn reconcile_day(
    state: &AppState,
    app: &ProviderApp,
    day: NaiveDate,
    source: BillSource,
) -> Result<DayOutcome, StatementError> {
    let key = BillDayKey {
        app: app.name.clone(),
        provider: app.kind(),
        bill_day: day,
    };
    let (body, integrity_failure) = match source {
        BillSource::File(body) => (body, None),
        BillSource::Download => match app.provider.download_bill(day).await? {
            BillDownload::File(file) => (file.body, file.integrity_failure),
            BillDownload::NotReady => return Ok(DayOutcome::NotReady),
            BillDownload::Unsupported => return Ok(DayOutcome::Unsupported),
            BillDownload::NoBill => return no_bill(state, app, &key).await,
        },
    };
    let file = state
        .store
        .insert_bill_file(NewBillFile {
            app: key.app.clone(),
            provider: key.provider,
            bill_day: day,
            body: body.clone(),
            fetched_at: Utc::now(),
        })
        .await?;
    // The evidence and the parsed bytes must be the same bytes: the stored SHA-256 says so
    // without reading megabytes back through the driver (whose buffers the allocator keeps).
    if file.sha256 != paygate_store::bill_file_sha256(&body) {
        let reason = "the stored bill file is not the file downloaded".to_owned();
        return store_failed(state, &key, Some(file.id), reason).await;
    }
    if let Some(reason) = integrity_failure {
        return store_failed(state, &key, Some(file.id), reason).await;
    }
    let merchant = app.provider.merchant();
    let format = expected_format(key.provider, &body);

    // Our books of the day first, so the check of the file can note which orders and
    // refunds it names beyond them: a million-row bill then costs no million-key lookup.
    let apps = merchant_apps(state, app);
    let mut ledger = state.store.bill_day_own_ledger(&key, &apps).await?;
    let (known_orders, known_refunds) = ledger_keys(&ledger);

    // First pass: check the whole file and collect the keys it names that the day lacks.
    let mut named_orders = BTreeSet::new();
    let mut named_refunds = BTreeSet::new();
    let checked = format.and_then(|format| {
        read_bill(format, &body, merchant, day, |line| {
            if !known_orders.contains(line.out_trade_no) {
                named_orders.insert(line.out_trade_no.to_owned());
            }
            if line.kind == BillLineKind::Refund
                && let Some(no) = line.out_refund_no
                && !known_refunds.contains(no)
            {
                named_refunds.insert(no.to_owned());
            }
        })
        .map(|()| format)
    });
    drop((known_orders, known_refunds));
    let format = match checked {
        Ok(format) => format,
        Err(reason) => return store_failed(state, &key, Some(file.id), reason).await,
    };
    let named = state
        .store
        .bill_named_ledger(
            &key,
            &apps,
            named_orders.into_iter().collect(),
            named_refunds.into_iter().collect(),
        )
        .await?;
    ledger.payments.extend(named.payments);
    ledger.refunds.extend(named.refunds);

    // Second pass: match, streaming.
    let mut matcher = Matcher::new(day, ledger, MatchOptions::default());
    if let Err(reason) = read_bill(format, &body, merchant, day, |line| matcher.push(line)) {
        // The file changed under us, which it cannot: report it rather than guess.
        return store_failed(state, &key, Some(file.id), reason).await;
    }
    let report = match matcher.finish() {
        Ok(report) => report,
        Err(error) => return store_failed(state, &key, Some(file.id), error.to_string()).await,
    };
    let to_act: Vec<String> = report
        .items
        .iter()
        .filter(|item| lost_payment(item))
        .map(|item| item.out_trade_no.clone())
        .collect();
    let run = store_report(state, &key, Some(file.id), report).await?;
    settle_neighbours(&state.store, merchant, &key, Some(body.as_slice())).await?;
    let paid = act(state, app, &run, &to_act).await?;
    Ok(DayOutcome::Reconciled {
        run: Box::new(run),
        paid,
    })
}

/// The order and refund numbers `ledger` holds, borrowed from it.
fn ledger_keys(ledger: &Ledger) -> (HashSet<&str>, HashSet<&str>) {
    let orders = ledger
        .payments
        .iter()
        .map(|p| p.out_trade_no.as_str())
        .collect();
    let refunds = ledger
        .refunds
        .iter()
        .map(|r| r.out_refund_no.as_str())
        .collect();
    (orders, refunds)
}

/// Every configured app of `app`'s provider on the same merchant account (WeChat v2 and v3
/// apps of one `mch_id`, say): the bill covers all their trades, so our side must too.
fn merchant_apps(state: &AppState, app: &ProviderApp) -> Vec<paygate_core::AppName> {
    let merchant = &app.provider.merchant().merchant_id;
    state
        .registry
        .iter()
        .filter(|other| {
            other.kind() == app.kind() && &other.provider.merchant().merchant_id == merchant
        })
        .map(|other| other.name.clone())
        .collect()
}

/// The order `out_trade_no` among the merchant's apps, with the app that owns it.
async fn merchant_order<'a>(
    state: &'a AppState,
    app: &ProviderApp,
    out_trade_no: &OutTradeNo,
) -> Result<Option<(&'a ProviderApp, paygate_core::Order)>, StoreError> {
    for name in merchant_apps(state, app) {
        let Some(owner) = state.registry.get(app.kind(), &name) else {
            continue;
        };
        match state.store.order_by_out_trade_no(&name, out_trade_no).await {
            Ok(order) => return Ok(Some((owner, order))),
            Err(StoreError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(None)
}

/// A payment the bill shows as successful that our books have pending or closed.
fn lost_payment(item: &Item) -> bool {
    item.kind == BillLineKind::Payment
        && item.category == Category::StatusMismatch
        && item.bill.as_ref().is_some_and(|b| b.status == "SUCCESS")
        && item.local.as_ref().is_some_and(|l| {
            matches!(
                l.status,
                paygate_reconciliation::LocalStatus::Order(
                    OrderStatus::Pending | OrderStatus::Closed
                )
            )
        })
}

/// "No bill": a verified empty day when our books have nothing that day either, otherwise a
/// missing bill.
async fn no_bill(
    state: &AppState,
    app: &ProviderApp,
    key: &BillDayKey,
) -> Result<DayOutcome, StatementError> {
    let ledger = state
        .store
        .bill_day_own_ledger(key, &merchant_apps(state, app))
        .await?;
    let report = Matcher::new(key.bill_day, ledger, MatchOptions::default())
        .finish()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    if report.local_totals.payments_count > 0 || report.local_totals.refunds_count > 0 {
        tracing::warn!(app = %key.app, provider = %key.provider, day = %key.bill_day,
            payments = report.local_totals.payments_count, refunds = report.local_totals.refunds_count,
            "the provider has no bill for a day with business in our books");
        return Ok(DayOutcome::BillMissing);
    }
    let run = store_report(state, key, None, report).await?;
    settle_neighbours(&state.store, app.provider.merchant(), key, None).await?;
    Ok(DayOutcome::Reconciled {
        run: Box::new(run),
        paid: Vec::new(),
    })
}

/// How close to midnight a local-only item must be to be held.
fn near_midnight_margin() -> TimeDelta {
    MatchOptions::default().near_midnight
}

/// Settles what the day `key` just checked can decide about held near-midnight items (bills.md
/// §5.2): the items of either neighbouring day held for this day's bill, and this day's items
/// held for a neighbouring day whose bill has already been checked (a rerun, or days
/// reconciled out of order). `bill` is this day's file, `None` for a verified empty day (no
/// bill, no business), which has none of them.
pub async fn settle_neighbours(
    store: &Store,
    merchant: &MerchantIdentity,
    key: &BillDayKey,
    bill: Option<&[u8]>,
) -> Result<(), StatementError> {
    let neighbours = [key.bill_day.pred_opt(), key.bill_day.succ_opt()];
    for neighbour in neighbours.into_iter().flatten() {
        let neighbour_key = BillDayKey {
            bill_day: neighbour,
            ..key.clone()
        };
        settle_held(store, merchant, &neighbour_key, key.bill_day, bill).await?;
        let Some(run) = store.reconciliation_run(&neighbour_key).await? else {
            continue;
        };
        if run.status == RunStatus::Failed {
            // Its bill could not be read: this day's items stay held until it can.
            continue;
        }
        let body = match &run.bill_file_id {
            Some(id) => Some(store.bill_file_body(id).await?),
            None => None,
        };
        settle_held(store, merchant, key, neighbour, body.as_deref()).await?;
    }
    Ok(())
}

/// Settles the items of `held_key`'s run held for `bill_day`'s bill (`bill`, `None` when that
/// day was verified empty).
async fn settle_held(
    store: &Store,
    merchant: &MerchantIdentity,
    held_key: &BillDayKey,
    bill_day: NaiveDate,
    bill: Option<&[u8]>,
) -> Result<(), StatementError> {
    let Some(run) = store.reconciliation_run(held_key).await? else {
        return Ok(());
    };
    if run.held_count == 0 {
        return Ok(());
    }
    let margin = near_midnight_margin();
    let waiting: Vec<Difference> = store
        .reconciliation_differences(&run.id, None)
        .await?
        .into_iter()
        .filter(|d| {
            d.held
                && d.local_time
                    .is_some_and(|at| waits_for(held_key.bill_day, at, margin) == Some(bill_day))
        })
        .collect();
    if waiting.is_empty() {
        return Ok(());
    }
    let neighbour = match bill {
        None => None,
        Some(body) => {
            let mut lines = NeighbourBill::new();
            let read = expected_format(held_key.provider, body).and_then(|format| {
                read_bill(format, body, merchant, bill_day, |line| {
                    lines.offer(paygate_core::BillDay::new(held_key.bill_day), line, margin);
                })
            });
            if let Err(reason) = read {
                tracing::warn!(app = %held_key.app, day = %held_key.bill_day, neighbour = %bill_day, %reason,
                    "the neighbouring bill does not read; the near-midnight items stay held");
                return Ok(());
            }
            Some(lines)
        }
    };
    let (mut found, mut escalated) = (Vec::new(), Vec::new());
    for difference in waiting {
        let key = match difference.kind {
            BillLineKind::Payment => Some(difference.out_trade_no.clone()),
            BillLineKind::Refund => difference.out_refund_no.clone(),
        };
        let settlement = match (key, difference.local_amount) {
            (Some(key), Some(amount)) => settle(
                &HeldItem {
                    kind: difference.kind,
                    key,
                    amount,
                },
                neighbour.as_ref(),
            ),
            _ => Settlement::Escalated,
        };
        match settlement {
            Settlement::FoundInNeighbour => found.push(difference.id),
            Settlement::Escalated => escalated.push(difference.id),
        }
    }
    tracing::info!(app = %held_key.app, provider = %held_key.provider, day = %held_key.bill_day,
        neighbour = %bill_day, found = found.len(), escalated = escalated.len(),
        "held near-midnight items settled against the neighbouring bill");
    let note = Resolution {
        note: format!(
            "found in the {bill_day} bill with the same amount: dated across midnight from our clock"
        ),
        by: ACTOR.to_owned(),
        at: Utc::now(),
    };
    store
        .settle_held_differences(&run, found, escalated, note)
        .await?;
    Ok(())
}

async fn store_report(
    state: &AppState,
    key: &BillDayKey,
    bill_file_id: Option<BillFileId>,
    report: Report,
) -> Result<ReconciliationRun, StoreError> {
    store_run(
        state,
        key,
        bill_file_id,
        RunOutcome::Reconciled(Box::new(report)),
    )
    .await
}

async fn store_failed(
    state: &AppState,
    key: &BillDayKey,
    bill_file_id: Option<BillFileId>,
    reason: String,
) -> Result<DayOutcome, StatementError> {
    tracing::warn!(app = %key.app, provider = %key.provider, day = %key.bill_day, %reason,
        "the bill could not be used; no order changed");
    let run = store_run(state, key, bill_file_id, RunOutcome::Failed(reason)).await?;
    Ok(DayOutcome::Reconciled {
        run: Box::new(run),
        paid: Vec::new(),
    })
}

/// Stores the day's run in place of any earlier one.
async fn store_run(
    state: &AppState,
    key: &BillDayKey,
    bill_file_id: Option<BillFileId>,
    outcome: RunOutcome,
) -> Result<ReconciliationRun, StoreError> {
    state
        .store
        .replace_reconciliation_run(NewReconciliationRun {
            app: key.app.clone(),
            provider: key.provider,
            bill_day: key.bill_day,
            bill_file_id,
            outcome,
            finished_at: Utc::now(),
        })
        .await
}

/// The act step: each lost payment is queried and, when the provider's own answer proves it,
/// marked paid through [`apply_trade_facts`]; its difference gets a resolution saying so.
async fn act(
    state: &AppState,
    app: &ProviderApp,
    run: &ReconciliationRun,
    out_trade_nos: &[String],
) -> Result<Vec<String>, StoreError> {
    if out_trade_nos.is_empty() {
        return Ok(Vec::new());
    }
    let differences = state
        .store
        .reconciliation_differences(&run.id, Some(Category::StatusMismatch))
        .await?;
    let mut paid = Vec::new();
    for no in out_trade_nos {
        let Ok(number) = OutTradeNo::parse(no.as_str()) else {
            continue;
        };
        // The order may belong to another app on the same merchant account: it is queried
        // and checked with its own app's provider.
        let Some((owner, order)) = merchant_order(state, app, &number).await? else {
            continue;
        };
        let note = match owner
            .provider
            .query_payment(&paygate_core::TradeRef::of(&order))
            .await
        {
            Err(error) => {
                tracing::warn!(%error, order = %order.id, "query of a lost payment failed; left for finance");
                continue;
            }
            Ok(facts) => {
                match apply_trade_facts(&state.store, owner.provider.as_ref(), order, &facts, None)
                    .await
                {
                    Ok(PaymentOutcome::Paid(_) | PaymentOutcome::PaidAfterClose(_)) => {
                        paid.push(no.clone());
                        "the provider's query confirmed the payment; the order is now paid"
                            .to_owned()
                    }
                    Ok(PaymentOutcome::AlreadyPaid(_)) => {
                        "already paid by the time of the provider query".to_owned()
                    }
                    Ok(PaymentOutcome::NotPaid(trade_state)) => {
                        tracing::warn!(order = %no, ?trade_state, "the bill says paid, the provider's query does not; left for finance");
                        continue;
                    }
                    Ok(PaymentOutcome::Mismatch(mismatch)) => {
                        tracing::warn!(order = %no, %mismatch, "the provider's query does not match the order; left for finance");
                        continue;
                    }
                    Err(ApplyError::Store(error)) => return Err(error),
                    Err(ApplyError::Provider(error)) => {
                        tracing::warn!(%error, order = %no, "confirming query failed; left for finance");
                        continue;
                    }
                }
            }
        };
        if let Some(difference) = differences.iter().find(|d| &d.out_trade_no == no) {
            state
                .store
                .resolve_difference(
                    &difference.id,
                    Resolution {
                        note,
                        by: ACTOR.to_owned(),
                        at: Utc::now(),
                    },
                )
                .await?;
        }
    }
    Ok(paid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vector(name: &str) -> Vec<u8> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vectors/bills");
        std::fs::read(dir.join(name)).unwrap()
    }

    fn merchant(id: &str) -> MerchantIdentity {
        MerchantIdentity {
            app_id: "wx2421b1c4370ec43b".into(),
            merchant_id: id.into(),
        }
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()
    }

    fn lines(format: BillFormat, body: &[u8], merchant_id: &str) -> Result<Vec<String>, String> {
        let mut seen = Vec::new();
        read_bill(format, body, &merchant(merchant_id), day(), |line| {
            seen.push(line.out_refund_no.unwrap_or(line.out_trade_no).to_owned());
        })?;
        Ok(seen)
    }

    /// A WeChat `ALL` bill of merchant 10000100 with one payment per `(out_trade_no, fen,
    /// Beijing time)`, its summary consistent with the rows.
    fn wechat_bill(payments: &[(&str, i64, &str)]) -> Vec<u8> {
        const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
        let yuan = |fen: i64| format!("{}.{:02}", fen / 100, fen % 100);
        let mut text = format!("{HEADER}\r\n");
        let mut gross = 0;
        for (n, (no, fen, at)) in payments.iter().enumerate() {
            gross += fen;
            text.push_str(&format!(
                "`{at},`wx2421b1c4370ec43b,`10000100,`0,`,`42000000002024{n:014},`{no},`o1,`NATIVE,`SUCCESS,`OTHERS,`CNY,`{},`0.00,`0,`0,`0.00,`0.00,`,`,`tea,`,`0.00000,`0.60%,`{},`0.00,`\r\n",
                yuan(*fen),
                yuan(*fen)
            ));
        }
        text.push_str("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n");
        text.push_str(&format!(
            "`{},`{},`0.00,`0.00,`0.00000,`{},`0.00\r\n",
            payments.len(),
            yuan(gross),
            yuan(gross)
        ));
        text.into_bytes()
    }

    fn paid(no: &str, fen: i64, beijing: &str) -> paygate_reconciliation::LedgerPayment {
        paygate_reconciliation::LedgerPayment {
            out_trade_no: no.to_owned(),
            provider_trade_no: None,
            amount: paygate_core::Fen::new(fen).unwrap(),
            status: OrderStatus::Paid,
            paid_at: Some(paygate_core::bill::parse_beijing_time(beijing).unwrap()),
        }
    }

    /// Matches `bill` of `day` against `payments`, keeps the file and stores the run, as a
    /// day's reconciliation does, then settles the neighbours.
    async fn run_day(
        store: &Store,
        day: NaiveDate,
        bill: Option<Vec<u8>>,
        payments: Vec<paygate_reconciliation::LedgerPayment>,
    ) -> ReconciliationRun {
        let key = BillDayKey {
            app: paygate_core::AppName::parse("shop").unwrap(),
            provider: ProviderKind::WECHAT,
            bill_day: day,
        };
        let ledger = paygate_reconciliation::Ledger {
            payments,
            refunds: Vec::new(),
        };
        let mut matcher = Matcher::new(day, ledger, MatchOptions::default());
        let file = match &bill {
            Some(body) => {
                read_bill(
                    BillFormat::WechatText,
                    body,
                    &merchant("10000100"),
                    day,
                    |l| matcher.push(l),
                )
                .unwrap();
                let file = store
                    .insert_bill_file(NewBillFile {
                        app: key.app.clone(),
                        provider: key.provider,
                        bill_day: day,
                        body: body.clone(),
                        fetched_at: Utc::now(),
                    })
                    .await
                    .unwrap();
                Some(file.id)
            }
            None => None,
        };
        store
            .replace_reconciliation_run(NewReconciliationRun {
                app: key.app.clone(),
                provider: key.provider,
                bill_day: day,
                bill_file_id: file,
                outcome: RunOutcome::Reconciled(Box::new(matcher.finish().unwrap())),
                finished_at: Utc::now(),
            })
            .await
            .unwrap();
        settle_neighbours(store, &merchant("10000100"), &key, bill.as_deref())
            .await
            .unwrap();
        store.reconciliation_run(&key).await.unwrap().unwrap()
    }

    async fn categories(
        store: &Store,
        run: &ReconciliationRun,
    ) -> Vec<(String, &'static str, bool)> {
        let mut found: Vec<_> = store
            .reconciliation_differences(&run.id, None)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.out_trade_no, d.category.as_str(), d.held))
            .collect();
        found.sort();
        found
    }

    #[tokio::test]
    async fn held_near_midnight_items_are_settled_by_the_neighbouring_days_bill() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("paygate.db").display());
        let store = Store::connect(&url, paygate_store::PoolOptions::sized(2))
            .await
            .unwrap();
        let d15 = day();
        let (d14, d16) = (d15.pred_opt().unwrap(), d15.succ_opt().unwrap());

        // The 15th: two payments our clock put just before midnight are not in its bill, and one
        // our clock put just after the 14th/15th midnight is not either. All three are held.
        let noon = ("T_NOON", 500, "2024-01-15 12:00:00");
        let late_found = paid("T_LATE_FOUND", 1000, "2024-01-15 23:59:58");
        let late_lost = paid("T_LATE_LOST", 2000, "2024-01-15 23:58:00");
        let early = paid("T_EARLY", 700, "2024-01-15 00:00:30");
        // The 16th's bill as first fetched: the provider dated T_LATE_FOUND 00:00:03.
        let bill16_first = || wechat_bill(&[("T_LATE_FOUND", 1000, "2024-01-16 00:00:03")]);
        let run15 = run_day(
            &store,
            d15,
            Some(wechat_bill(&[noon])),
            vec![
                paid(noon.0, noon.1, noon.2),
                late_found.clone(),
                late_lost.clone(),
                early.clone(),
            ],
        )
        .await;
        assert_eq!((run15.differences_count, run15.held_count), (3, 3));

        // The 16th's bill has the first (the provider dated it 00:00:03), not the second: the
        // first is settled as found, the second becomes a plain difference. The item waiting
        // for the 14th stays held.
        let run16 = run_day(&store, d16, Some(bill16_first()), vec![late_found.clone()]).await;
        assert_eq!(run16.status, RunStatus::Matched, "the 16th itself agrees");
        let run15 = day_run(&store, &run16, d15).await;
        assert_eq!(
            categories(&store, &run15).await,
            [
                ("T_EARLY".to_owned(), "missing_in_bill", true),
                (
                    "T_LATE_FOUND".to_owned(),
                    "matched_in_neighbour_bill",
                    false
                ),
                ("T_LATE_LOST".to_owned(), "missing_in_bill", false),
            ]
        );
        assert_eq!((run15.differences_count, run15.held_count), (2, 1));
        let found = store
            .reconciliation_differences(&run15.id, Some(Category::MatchedInNeighbourBill))
            .await
            .unwrap();
        assert_eq!(found[0].resolution.as_ref().unwrap().by, ACTOR);

        // The 14th had no bill and no business (a verified empty day): it does not have the
        // early item either, so it is escalated. Its run comes after the 15th's: order of
        // checking does not matter.
        run_day(&store, d14, None, Vec::new()).await;
        let run15 = day_run(&store, &run16, d15).await;
        assert_eq!(
            categories(&store, &run15).await[0],
            ("T_EARLY".to_owned(), "missing_in_bill", false)
        );
        assert_eq!((run15.differences_count, run15.held_count), (2, 0));

        // A rerun of the 16th settles nothing twice.
        run_day(&store, d16, Some(bill16_first()), vec![late_found.clone()]).await;
        let again = day_run(&store, &run16, d15).await;
        assert_eq!((again.differences_count, again.held_count), (2, 0));

        // The other way round: the 17th holds an item our clock put at 00:00:10 on the 17th,
        // which the 16th's bill (already checked, and stored) has at 23:59:59 on the 16th.
        let d17 = d16.succ_opt().unwrap();
        let crossing = paid("T_CROSS", 300, "2024-01-17 00:00:10");
        let bill16 = wechat_bill(&[
            ("T_LATE_FOUND", 1000, "2024-01-16 00:00:03"),
            ("T_CROSS", 300, "2024-01-16 23:59:59"),
        ]);
        let ledger16 = vec![
            paid("T_LATE_FOUND", 1000, "2024-01-15 23:59:58"),
            crossing.clone(),
        ];
        run_day(&store, d16, Some(bill16), ledger16).await;
        let other = ("T_OTHER", 100, "2024-01-17 09:00:00");
        let ledger17 = vec![paid(other.0, other.1, other.2), crossing];
        let run17 = run_day(&store, d17, Some(wechat_bill(&[other])), ledger17).await;
        assert_eq!(
            categories(&store, &run17).await,
            [("T_CROSS".to_owned(), "matched_in_neighbour_bill", false)]
        );
        assert_eq!(run17.status, RunStatus::Matched);
        store.close().await.unwrap();
    }

    /// The stored run of `day` for the app and provider of `run`.
    async fn day_run(store: &Store, run: &ReconciliationRun, day: NaiveDate) -> ReconciliationRun {
        let key = BillDayKey {
            app: run.app.clone(),
            provider: run.provider,
            bill_day: day,
        };
        store.reconciliation_run(&key).await.unwrap().unwrap()
    }

    #[test]
    fn every_format_is_read_to_its_lines() {
        let text = vector("wechat-v2-ALL.csv");
        assert_eq!(
            lines(BillFormat::WechatText, &text, "10000100")
                .unwrap()
                .len(),
            7
        );
        let gzip = vector("wechat-v3-tradebill-ALL.csv.gz");
        assert_eq!(
            lines(BillFormat::WechatGzip, &gzip, "10000100")
                .unwrap()
                .len(),
            7
        );
        let zip = vector("alipay-trade.zip");
        let alipay = lines(BillFormat::AlipayZip, &zip, "2088101122136241").unwrap();
        assert_eq!(alipay.len(), 7);
        assert!(alipay.contains(&"RF20240115A0004-1".to_owned()));
    }

    #[test]
    fn a_bill_of_another_merchant_a_truncated_file_or_the_wrong_format_is_refused() {
        let text = vector("wechat-v2-ALL.csv");
        let wrong = lines(BillFormat::WechatText, &text, "10000999").unwrap_err();
        assert!(wrong.contains("10000999"), "{wrong}");
        let gzip = vector("wechat-v3-tradebill-ALL.csv.gz");
        assert!(lines(BillFormat::WechatGzip, &gzip[..gzip.len() / 2], "10000100").is_err());
        let zip = vector("alipay-trade.zip");
        assert!(lines(BillFormat::AlipayZip, &zip, "2088999999999999").is_err());
        assert!(expected_format(ProviderKind::WECHAT, &zip).is_err());
        assert_eq!(
            expected_format(ProviderKind::ALIPAY, &zip),
            Ok(BillFormat::AlipayZip)
        );
        assert_eq!(
            expected_format(ProviderKind::WECHAT, &gzip),
            Ok(BillFormat::WechatGzip)
        );
    }
}
