//! Statement reconciliation: one provider bill day matched line by line against paygate's own
//! books (bills.md §5.3), every disagreement put in a category finance can act on.
//!
//! This crate knows no provider format and no database. The provider crates turn their rows
//! into [`BillLine`]s; the caller loads a [`Ledger`] (plain structs, so the rules are tested
//! without a database) and feeds the bill through a [`Matcher`] one line at a time, which keeps
//! a million-row day in bounded memory: the ledger is indexed once by key, and only the
//! differences are kept unless asked otherwise.
//!
//! Rules, and why:
//! * **The day is the Beijing calendar day of the provider's time** ([`BillDay`]): payments by
//!   the provider's success time, refunds by their request time. An order paid at 00:00:07
//!   belongs to the next day's bill, whatever its creation time.
//! * **The ledger holds the day's local payments and refunds plus every order the bill names**:
//!   a bill line is matched by key wherever our clock put the payment, so a payment our clock
//!   logged at 23:59:59 and the provider at 00:00:02 matches in the next day's run.
//! * **Payments key on `out_trade_no`** and compare the order total (coupons included; the
//!   settled amount would flag every couponed order); the provider trade number is
//!   cross-checked. **Refunds key on `out_refund_no`** and compare the requested amount.
//! * **Near midnight is held, not escalated**: a local-only item within
//!   [`MatchOptions::near_midnight`] of either midnight is marked `held` until the neighbouring
//!   day's bill has been checked ([`Report::resolve_held`]).
//! * **An empty bill is not "no differences"**: every local payment of the day is then
//!   `missing_in_bill`. Nothing is reported until [`Matcher::finish`], which the caller only
//!   calls once the provider parser has checked the whole file.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use paygate_core::{BillDay, BillLine, BillLineKind, Fen, OrderStatus, RefundStatus};
use serde::Serialize;

/// One local order as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPayment {
    /// Our order number, the payment key.
    pub out_trade_no: String,
    /// The provider's trade number, once known (from the notify or a query).
    pub provider_trade_no: Option<String>,
    /// The order amount.
    pub amount: Fen,
    /// The order's status in our books.
    pub status: OrderStatus,
    /// The provider's success time, stored from the notify or query.
    pub paid_at: Option<DateTime<Utc>>,
}

/// One local refund as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRefund {
    /// Our refund number, the refund key.
    pub out_refund_no: String,
    /// The order refunded.
    pub out_trade_no: String,
    /// The amount requested.
    pub amount: Fen,
    /// The refund's status in our books.
    pub status: RefundStatus,
    /// When the refund was requested: the refund's bill day.
    pub requested_at: DateTime<Utc>,
}

/// Our side of one bill day: the day's payments and refunds and every order or refund the
/// bill names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Local orders.
    pub payments: Vec<LedgerPayment>,
    /// Local refunds.
    pub refunds: Vec<LedgerRefund>,
}

/// What a bill line and our books say together (bills.md §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Both sides, same amount, paid locally.
    Matched,
    /// In the bill, not in our books: a lost order, or one from another system on the merchant.
    MissingLocal,
    /// Paid in our books on this day, absent from the bill.
    MissingInBill,
    /// The bill says paid, our books say pending or closed (a lost notify), or the bill says
    /// revoked and our books say paid.
    StatusMismatch,
    /// Both sides, the amounts differ.
    AmountMismatch,
    /// Same order number, but the provider trade numbers differ.
    TradeNoMismatch,
    /// A refund on both sides with the same amount.
    RefundMatched,
    /// A refund in the bill, not in our books.
    RefundMissingLocal,
    /// A refund in our books on this day, absent from the bill.
    RefundMissingInBill,
    /// A refund on both sides, the amounts differ.
    RefundAmountMismatch,
    /// A refund in the bill that our books have as failed.
    RefundStatusMismatch,
    /// The same key twice in the bill, or twice in our books: a possible double payment.
    Duplicate,
    /// A held near-midnight item found in the neighbouring day's bill with the same amount.
    MatchedInNeighbourBill,
}

