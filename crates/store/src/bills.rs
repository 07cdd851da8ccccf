//! Statement reconciliation's tables: every provider bill file as fetched (raw bytes and
//! SHA-256, evidence finance can download), one reconciliation run per app + provider + Beijing
//! day with both sides' totals, and the run's differences with a resolution finance sets.
//!
//! A rerun of a day **replaces** that day's run and its differences in one transaction, so a
//! day never shows two results; a difference's resolution belongs to the run it was set on.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::{AppName, BillLineKind, Fen, OrderStatus, ProviderKind};
use paygate_core::{BillDay, RefundStatus};
use paygate_reconciliation::{Category, Ledger, LedgerPayment, LedgerRefund, Report};
use sha2::{Digest, Sha256};

use crate::schema::{bill_files, orders, reconciliation_differences, reconciliation_runs, refunds};
use crate::text::text_enum;
use crate::writer::LockKey;
use crate::{
    BillFileId, DifferenceId, ReconciliationRunId, Store, StoreError, corrupt, db_time, utc,
};

/// The largest bill file stored (a million-row WeChat bill is about 330 MB as text, far less
/// gzipped; the raw file is stored as fetched).
pub const MAX_BILL_FILE_BYTES: usize = 512 * 1024 * 1024;

text_enum!(
    /// How a day's reconciliation ended.
    RunStatus {
        /// Every line agreed and nothing is held.
        Matched => "matched",
        /// At least one difference (held near-midnight items included).
        Differences => "differences",
        /// The bill could not be used (corrupt, wrong merchant or day, totals disagree): no
        /// line was matched and no order changed.
        Failed => "failed",
    }
);

/// What bill files and runs belong to: one app's bill from one provider for one Beijing day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillDayKey {
    /// The app.
    pub app: AppName,
    /// The provider.
    pub provider: ProviderKind,
    /// The Beijing day.
    pub bill_day: NaiveDate,
}

impl BillDayKey {
    /// The stored text of the three columns.
    fn columns(&self) -> (String, String, String) {
        (
            self.app.as_str().to_owned(),
            self.provider.as_str().to_owned(),
            day_text(self.bill_day),
        )
    }
}

/// A bill file to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBillFile {
    /// The app whose merchant account the bill covers.
    pub app: AppName,
    /// The provider.
    pub provider: ProviderKind,
    /// The Beijing day the bill covers.
    pub bill_day: NaiveDate,
    /// The bytes exactly as downloaded (gzip, zip or text).
    pub body: Vec<u8>,
    /// When it was fetched.
    pub fetched_at: DateTime<Utc>,
}

/// A stored bill file, without its body (see [`Store::bill_file_body`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillFile {
    /// Its id.
    pub id: BillFileId,
    /// The app.
    pub app: AppName,
    /// The provider.
    pub provider: ProviderKind,
    /// The Beijing day.
    pub bill_day: NaiveDate,
    /// Lowercase hex SHA-256 of the body.
    pub sha256: String,
    /// The body's length.
    pub size_bytes: u64,
    /// When it was (first) fetched.
    pub fetched_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = bill_files)]
struct BillFileRow {
    id: String,
    app: String,
    provider: String,
    bill_day: String,
    sha256: String,
    size_bytes: i64,
    body: Vec<u8>,
    fetched_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = bill_files)]
struct BillFileHead {
    id: String,
    app: String,
    provider: String,
    bill_day: String,
    sha256: String,
    size_bytes: i64,
    fetched_at: NaiveDateTime,
}

/// The lock that serialises the writes of one app's bill day (a rerun replacing its run, the
/// settling of its held items).
fn bill_day_lock(app: &AppName, provider: ProviderKind, day: NaiveDate) -> LockKey {
    LockKey::BillDay(format!("{app}/{provider}/{}", day_text(day)))
}

/// The lowercase hex SHA-256 a bill file is kept with.
pub fn bill_file_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn parse_day(table: &'static str, id: &str, text: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| corrupt(table, id, format!("bill_day: {e}")))
}

fn parse_app(table: &'static str, id: &str, text: &str) -> Result<AppName, StoreError> {
    AppName::parse(text).map_err(|e| corrupt(table, id, e))
}

fn parse_provider(table: &'static str, id: &str, text: &str) -> Result<ProviderKind, StoreError> {
    ProviderKind::parse(text).map_err(|e| corrupt(table, id, e))
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn uncount(table: &'static str, id: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|e| corrupt(table, id, e))
}

impl BillFileHead {
    fn into_file(self) -> Result<BillFile, StoreError> {
        const T: &str = "bill_files";
        Ok(BillFile {
            id: BillFileId::parse(&self.id).map_err(|e| corrupt(T, &self.id, e))?,
            app: parse_app(T, &self.id, &self.app)?,
            provider: parse_provider(T, &self.id, &self.provider)?,
            bill_day: parse_day(T, &self.id, &self.bill_day)?,
            size_bytes: uncount(T, &self.id, self.size_bytes)?,
            sha256: self.sha256,
            fetched_at: utc(self.fetched_at),
        })
    }
}

/// How a run ended, with what it needs stored.
#[derive(Debug, Clone)]
pub enum RunOutcome {
    /// The bill parsed and every line was matched.
    Reconciled(Box<Report>),
    /// The bill could not be used; the reason is the parser's or matcher's error text.
    Failed(String),
}

/// One day's run to store, replacing any earlier run of the same app, provider and day.
#[derive(Debug, Clone)]
pub struct NewReconciliationRun {
    /// The app.
    pub app: AppName,
    /// The provider.
    pub provider: ProviderKind,
    /// The Beijing day.
    pub bill_day: NaiveDate,
    /// The bill file the run read, if one was fetched.
    pub bill_file_id: Option<BillFileId>,
    /// The result.
    pub outcome: RunOutcome,
    /// When the run finished.
    pub finished_at: DateTime<Utc>,
}

/// Both sides' totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTotals {
    /// Payment lines in the bill.
    pub bill_payments_count: u64,
    /// Σ bill payment amounts (order totals).
    pub bill_gross: Fen,
    /// Σ bill settlement amounts.
    pub bill_settlement_gross: Fen,
    /// Refund lines in the bill.
    pub bill_refunds_count: u64,
    /// Σ bill refund amounts.
    pub bill_refunds: Fen,
    /// Σ bill fees in fen, signed.
    pub bill_fees_fen: i64,
    /// Our payments of the day.
    pub local_payments_count: u64,
    /// Their amounts.
    pub local_gross: Fen,
    /// Our refunds of the day.
    pub local_refunds_count: u64,
    /// Their amounts.
    pub local_refunds: Fen,
}

impl RunTotals {
    /// The bill's net settlement: settled gross − refunds − fees, in fen.
    pub fn bill_net_fen(&self) -> i64 {
        self.bill_settlement_gross.get() - self.bill_refunds.get() - self.bill_fees_fen
    }
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationRun {
    /// Its id (a rerun gets a new one).
    pub id: ReconciliationRunId,
    /// The app.
    pub app: AppName,
    /// The provider.
    pub provider: ProviderKind,
    /// The Beijing day.
    pub bill_day: NaiveDate,
    /// The bill file read.
    pub bill_file_id: Option<BillFileId>,
    /// How it ended.
    pub status: RunStatus,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Both sides' totals (zero for a failed run).
    pub totals: RunTotals,
    /// Differences stored.
    pub differences_count: u64,
    /// Of which held near midnight.
    pub held_count: u64,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reconciliation_runs)]
struct RunRow {
    id: String,
    app: String,
    provider: String,
    bill_day: String,
    bill_file_id: Option<String>,
    status: String,
    failure_reason: Option<String>,
    bill_payments_count: i64,
    bill_gross: i64,
    bill_settlement_gross: i64,
    bill_refunds_count: i64,
    bill_refunds: i64,
    bill_fees: i64,
    local_payments_count: i64,
    local_gross: i64,
    local_refunds_count: i64,
    local_refunds: i64,
    differences_count: i64,
    held_count: i64,
    finished_at: NaiveDateTime,
}

impl RunRow {
    fn into_run(self) -> Result<ReconciliationRun, StoreError> {
        const T: &str = "reconciliation_runs";
        let id = self.id.as_str();
        let fen = |value: i64| crate::fen_column(T, id, value);
        let totals = RunTotals {
            bill_payments_count: uncount(T, id, self.bill_payments_count)?,
            bill_gross: fen(self.bill_gross)?,
            bill_settlement_gross: fen(self.bill_settlement_gross)?,
            bill_refunds_count: uncount(T, id, self.bill_refunds_count)?,
            bill_refunds: fen(self.bill_refunds)?,
            bill_fees_fen: self.bill_fees,
            local_payments_count: uncount(T, id, self.local_payments_count)?,
            local_gross: fen(self.local_gross)?,
            local_refunds_count: uncount(T, id, self.local_refunds_count)?,
            local_refunds: fen(self.local_refunds)?,
        };
        Ok(ReconciliationRun {
            id: ReconciliationRunId::parse(id).map_err(|e| corrupt(T, id, e))?,
            app: parse_app(T, id, &self.app)?,
            provider: parse_provider(T, id, &self.provider)?,
            bill_day: parse_day(T, id, &self.bill_day)?,
            bill_file_id: self
                .bill_file_id
                .as_deref()
                .map(BillFileId::parse)
                .transpose()
                .map_err(|e| corrupt(T, id, e))?,
            status: RunStatus::parse(&self.status)
                .ok_or_else(|| corrupt(T, id, format!("unknown status {:?}", self.status)))?,
            totals,
            differences_count: uncount(T, id, self.differences_count)?,
            held_count: uncount(T, id, self.held_count)?,
            failure_reason: self.failure_reason,
            finished_at: utc(self.finished_at),
        })
    }
}