impl Category {
    /// Every category, for listings and storage round trips.
    pub const ALL: [Category; 13] = [
        Category::Matched,
        Category::MissingLocal,
        Category::MissingInBill,
        Category::StatusMismatch,
        Category::AmountMismatch,
        Category::TradeNoMismatch,
        Category::RefundMatched,
        Category::RefundMissingLocal,
        Category::RefundMissingInBill,
        Category::RefundAmountMismatch,
        Category::RefundStatusMismatch,
        Category::Duplicate,
        Category::MatchedInNeighbourBill,
    ];

    /// The snake_case name used in reports, the database and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Matched => "matched",
            Category::MissingLocal => "missing_local",
            Category::MissingInBill => "missing_in_bill",
            Category::StatusMismatch => "status_mismatch",
            Category::AmountMismatch => "amount_mismatch",
            Category::TradeNoMismatch => "trade_no_mismatch",
            Category::RefundMatched => "refund_matched",
            Category::RefundMissingLocal => "refund_missing_local",
            Category::RefundMissingInBill => "refund_missing_in_bill",
            Category::RefundAmountMismatch => "refund_amount_mismatch",
            Category::RefundStatusMismatch => "refund_status_mismatch",
            Category::Duplicate => "duplicate",
            Category::MatchedInNeighbourBill => "matched_in_neighbour_bill",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// Whether finance has to look at it (everything but the agreeing categories).
    pub const fn is_difference(self) -> bool {
        !matches!(
            self,
            Category::Matched | Category::RefundMatched | Category::MatchedInNeighbourBill
        )
    }
}

/// The bill's side of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillSide {
    /// The provider's trade number.
    pub provider_trade_no: String,
    /// The provider's refund number (WeChat refunds).
    pub provider_refund_no: Option<String>,
    /// The line's time.
    pub occurred_at: DateTime<Utc>,
    /// The compared amount.
    pub amount: Fen,
    /// The provider's status text.
    pub status: String,
}

/// Our side of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalStatus {
    /// An order's status.
    Order(OrderStatus),
    /// A refund's status.
    Refund(RefundStatus),
}

impl LocalStatus {
    /// The snake_case status name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LocalStatus::Order(status) => status.as_str(),
            LocalStatus::Refund(status) => status.as_str(),
        }
    }
}

/// Our books' side of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSide {
    /// The provider trade number we stored, if any.
    pub provider_trade_no: Option<String>,
    /// The amount in our books.
    pub amount: Fen,
    /// The status in our books.
    pub status: LocalStatus,
    /// The time that dates it locally: `paid_at` or `requested_at`.
    pub at: Option<DateTime<Utc>>,
}

/// One reconciled item: both sides as far as they exist, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Payment or refund.
    pub kind: BillLineKind,
    /// The verdict.
    pub category: Category,
    /// The order number.
    pub out_trade_no: String,
    /// The refund number, for refunds.
    pub out_refund_no: Option<String>,
    /// The bill line, if the bill has one.
    pub bill: Option<BillSide>,
    /// Our record, if our books have one.
    pub local: Option<LocalSide>,
    /// A local-only item within the near-midnight margin: it may sit in the neighbouring
    /// day's bill.
    pub near_midnight: bool,
    /// Waiting for the neighbouring day's bill before anyone is alerted.
    pub held: bool,
    /// A matched refund whose bill status (frozen when the bill was made) differs from ours.
    pub refund_status_differs: bool,
}

/// Local totals of the day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalTotals {
    /// Orders paid (by provider success time) on the day.
    pub payments_count: u64,
    /// Their amounts.
    pub gross_fen: i64,
    /// Refunds requested on the day and not failed.
    pub refunds_count: u64,
    /// Their amounts.
    pub refunds_fen: i64,
}

/// The bill's totals, summed from its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillTotals {
    /// Payment lines.
    pub payments_count: u64,
    /// Refund lines.
    pub refunds_count: u64,
    /// Σ payment amounts (order totals).
    pub gross_fen: i64,
    /// Σ payment settlement amounts.
    pub settlement_gross_fen: i64,
    /// Σ refund amounts.
    pub refunds_fen: i64,
    /// Σ fees, signed.
    pub fees_fen: i64,
}

impl BillTotals {
    /// Net settlement: settled gross − refunds − fees.
    pub fn net_fen(&self) -> i64 {
        self.settlement_gross_fen - self.refunds_fen - self.fees_fen
    }
}

/// The result of one bill day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The day.
    pub day: BillDay,
    /// Payment items (bill order, then local-only in ledger order), then refund items.
    /// Matched items are only listed with [`MatchOptions::keep_matched`].
    pub items: Vec<Item>,
    /// Items per category, matched ones included whether listed or not.
    pub counts: BTreeMap<Category, u64>,
    /// Our totals of the day.
    pub local_totals: LocalTotals,
    /// The bill's totals.
    pub bill_totals: BillTotals,
}

impl Report {
    /// The items that need finance (every category but the agreeing ones).
    pub fn differences(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(|item| item.category.is_difference())
    }

    /// Settles the held near-midnight items against the neighbouring day's bill: an item
    /// found there with the same amount becomes [`Category::MatchedInNeighbourBill`]; the
    /// others stay where they are and are no longer held, so they are escalated.
    pub fn resolve_held(&mut self, neighbour: &NeighbourBill) {
        for item in self.items.iter_mut().filter(|item| item.held) {
            let key = match item.kind {
                BillLineKind::Payment => Some(item.out_trade_no.as_str()),
                BillLineKind::Refund => item.out_refund_no.as_deref(),
            };
            let found = match (key, item.local.as_ref()) {
                (Some(key), Some(local)) => neighbour.has(item.kind, key, local.amount),
                _ => false,
            };
            if found {
                decrement(&mut self.counts, item.category);
                item.category = Category::MatchedInNeighbourBill;
                *self.counts.entry(item.category).or_default() += 1;
            }
            item.held = false;
        }
    }
}

fn decrement(counts: &mut BTreeMap<Category, u64>, category: Category) {
    if let Some(count) = counts.get_mut(&category) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&category);
        }
    }
}

/// The near-midnight lines of a neighbouring day's bill, collected while that bill is matched
/// (only lines within the margin of the shared midnight are kept, so this stays small).
#[derive(Debug, Clone, Default)]
pub struct NeighbourBill {
    lines: std::collections::HashMap<(bool, String), Fen>,
}

impl NeighbourBill {
    /// Collects the lines of `neighbour`'s bill near the midnight it shares with `day`.
    pub fn new() -> NeighbourBill {
        NeighbourBill::default()
    }

    /// Offers one line of the neighbouring bill; it is kept if it lies within `margin` of a
    /// midnight of `day`.
    pub fn offer(&mut self, day: BillDay, line: &BillLine<'_>, margin: TimeDelta) {
        if !day.near_midnight(line.occurred_at, margin) {
            return;
        }
        let key = match line.kind {
            BillLineKind::Payment => Some(line.out_trade_no),
            BillLineKind::Refund => line.out_refund_no,
        };
        if let Some(key) = key {
            self.lines.insert(
                (line.kind == BillLineKind::Refund, key.to_owned()),
                line.amount,
            );
        }
    }
}

impl NeighbourBill {
    /// Whether the neighbouring bill has the item keyed `key` (the order number of a payment,
    /// the refund number of a refund) with `amount`.
    pub fn has(&self, kind: BillLineKind, key: &str, amount: Fen) -> bool {
        self.lines
            .get(&(kind == BillLineKind::Refund, key.to_owned()))
            .is_some_and(|found| *found == amount)
    }
}

/// The neighbouring day whose bill a held item of `day` dated `at` waits for: the day before
/// when `at` is within `margin` of the day's first midnight, the day after when within
/// `margin` of its last; `None` when it is near neither.
pub fn waits_for(day: NaiveDate, at: DateTime<Utc>, margin: TimeDelta) -> Option<NaiveDate> {
    let bill_day = BillDay::new(day);
    if (at - bill_day.start()).abs() <= margin {
        day.pred_opt()
    } else if (at - bill_day.end()).abs() <= margin {
        day.succ_opt()
    } else {
        None
    }
}

/// A held near-midnight item of a stored run, as settling it needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldItem {
    /// Payment or refund.
    pub kind: BillLineKind,
    /// The order number (payments) or refund number (refunds).
    pub key: String,
    /// Our amount.
    pub amount: Fen,
}

/// What the neighbouring day's bill says about a held item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The neighbouring bill has it with our amount: the provider dated it across midnight
    /// from our clock, nothing is missing ([`Category::MatchedInNeighbourBill`]).
    FoundInNeighbour,
    /// The neighbouring bill does not have it either: it stays a difference, no longer held.
    Escalated,
}