/// One stored difference: both sides as far as they exist, and finance's resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Its id.
    pub id: DifferenceId,
    /// The run it belongs to.
    pub run_id: ReconciliationRunId,
    /// Payment or refund.
    pub kind: BillLineKind,
    /// The category.
    pub category: Category,
    /// The order number.
    pub out_trade_no: String,
    /// The refund number, for refunds.
    pub out_refund_no: Option<String>,
    /// The provider trade number (the bill's, else ours).
    pub provider_trade_no: Option<String>,
    /// The provider refund number (bill).
    pub provider_refund_no: Option<String>,
    /// The bill's amount.
    pub bill_amount: Option<Fen>,
    /// The bill's time.
    pub bill_time: Option<DateTime<Utc>>,
    /// The bill's status text.
    pub bill_status: Option<String>,
    /// Our amount.
    pub local_amount: Option<Fen>,
    /// Our time (paid or requested).
    pub local_time: Option<DateTime<Utc>>,
    /// Our status.
    pub local_status: Option<String>,
    /// Within the near-midnight margin.
    pub near_midnight: bool,
    /// Waiting for the neighbouring day's bill.
    pub held: bool,
    /// A matched refund whose frozen bill status differs from ours.
    pub refund_status_differs: bool,
    /// Finance's resolution, once set.
    pub resolution: Option<Resolution>,
}

/// What finance decided about a difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// What was done and why.
    pub note: String,
    /// Who set it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The longest resolution note or name kept.
pub const MAX_RESOLUTION_BYTES: usize = 2000;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reconciliation_differences)]
struct DifferenceRow {
    id: String,
    run_id: String,
    seq: i64,
    kind: String,
    category: String,
    out_trade_no: String,
    out_refund_no: Option<String>,
    provider_trade_no: Option<String>,
    provider_refund_no: Option<String>,
    bill_amount: Option<i64>,
    bill_time: Option<NaiveDateTime>,
    bill_status: Option<String>,
    local_amount: Option<i64>,
    local_time: Option<NaiveDateTime>,
    local_status: Option<String>,
    near_midnight: bool,
    held: bool,
    refund_status_differs: bool,
    resolution_note: Option<String>,
    resolved_by: Option<String>,
    resolved_at: Option<NaiveDateTime>,
}

impl DifferenceRow {
    fn into_difference(self) -> Result<Difference, StoreError> {
        const T: &str = "reconciliation_differences";
        let id = self.id.as_str();
        let fen = |value: Option<i64>| value.map(|v| crate::fen_column(T, id, v)).transpose();
        let resolution = match (self.resolution_note, self.resolved_by, self.resolved_at) {
            (Some(note), Some(by), Some(at)) => Some(Resolution {
                note,
                by,
                at: utc(at),
            }),
            (None, None, None) => None,
            _ => return Err(corrupt(T, id, "partial resolution")),
        };
        Ok(Difference {
            id: DifferenceId::parse(id).map_err(|e| corrupt(T, id, e))?,
            run_id: ReconciliationRunId::parse(&self.run_id).map_err(|e| corrupt(T, id, e))?,
            kind: match self.kind.as_str() {
                "payment" => BillLineKind::Payment,
                "refund" => BillLineKind::Refund,
                other => return Err(corrupt(T, id, format!("unknown kind {other:?}"))),
            },
            category: Category::parse(&self.category)
                .ok_or_else(|| corrupt(T, id, format!("unknown category {:?}", self.category)))?,
            bill_amount: fen(self.bill_amount)?,
            local_amount: fen(self.local_amount)?,
            out_trade_no: self.out_trade_no,
            out_refund_no: self.out_refund_no,
            provider_trade_no: self.provider_trade_no,
            provider_refund_no: self.provider_refund_no,
            bill_time: self.bill_time.map(utc),
            bill_status: self.bill_status,
            local_time: self.local_time.map(utc),
            local_status: self.local_status,
            near_midnight: self.near_midnight,
            held: self.held,
            refund_status_differs: self.refund_status_differs,
            resolution,
        })
    }
}