/// Settles a held item against the near-midnight lines of the neighbouring day's bill
/// (`None` when that day was verified empty: no bill, no business).
pub fn settle(item: &HeldItem, neighbour: Option<&NeighbourBill>) -> Settlement {
    if neighbour.is_some_and(|bill| bill.has(item.kind, &item.key, item.amount)) {
        Settlement::FoundInNeighbour
    } else {
        Settlement::Escalated
    }
}

/// How a day is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchOptions {
    /// List matched items in the report too (they are always counted).
    pub keep_matched: bool,
    /// How close to midnight a local-only item must be to be held.
    pub near_midnight: TimeDelta,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            keep_matched: false,
            near_midnight: TimeDelta::minutes(5),
        }
    }
}

/// Why a day could not be matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// A bill line is dated outside the day: the bill is not the day's bill.
    #[error("bill line for {key} at {at} is outside the bill day {day}")]
    LineOutsideDay {
        /// The line's order or refund number.
        key: String,
        /// The line's time.
        at: DateTime<Utc>,
        /// The day being matched.
        day: NaiveDate,
    },
    /// A refund line without our refund number cannot be keyed.
    #[error("refund line of order {out_trade_no} has no refund number")]
    RefundWithoutKey {
        /// The order refunded.
        out_trade_no: String,
    },
}

/// Matches one bill day: build it with the ledger, [`push`](Matcher::push) every bill line,
/// then [`finish`](Matcher::finish).
#[derive(Debug)]
pub struct Matcher {
    day: BillDay,
    /// Ledger positions by key. A hash index rather than a sorted vector: a million bill rows
    /// in random order made binary search (twenty cache misses per row) the dominant cost.
    hasher: RandomState,
    payment_index: HashTable<usize>,
    refund_index: HashTable<usize>,
    options: MatchOptions,
    payments: Vec<LedgerPayment>,
    payment_seen: Vec<bool>,
    refunds: Vec<LedgerRefund>,
    refund_seen: Vec<bool>,
    payment_items: Vec<Item>,
    refund_items: Vec<Item>,
    unknown_payment_keys: HashSet<String>,
    unknown_refund_keys: HashSet<String>,
    counts: BTreeMap<Category, u64>,
    bill_totals: BillTotals,
    error: Option<MatchError>,
}

fn is_paid(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
    )
}

/// The provider's refund status text that means the same as ours.
fn bill_refund_status(status: RefundStatus) -> &'static str {
    match status {
        RefundStatus::Processing => "PROCESSING",
        RefundStatus::Succeeded => "SUCCESS",
        RefundStatus::Failed => "FAIL",
    }
}

impl Matcher {
    /// Prepares to match Beijing day `day` against `ledger`. Two local entries with one key
    /// are reported as duplicates here.
    pub fn new(day: NaiveDate, ledger: Ledger, options: MatchOptions) -> Matcher {
        let Ledger { payments, refunds } = ledger;
        let hasher = RandomState::new();
        let (payment_index, payment_twins) = index_by(&payments, &hasher, |p| &p.out_trade_no);
        let (refund_index, refund_twins) = index_by(&refunds, &hasher, |r| &r.out_refund_no);
        let mut matcher = Matcher {
            hasher,
            payment_index,
            refund_index,
            day: BillDay::new(day),
            options,
            payment_seen: vec![false; payments.len()],
            refund_seen: vec![false; refunds.len()],
            payments,
            refunds,
            payment_items: Vec::new(),
            refund_items: Vec::new(),
            unknown_payment_keys: HashSet::new(),
            unknown_refund_keys: HashSet::new(),
            counts: BTreeMap::new(),
            bill_totals: BillTotals::default(),
            error: None,
        };
        for at in payment_twins {
            let item = Item {
                local: Some(matcher.local_payment(at)),
                ..blank_item(
                    BillLineKind::Payment,
                    Category::Duplicate,
                    &matcher.payments[at].out_trade_no,
                )
            };
            matcher.payment_seen[at] = true;
            matcher.record(item);
        }
        for at in refund_twins {
            let refund = &matcher.refunds[at];
            let item = Item {
                out_refund_no: Some(refund.out_refund_no.clone()),
                local: Some(local_refund(refund)),
                ..blank_item(
                    BillLineKind::Refund,
                    Category::Duplicate,
                    &refund.out_trade_no,
                )
            };
            matcher.refund_seen[at] = true;
            matcher.record(item);
        }
        matcher
    }