fn difference_rows(run_id: &str, report: &Report) -> Vec<DifferenceRow> {
    report
        .differences()
        .zip(0..)
        .map(|(item, seq)| {
            let bill = item.bill.as_ref();
            let local = item.local.as_ref();
            DifferenceRow {
                id: DifferenceId::generate().to_string(),
                run_id: run_id.to_owned(),
                seq,
                kind: match item.kind {
                    BillLineKind::Payment => "payment",
                    BillLineKind::Refund => "refund",
                }
                .to_owned(),
                category: item.category.as_str().to_owned(),
                out_trade_no: item.out_trade_no.clone(),
                out_refund_no: item.out_refund_no.clone(),
                provider_trade_no: bill
                    .map(|b| b.provider_trade_no.clone())
                    .or_else(|| local.and_then(|l| l.provider_trade_no.clone())),
                provider_refund_no: bill.and_then(|b| b.provider_refund_no.clone()),
                bill_amount: bill.map(|b| b.amount.get()),
                bill_time: bill.map(|b| db_time(b.occurred_at)),
                bill_status: bill.map(|b| b.status.clone()),
                local_amount: local.map(|l| l.amount.get()),
                local_time: local.and_then(|l| l.at).map(db_time),
                local_status: local.map(|l| l.status.as_str().to_owned()),
                near_midnight: item.near_midnight,
                held: item.held,
                refund_status_differs: item.refund_status_differs,
                resolution_note: None,
                resolved_by: None,
                resolved_at: None,
            }
        })
        .collect()
}

fn fen_total(value: i64) -> Result<Fen, StoreError> {
    Fen::new(value)
        .map_err(|e| StoreError::Invalid(format!("a reconciliation total is negative: {e}")))
}

/// How many keys one `IN (…)` list carries: far below SQLite's and PostgreSQL's limits on
/// bound parameters, so a million-row bill's keys go in many small queries.
const KEYS_PER_QUERY: usize = 500;

/// A refund as the ledger reads it, with its order's number.
type RefundColumns = (String, String, i64, String, NaiveDateTime);

/// The columns of [`RefundColumns`], from `refunds` joined with `orders`.
const REFUND_COLUMNS: (
    refunds::out_refund_no,
    orders::out_trade_no,
    refunds::amount,
    refunds::status,
    refunds::created_at,
) = (
    refunds::out_refund_no,
    orders::out_trade_no,
    refunds::amount,
    refunds::status,
    refunds::created_at,
);

fn ledger_refund(row: RefundColumns) -> Result<LedgerRefund, StoreError> {
    let (out_refund_no, out_trade_no, amount, status, created_at) = row;
    const T: &str = "refunds";
    Ok(LedgerRefund {
        amount: crate::fen_column(T, &out_refund_no, amount)?,
        status: RefundStatus::parse(&status).map_err(|e| corrupt(T, &out_refund_no, e))?,
        requested_at: utc(created_at),
        out_refund_no,
        out_trade_no,
    })
}

/// An order as the ledger reads it: only the columns matching needs, so a million-order day
/// is not a million whole orders in memory.
type PaymentColumns = (
    String,
    String,
    Option<String>,
    i64,
    String,
    Option<NaiveDateTime>,
);

/// The columns of [`PaymentColumns`].
const PAYMENT_COLUMNS: (
    orders::id,
    orders::out_trade_no,
    orders::provider_trade_no,
    orders::amount,
    orders::status,
    orders::paid_at,
) = (
    orders::id,
    orders::out_trade_no,
    orders::provider_trade_no,
    orders::amount,
    orders::status,
    orders::paid_at,
);

fn ledger_payment(row: PaymentColumns) -> Result<LedgerPayment, StoreError> {
    let (id, out_trade_no, provider_trade_no, amount, status, paid_at) = row;
    const T: &str = "orders";
    Ok(LedgerPayment {
        amount: crate::fen_column(T, &id, amount)?,
        status: OrderStatus::parse(&status).map_err(|e| corrupt(T, &id, e))?,
        paid_at: paid_at.map(utc),
        out_trade_no,
        provider_trade_no,
    })
}

/// What a day's ledger queries filter on: the provider, the merchant's apps, the day's
/// bounds as stored.
struct LedgerScope {
    provider: String,
    apps: Vec<String>,
    start: NaiveDateTime,
    end: NaiveDateTime,
}

impl LedgerScope {
    fn new(key: &BillDayKey, apps: &[AppName]) -> LedgerScope {
        let day = BillDay::new(key.bill_day);
        LedgerScope {
            provider: key.provider.as_str().to_owned(),
            apps: apps.iter().map(|a| a.as_str().to_owned()).collect(),
            start: db_time(day.start()),
            end: db_time(day.end()),
        }
    }
}

/// The slice of a day read by one query of its ledger: the day is read a quarter of an hour
/// at a time, each query a plain range of the `paid_at` index, so neither libpq nor the driver
/// holds a million rows at once beside the ledger being built (and no query re-reads what an
/// earlier one read, as an `OFFSET` or a two-column cursor without a matching index would).
const LEDGER_SLICE: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

impl Store {
    /// Our books' side of one bill day (what [`paygate_reconciliation::Matcher`] matches
    /// against): the orders of `apps` (every app of the provider on the bill's merchant
    /// account: a bill covers the whole merchant) paid on the day by the provider's success
    /// time, their refunds requested on the day, and, wherever our clock put them, the orders
    /// and refunds the bill names (`named_orders`, `named_refunds`), so a payment logged on
    /// either side of midnight is still matched by key.
    pub async fn bill_day_ledger(
        &self,
        key: &BillDayKey,
        apps: &[AppName],
        named_orders: Vec<String>,
        named_refunds: Vec<String>,
    ) -> Result<Ledger, StoreError> {
        let mut ledger = self.bill_day_own_ledger(key, apps).await?;
        let named = self
            .bill_named_ledger(key, apps, named_orders, named_refunds)
            .await?;
        ledger.payments.extend(named.payments);
        ledger.refunds.extend(named.refunds);
        Ok(ledger)
    }

    /// The day's own part of [`Store::bill_day_ledger`]: the orders of `apps` paid on the day
    /// (read a slice of the day at a time) and their refunds requested on it.
    pub async fn bill_day_own_ledger(
        &self,
        key: &BillDayKey,
        apps: &[AppName],
    ) -> Result<Ledger, StoreError> {
        let scope = LedgerScope::new(key, apps);
        self.run(move |conn| {
            let mut payments = Vec::new();
            let mut from = scope.start;
            while from < scope.end {
                let to = (from + LEDGER_SLICE).min(scope.end);
                let rows: Vec<PaymentColumns> = orders::table
                    .filter(orders::app.eq_any(scope.apps.clone()))
                    .filter(orders::provider.eq(scope.provider.clone()))
                    .filter(orders::paid_at.ge(from))
                    .filter(orders::paid_at.lt(to))
                    .order((orders::paid_at.asc(), orders::id.asc()))
                    .select(PAYMENT_COLUMNS)
                    .load(conn)?;
                for row in rows {
                    payments.push(ledger_payment(row)?);
                }
                from = to;
            }
            let refunds = refunds::table
                .inner_join(orders::table)
                .filter(orders::app.eq_any(scope.apps.clone()))
                .filter(orders::provider.eq(scope.provider.clone()))
                .filter(refunds::created_at.ge(scope.start))
                .filter(refunds::created_at.lt(scope.end))
                .select(REFUND_COLUMNS)
                .load::<RefundColumns>(conn)?
                .into_iter()
                .map(ledger_refund)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Ledger { payments, refunds })
        })
        .await
    }

    /// The part of [`Store::bill_day_ledger`] the bill names beyond the day's own: the orders
    /// of `apps` numbered `named_orders` not paid on the day (paid across midnight by our
    /// clock, or pending, or closed), and the refunds numbered `named_refunds` not requested
    /// on it. A reconciliation passes only the numbers the day's own ledger lacks, so a
    /// million-row bill costs no million-key lookup. (So an order of another app of the
    /// merchant with the number of one paid on the day, itself not paid that day, is not in
    /// the ledger: it is not reported as a local `duplicate`. One app's numbers are unique.)
    pub async fn bill_named_ledger(
        &self,
        key: &BillDayKey,
        apps: &[AppName],
        named_orders: Vec<String>,
        named_refunds: Vec<String>,
    ) -> Result<Ledger, StoreError> {
        let scope = LedgerScope::new(key, apps);
        self.run(move |conn| {
            let mut payments = Vec::new();
            for chunk in named_orders.chunks(KEYS_PER_QUERY) {
                let rows: Vec<PaymentColumns> = orders::table
                    .filter(orders::app.eq_any(scope.apps.clone()))
                    .filter(orders::provider.eq(scope.provider.clone()))
                    .filter(orders::out_trade_no.eq_any(chunk.to_vec()))
                    .filter(
                        orders::paid_at
                            .is_null()
                            .or(orders::paid_at.lt(scope.start))
                            .or(orders::paid_at.ge(scope.end)),
                    )
                    .order(orders::id.asc())
                    .select(PAYMENT_COLUMNS)
                    .load(conn)?;
                for row in rows {
                    payments.push(ledger_payment(row)?);
                }
            }
            let mut refunds = Vec::new();
            for chunk in named_refunds.chunks(KEYS_PER_QUERY) {
                let rows = refunds::table
                    .inner_join(orders::table)
                    .filter(orders::app.eq_any(scope.apps.clone()))
                    .filter(orders::provider.eq(scope.provider.clone()))
                    .filter(refunds::out_refund_no.eq_any(chunk.to_vec()))
                    .filter(
                        refunds::created_at
                            .lt(scope.start)
                            .or(refunds::created_at.ge(scope.end)),
                    )
                    .select(REFUND_COLUMNS)
                    .load::<RefundColumns>(conn)?;
                for row in rows {
                    refunds.push(ledger_refund(row)?);
                }
            }
            Ok(Ledger { payments, refunds })
        })
        .await
    }

    /// Keeps a fetched bill file. Fetching the same bytes again for the same day returns the
    /// stored file instead of a second copy.
    pub async fn insert_bill_file(&self, new: NewBillFile) -> Result<BillFile, StoreError> {
        if new.body.len() > MAX_BILL_FILE_BYTES {
            return Err(StoreError::Invalid(format!(
                "a bill file of {} bytes is larger than the {MAX_BILL_FILE_BYTES} kept",
                new.body.len()
            )));
        }
        let row = BillFileRow {
            id: BillFileId::generate().to_string(),
            app: new.app.as_str().to_owned(),
            provider: new.provider.as_str().to_owned(),
            bill_day: day_text(new.bill_day),
            sha256: bill_file_sha256(&new.body),
            size_bytes: i64::try_from(new.body.len()).unwrap_or(i64::MAX),
            body: new.body,
            fetched_at: db_time(new.fetched_at),
        };
        let lock = LockKey::BillDay(format!("{}/{}/{}", row.app, row.provider, row.bill_day));
        self.write(lock, move |conn| {
            let existing = bill_files::table
                .filter(bill_files::app.eq(&row.app))
                .filter(bill_files::provider.eq(&row.provider))
                .filter(bill_files::bill_day.eq(&row.bill_day))
                .filter(bill_files::sha256.eq(&row.sha256))
                .select(BillFileHead::as_select())
                .first(conn)
                .optional()?;
            if let Some(head) = existing {
                return head.into_file();
            }
            diesel::insert_into(bill_files::table)
                .values(&row)
                .execute(conn)?;
            BillFileHead {
                id: row.id,
                app: row.app,
                provider: row.provider,
                bill_day: row.bill_day,
                sha256: row.sha256,
                size_bytes: row.size_bytes,
                fetched_at: row.fetched_at,
            }
            .into_file()
        })
        .await
    }

    /// The bill files kept for a day, oldest first.
    pub async fn bill_files(&self, key: &BillDayKey) -> Result<Vec<BillFile>, StoreError> {
        let (app, provider, day) = key.columns();
        self.run(move |conn| {
            bill_files::table
                .filter(bill_files::app.eq(app))
                .filter(bill_files::provider.eq(provider))
                .filter(bill_files::bill_day.eq(day))
                .order(bill_files::id.asc())
                .select(BillFileHead::as_select())
                .load(conn)?
                .into_iter()
                .map(BillFileHead::into_file)
                .collect()
        })
        .await
    }

    /// A bill file's bytes exactly as fetched, for finance to download as evidence.
    pub async fn bill_file_body(&self, id: &BillFileId) -> Result<Vec<u8>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            bill_files::table
                .find(&id)
                .select(bill_files::body)
                .first::<Vec<u8>>(conn)
                .optional()?
                .ok_or(StoreError::NotFound {
                    entity: "bill file",
                    key: id,
                })
        })
        .await
    }

    /// Stores a day's run, replacing the earlier run of the same app, provider and day and its
    /// differences in the same transaction: a day has one result, never two.
    pub async fn replace_reconciliation_run(
        &self,
        new: NewReconciliationRun,
    ) -> Result<ReconciliationRun, StoreError> {
        let id = ReconciliationRunId::generate().to_string();
        let (status, failure_reason, totals, differences) = match &new.outcome {
            RunOutcome::Failed(reason) => (
                RunStatus::Failed,
                Some(reason.clone()),
                RunTotals::default(),
                Vec::new(),
            ),
            RunOutcome::Reconciled(report) => {
                let bill = report.bill_totals;
                let local = report.local_totals;
                let totals = RunTotals {
                    bill_payments_count: bill.payments_count,
                    bill_gross: fen_total(bill.gross_fen)?,
                    bill_settlement_gross: fen_total(bill.settlement_gross_fen)?,
                    bill_refunds_count: bill.refunds_count,
                    bill_refunds: fen_total(bill.refunds_fen)?,
                    bill_fees_fen: bill.fees_fen,
                    local_payments_count: local.payments_count,
                    local_gross: fen_total(local.gross_fen)?,
                    local_refunds_count: local.refunds_count,
                    local_refunds: fen_total(local.refunds_fen)?,
                };
                let rows = difference_rows(&id, report);
                let status = if rows.is_empty() {
                    RunStatus::Matched
                } else {
                    RunStatus::Differences
                };
                (status, None, totals, rows)
            }
        };
        let row = RunRow {
            id,
            app: new.app.as_str().to_owned(),
            provider: new.provider.as_str().to_owned(),
            bill_day: day_text(new.bill_day),
            bill_file_id: new.bill_file_id.map(|f| f.to_string()),
            status: status.as_str().to_owned(),
            failure_reason,
            bill_payments_count: count(totals.bill_payments_count),
            bill_gross: totals.bill_gross.get(),
            bill_settlement_gross: totals.bill_settlement_gross.get(),
            bill_refunds_count: count(totals.bill_refunds_count),
            bill_refunds: totals.bill_refunds.get(),
            bill_fees: totals.bill_fees_fen,
            local_payments_count: count(totals.local_payments_count),
            local_gross: totals.local_gross.get(),
            local_refunds_count: count(totals.local_refunds_count),
            local_refunds: totals.local_refunds.get(),
            differences_count: count(differences.len() as u64),
            held_count: count(differences.iter().filter(|d| d.held).count() as u64),
            finished_at: db_time(new.finished_at),
        };
        let lock = bill_day_lock(&new.app, new.provider, new.bill_day);
        self.write(lock, move |conn| {
            // Write first (see the crate doc): the delete takes the lock that serialises two
            // reruns of one day.
            let earlier: Vec<String> = reconciliation_runs::table
                .filter(reconciliation_runs::app.eq(&row.app))
                .filter(reconciliation_runs::provider.eq(&row.provider))
                .filter(reconciliation_runs::bill_day.eq(&row.bill_day))
                .select(reconciliation_runs::id)
                .load(conn)?;
            diesel::delete(
                reconciliation_differences::table
                    .filter(reconciliation_differences::run_id.eq_any(&earlier)),
            )
            .execute(conn)?;
            diesel::delete(
                reconciliation_runs::table.filter(reconciliation_runs::id.eq_any(&earlier)),
            )
            .execute(conn)?;
            diesel::insert_into(reconciliation_runs::table)
                .values(&row)
                .execute(conn)?;
            // One statement per row: the multi-backend connection has no batch insert.
            for difference in &differences {
                diesel::insert_into(reconciliation_differences::table)
                    .values(difference)
                    .execute(conn)?;
            }
            row.into_run()
        })
        .await
    }

    /// The run of one day, if there is one.
    pub async fn reconciliation_run(
        &self,
        key: &BillDayKey,
    ) -> Result<Option<ReconciliationRun>, StoreError> {
        let (app, provider, day) = key.columns();
        self.run(move |conn| {
            reconciliation_runs::table
                .filter(reconciliation_runs::app.eq(app))
                .filter(reconciliation_runs::provider.eq(provider))
                .filter(reconciliation_runs::bill_day.eq(day))
                .select(RunRow::as_select())
                .first(conn)
                .optional()?
                .map(RunRow::into_run)
                .transpose()
        })
        .await
    }

    /// The runs of days `from..=to` (all apps, or one), by day then app.
    pub async fn reconciliation_runs(
        &self,
        app: Option<&AppName>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<ReconciliationRun>, StoreError> {
        let app = app.map(|a| a.as_str().to_owned());
        let (from, to) = (day_text(from), day_text(to));
        self.run(move |conn| {
            let mut query = reconciliation_runs::table
                .filter(reconciliation_runs::bill_day.ge(from))
                .filter(reconciliation_runs::bill_day.le(to))
                .into_boxed();
            if let Some(app) = app {
                query = query.filter(reconciliation_runs::app.eq(app));
            }
            query
                .order((
                    reconciliation_runs::bill_day.asc(),
                    reconciliation_runs::app.asc(),
                ))
                .select(RunRow::as_select())
                .load(conn)?
                .into_iter()
                .map(RunRow::into_run)
                .collect()
        })
        .await
    }

    /// A run's differences, optionally of one category, in the order they were found.
    pub async fn reconciliation_differences(
        &self,
        run_id: &ReconciliationRunId,
        category: Option<Category>,
    ) -> Result<Vec<Difference>, StoreError> {
        let run_id = run_id.to_string();
        self.run(move |conn| {
            let mut query = reconciliation_differences::table
                .filter(reconciliation_differences::run_id.eq(run_id))
                .into_boxed();
            if let Some(category) = category {
                query = query.filter(reconciliation_differences::category.eq(category.as_str()));
            }
            query
                .order(reconciliation_differences::seq.asc())
                .select(DifferenceRow::as_select())
                .load(conn)?
                .into_iter()
                .map(DifferenceRow::into_difference)
                .collect()
        })
        .await
    }

    /// Settles held near-midnight differences of run `run_id` once the neighbouring day's
    /// bill has been checked: each is no longer held; one the neighbouring bill has becomes
    /// `matched_in_neighbour_bill` with `found_note` as its resolution (it stays listed, as
    /// the trace of why it was held), the others stay differences. The run's counts and status
    /// follow in the same transaction. Differences no longer held are left alone, so settling
    /// twice changes nothing.
    pub async fn settle_held_differences(
        &self,
        run: &ReconciliationRun,
        found: Vec<DifferenceId>,
        escalated: Vec<DifferenceId>,
        found_note: Resolution,
    ) -> Result<ReconciliationRun, StoreError> {
        let run_id = run.id.to_string();
        let found: Vec<String> = found.iter().map(ToString::to_string).collect();
        let escalated: Vec<String> = escalated.iter().map(ToString::to_string).collect();
        // The lock of the day's reruns: a rerun replacing this run waits, or goes first and
        // leaves nothing here to update.
        let lock = bill_day_lock(&run.app, run.provider, run.bill_day);
        self.write(lock, move |conn| {
            let held_of_run = || {
                reconciliation_differences::table
                    .filter(reconciliation_differences::run_id.eq(run_id.clone()))
                    .filter(reconciliation_differences::held.eq(true))
            };
            for chunk in found.chunks(KEYS_PER_QUERY) {
                diesel::update(held_of_run().filter(reconciliation_differences::id.eq_any(chunk)))
                    .set((
                        reconciliation_differences::held.eq(false),
                        reconciliation_differences::category
                            .eq(Category::MatchedInNeighbourBill.as_str()),
                        reconciliation_differences::resolution_note.eq(&found_note.note),
                        reconciliation_differences::resolved_by.eq(&found_note.by),
                        reconciliation_differences::resolved_at.eq(db_time(found_note.at)),
                    ))
                    .execute(conn)?;
            }
            for chunk in escalated.chunks(KEYS_PER_QUERY) {
                diesel::update(held_of_run().filter(reconciliation_differences::id.eq_any(chunk)))
                    .set(reconciliation_differences::held.eq(false))
                    .execute(conn)?;
            }
            let listed: Vec<(String, bool)> = reconciliation_differences::table
                .filter(reconciliation_differences::run_id.eq(&run_id))
                .select((
                    reconciliation_differences::category,
                    reconciliation_differences::held,
                ))
                .load(conn)?;
            let differences = listed
                .iter()
                .filter(|(category, _)| {
                    Category::parse(category).is_none_or(Category::is_difference)
                })
                .count() as u64;
            let held = listed.iter().filter(|(_, held)| *held).count() as u64;
            let Some(run) = reconciliation_runs::table
                .find(&run_id)
                .select(RunRow::as_select())
                .first(conn)
                .optional()?
            else {
                return Err(StoreError::NotFound {
                    entity: "reconciliation run",
                    key: run_id,
                });
            };
            // A failed run has no differences to settle; its status stays.
            let status = if run.status == RunStatus::Failed.as_str() {
                run.status.clone()
            } else if differences == 0 {
                RunStatus::Matched.as_str().to_owned()
            } else {
                RunStatus::Differences.as_str().to_owned()
            };
            diesel::update(reconciliation_runs::table.find(&run_id))
                .set((
                    reconciliation_runs::differences_count.eq(count(differences)),
                    reconciliation_runs::held_count.eq(count(held)),
                    reconciliation_runs::status.eq(&status),
                ))
                .execute(conn)?;
            reconciliation_runs::table
                .find(&run_id)
                .select(RunRow::as_select())
                .first(conn)?
                .into_run()
        })
        .await
    }

    /// Sets (or replaces) finance's resolution of a difference.
    pub async fn resolve_difference(
        &self,
        id: &DifferenceId,
        resolution: Resolution,
    ) -> Result<Difference, StoreError> {
        for (what, text) in [("note", &resolution.note), ("by", &resolution.by)] {
            if text.len() > MAX_RESOLUTION_BYTES || text.trim().is_empty() {
                return Err(StoreError::Invalid(format!(
                    "a resolution {what} must be 1 to {MAX_RESOLUTION_BYTES} bytes"
                )));
            }
        }
        let id = id.to_string();
        self.write(LockKey::Difference(id.clone()), move |conn| {
            let changed = diesel::update(reconciliation_differences::table.find(&id))
                .set((
                    reconciliation_differences::resolution_note.eq(resolution.note),
                    reconciliation_differences::resolved_by.eq(resolution.by),
                    reconciliation_differences::resolved_at.eq(db_time(resolution.at)),
                ))
                .execute(conn)?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    entity: "reconciliation difference",
                    key: id,
                });
            }
            reconciliation_differences::table
                .find(&id)
                .select(DifferenceRow::as_select())
                .first(conn)?
                .into_difference()
        })
        .await
    }
}