    fn local_payment(&self, at: usize) -> LocalSide {
        let payment = &self.payments[at];
        LocalSide {
            provider_trade_no: payment.provider_trade_no.clone(),
            amount: payment.amount,
            status: LocalStatus::Order(payment.status),
            at: payment.paid_at,
        }
    }

    /// Whether items of `category` are listed (differences always; matched ones on request).
    /// Checked before an item is built, so a million matched lines allocate nothing.
    fn lists(&self, category: Category) -> bool {
        category.is_difference() || self.options.keep_matched
    }

    fn record(&mut self, item: Item) {
        *self.counts.entry(item.category).or_default() += 1;
        if self.lists(item.category) {
            match item.kind {
                BillLineKind::Payment => self.payment_items.push(item),
                BillLineKind::Refund => self.refund_items.push(item),
            }
        }
    }

    /// Matches one bill line. Errors are kept and returned by [`Matcher::finish`], so the
    /// caller can feed lines straight from a parser's callback.
    pub fn push(&mut self, line: &BillLine<'_>) {
        if self.error.is_some() {
            return;
        }
        if !self.day.contains(line.occurred_at) {
            self.error = Some(MatchError::LineOutsideDay {
                key: line.out_refund_no.unwrap_or(line.out_trade_no).to_owned(),
                at: line.occurred_at,
                day: self.day.date(),
            });
            return;
        }
        let totals = &mut self.bill_totals;
        totals.fees_fen += line.fee_fen;
        match line.kind {
            BillLineKind::Payment => {
                totals.payments_count += 1;
                totals.gross_fen += line.amount.get();
                totals.settlement_gross_fen += line.settlement.get();
                self.push_payment(line);
            }
            BillLineKind::Refund => {
                totals.refunds_count += 1;
                totals.refunds_fen += line.amount.get();
                self.push_refund(line);
            }
        }
    }

    fn push_payment(&mut self, line: &BillLine<'_>) {
        let payments = &self.payments;
        let found = self
            .payment_index
            .find(self.hasher.hash_one(line.out_trade_no), |&at| {
                payments[at].out_trade_no == line.out_trade_no
            })
            .copied();
        let Some(at) = found else {
            let category = if self
                .unknown_payment_keys
                .insert(line.out_trade_no.to_owned())
            {
                Category::MissingLocal
            } else {
                Category::Duplicate
            };
            let item = Item {
                bill: Some(bill_side(line)),
                ..blank_item(BillLineKind::Payment, category, line.out_trade_no)
            };
            self.record(item);
            return;
        };
        let payment = &self.payments[at];
        let category = if self.payment_seen[at] {
            Category::Duplicate
        } else if line.status != "SUCCESS" {
            // A revoked trade: only a problem if our books say paid.
            if is_paid(payment.status) {
                Category::StatusMismatch
            } else {
                Category::Matched
            }
        } else if !is_paid(payment.status) {
            Category::StatusMismatch
        } else if payment.amount != line.amount {
            Category::AmountMismatch
        } else if payment
            .provider_trade_no
            .as_deref()
            .is_some_and(|ours| ours != line.provider_trade_no)
        {
            Category::TradeNoMismatch
        } else {
            Category::Matched
        };
        self.payment_seen[at] = true;
        if !self.lists(category) {
            *self.counts.entry(category).or_default() += 1;
            return;
        }
        let item = Item {
            bill: Some(bill_side(line)),
            local: Some(self.local_payment(at)),
            ..blank_item(BillLineKind::Payment, category, line.out_trade_no)
        };
        self.record(item);
    }

    fn push_refund(&mut self, line: &BillLine<'_>) {
        let Some(key) = line.out_refund_no else {
            self.error = Some(MatchError::RefundWithoutKey {
                out_trade_no: line.out_trade_no.to_owned(),
            });
            return;
        };
        let bill = Some(bill_side(line));
        let refunds = &self.refunds;
        let found = self
            .refund_index
            .find(self.hasher.hash_one(key), |&at| {
                refunds[at].out_refund_no == key
            })
            .copied();
        let Some(at) = found else {
            let category = if self.unknown_refund_keys.insert(key.to_owned()) {
                Category::RefundMissingLocal
            } else {
                Category::Duplicate
            };
            let item = Item {
                out_refund_no: Some(key.to_owned()),
                bill,
                ..blank_item(BillLineKind::Refund, category, line.out_trade_no)
            };
            self.record(item);
            return;
        };
        let refund = &self.refunds[at];
        let category = if self.refund_seen[at] {
            Category::Duplicate
        } else if refund.status == RefundStatus::Failed {
            Category::RefundStatusMismatch
        } else if refund.amount != line.amount {
            Category::RefundAmountMismatch
        } else {
            Category::RefundMatched
        };
        // Bill statuses are frozen when the bill is made, so this is informational only.
        let refund_status_differs =
            category == Category::RefundMatched && bill_refund_status(refund.status) != line.status;
        let item = Item {
            out_refund_no: Some(key.to_owned()),
            bill,
            local: Some(local_refund(refund)),
            refund_status_differs,
            ..blank_item(BillLineKind::Refund, category, &refund.out_trade_no)
        };
        self.refund_seen[at] = true;
        self.record(item);
    }

    /// Ends the day: every local payment paid on the day and every local refund requested on
    /// it that the bill did not name becomes a `missing_in_bill` item (held if near midnight).
    pub fn finish(mut self) -> Result<Report, MatchError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        let mut local_totals = LocalTotals::default();
        let margin = self.options.near_midnight;
        for at in 0..self.payments.len() {
            let payment = &self.payments[at];
            let Some(paid_at) = payment.paid_at.filter(|t| self.day.contains(*t)) else {
                continue;
            };
            if !is_paid(payment.status) {
                continue;
            }
            local_totals.payments_count += 1;
            local_totals.gross_fen += payment.amount.get();
            if self.payment_seen[at] {
                continue;
            }
            let near_midnight = self.day.near_midnight(paid_at, margin);
            let item = Item {
                local: Some(self.local_payment(at)),
                near_midnight,
                held: near_midnight,
                ..blank_item(
                    BillLineKind::Payment,
                    Category::MissingInBill,
                    &self.payments[at].out_trade_no,
                )
            };
            self.record(item);
        }
        for at in 0..self.refunds.len() {
            let refund = &self.refunds[at];
            if refund.status == RefundStatus::Failed || !self.day.contains(refund.requested_at) {
                continue;
            }
            local_totals.refunds_count += 1;
            local_totals.refunds_fen += refund.amount.get();
            if self.refund_seen[at] {
                continue;
            }
            let near_midnight = self.day.near_midnight(refund.requested_at, margin);
            let item = Item {
                out_refund_no: Some(refund.out_refund_no.clone()),
                local: Some(local_refund(refund)),
                near_midnight,
                held: near_midnight,
                ..blank_item(
                    BillLineKind::Refund,
                    Category::RefundMissingInBill,
                    &refund.out_trade_no,
                )
            };
            self.record(item);
        }
        let mut items = self.payment_items;
        items.append(&mut self.refund_items);
        Ok(Report {
            day: self.day,
            items,
            counts: self.counts,
            local_totals,
            bill_totals: self.bill_totals,
        })
    }
}

/// Indexes `entries` by `key`; returns the index and the positions of entries whose key an
/// earlier entry already has (local duplicates).
fn index_by<T>(
    entries: &[T],
    hasher: &RandomState,
    key: impl Fn(&T) -> &String,
) -> (HashTable<usize>, Vec<usize>) {
    let mut index = HashTable::with_capacity(entries.len());
    let mut twins = Vec::new();
    for (at, entry) in entries.iter().enumerate() {
        let wanted = key(entry);
        let hash = hasher.hash_one(wanted.as_str());
        if index
            .find(hash, |&other| key(&entries[other]) == wanted)
            .is_some()
        {
            twins.push(at);
        } else {
            index.insert_unique(hash, at, |&other| {
                hasher.hash_one(key(&entries[other]).as_str())
            });
        }
    }
    (index, twins)
}

fn blank_item(kind: BillLineKind, category: Category, out_trade_no: &str) -> Item {
    Item {
        kind,
        category,
        out_trade_no: out_trade_no.to_owned(),
        out_refund_no: None,
        bill: None,
        local: None,
        near_midnight: false,
        held: false,
        refund_status_differs: false,
    }
}

fn bill_side(line: &BillLine<'_>) -> BillSide {
    BillSide {
        provider_trade_no: line.provider_trade_no.to_owned(),
        provider_refund_no: line.provider_refund_no.map(str::to_owned),
        occurred_at: line.occurred_at,
        amount: line.amount,
        status: line.status.to_owned(),
    }
}

fn local_refund(refund: &LedgerRefund) -> LocalSide {
    LocalSide {
        provider_trade_no: None,
        amount: refund.amount,
        status: LocalStatus::Refund(refund.status),
        at: Some(refund.requested_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 15).unwrap()
    }

    /// Beijing wall time on `d` of January 2024.
    fn beijing(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, d, h, m, s).unwrap() - TimeDelta::hours(8)
    }

    fn line<'a>(
        kind: BillLineKind,
        no: &'a str,
        refund: Option<&'a str>,
        fen: i64,
        at: DateTime<Utc>,
    ) -> BillLine<'a> {
        BillLine {
            kind,
            occurred_at: at,
            out_trade_no: no,
            provider_trade_no: "4200",
            out_refund_no: refund,
            provider_refund_no: None,
            amount: Fen::new(fen).unwrap(),
            settlement: Fen::new(fen).unwrap(),
            fee_fen: 0,
            status: "SUCCESS",
        }
    }

    #[test]
    fn a_held_item_waits_for_the_day_across_its_nearest_midnight() {
        let margin = TimeDelta::minutes(5);
        assert_eq!(
            waits_for(day(), beijing(15, 23, 58, 0), margin),
            day().succ_opt()
        );
        assert_eq!(
            waits_for(day(), beijing(16, 0, 1, 0), margin),
            day().succ_opt()
        );
        assert_eq!(
            waits_for(day(), beijing(15, 0, 3, 0), margin),
            day().pred_opt()
        );
        assert_eq!(waits_for(day(), beijing(15, 12, 0, 0), margin), None);
        assert_eq!(waits_for(day(), beijing(15, 23, 54, 0), margin), None);
    }

    #[test]
    fn a_held_item_is_settled_only_by_the_same_key_and_amount_in_the_neighbouring_bill() {
        let margin = TimeDelta::minutes(5);
        // The 16th's bill, offered line by line as its run reads it.
        let mut next = NeighbourBill::new();
        for offered in [
            line(
                BillLineKind::Payment,
                "T1",
                None,
                1000,
                beijing(16, 0, 0, 2),
            ),
            line(
                BillLineKind::Refund,
                "T2",
                Some("R2"),
                300,
                beijing(16, 0, 1, 0),
            ),
            // Far from the shared midnight: not kept, so it settles nothing.
            line(BillLineKind::Payment, "T3", None, 500, beijing(16, 9, 0, 0)),
        ] {
            next.offer(BillDay::new(day()), &offered, margin);
        }
        let held = |kind, key: &str, fen| HeldItem {
            kind,
            key: key.to_owned(),
            amount: Fen::new(fen).unwrap(),
        };
        let found = Settlement::FoundInNeighbour;
        let escalated = Settlement::Escalated;
        assert_eq!(
            settle(&held(BillLineKind::Payment, "T1", 1000), Some(&next)),
            found
        );
        assert_eq!(
            settle(&held(BillLineKind::Refund, "R2", 300), Some(&next)),
            found
        );
        // Another amount, another key, a refund number looked up as a payment, a line far
        // from midnight, or no neighbouring bill at all: still a difference.
        assert_eq!(
            settle(&held(BillLineKind::Payment, "T1", 999), Some(&next)),
            escalated
        );
        assert_eq!(
            settle(&held(BillLineKind::Payment, "T9", 1000), Some(&next)),
            escalated
        );
        assert_eq!(
            settle(&held(BillLineKind::Payment, "R2", 300), Some(&next)),
            escalated
        );
        assert_eq!(
            settle(&held(BillLineKind::Payment, "T3", 500), Some(&next)),
            escalated
        );
        assert_eq!(
            settle(&held(BillLineKind::Payment, "T1", 1000), None),
            escalated
        );
    }
}
