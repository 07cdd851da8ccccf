//! Statement reconciliation runs as simulation operations ([`Op::Statement`]): today's bill of
//! one provider, fetched from the sandbox and reconciled through the finance API while the
//! rest of the simulation keeps going, with bill faults injected; then what must hold:
//!
//! * every injected difference is reported once, in its category (an omitted payment
//!   `missing_in_bill`, a misprinted one `amount_mismatch` by the injected fen, a trade paygate
//!   never saw `missing_local`), and a trade whose books agreed before and after the run is not
//!   reported at all;
//! * a bad bill changes nothing: a bill not ready or missing stores no run and leaves the
//!   day's earlier one, a truncated file is a `failed` run that marks no order paid;
//! * what the act step marks paid is paid at the provider and paid here (its one `order.paid`
//!   event is checked with the others at the end);
//! * a rerun replaces the day's run: one run per day, and the edits of the first are gone.
//!
//! The sandbox serves WeChat v2 and Alipay bills on this branch, not APIv3 ones; the WeChat v2
//! bill is the merchant account's, so it covers the APIv3 app's trades too. Only the `sim`
//! apps' bills are fetched.
//!
//! [`Op::Statement`]: crate::ops::Op::Statement

use std::collections::BTreeMap;

use chrono::{TimeDelta, Utc};
use paygate_core::bill::{BEIJING, BillDay};
use paygate_core::{OrderStatus, ProviderKind};
use paygate_sandbox::{Fault, FaultKind, FaultTimes, Trade, TradeStatus};

use crate::invariants::Violation;
use crate::merchant::{Answer, DifferenceView, Merchant, OrderView, RunView, StatementAnswer};
use crate::ops::{BillDownloadFault, BillEdit, StatementRun};
use crate::topology::Topology;

/// The WeChat bill API as the sandbox's faults name it.
const WECHAT_BILL_API: &str = "/pay/downloadbill";
/// The Alipay bill method as the sandbox's faults name it.
const ALIPAY_BILL_API: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// How close to a Beijing midnight a run is not checked: a trade paid just before it is in
/// the other day's bill.
const MIDNIGHT_MARGIN: TimeDelta = TimeDelta::minutes(2);

/// Statement runs across one simulation: whether an earlier run may have left bill faults
/// armed (its request never reached the download), which would shape the next bill.
#[derive(Debug, Default)]
pub struct StatementBook {
    faults_may_linger: bool,
}

/// What a statement operation came to: its log line and the broken expectations.
#[derive(Debug, Default)]
pub struct StatementOutcome {
    /// For the operation log.
    pub outcome: String,
    /// Broken expectations.
    pub violations: Vec<Violation>,
}

fn bill_api(provider: ProviderKind) -> &'static str {
    if provider == ProviderKind::WECHAT {
        WECHAT_BILL_API
    } else {
        ALIPAY_BILL_API
    }
}

fn paid_or_later(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
    )
}

/// Both sides' view of the trades of one provider at one moment.
struct Books {
    trades: BTreeMap<String, Trade>,
    orders: BTreeMap<String, OrderView>,
}

impl Books {
    async fn read(
        topology: &Topology,
        merchant: &Merchant,
        provider: ProviderKind,
    ) -> Option<Books> {
        let orders = merchant.orders().await.ok()?;
        let trades = topology
            .sandbox
            .trades()
            .into_iter()
            .filter(|t| t.provider == provider)
            .map(|t| (t.out_trade_no.clone(), t))
            .collect();
        let orders = orders
            .into_iter()
            .filter(|o| o.provider == provider)
            .map(|o| (o.out_trade_no.clone(), o))
            .collect();
        Some(Books { trades, orders })
    }

    /// Whether both sides agree on the trade and the bill would print it as paid today: paid
    /// there within `day`, paid here, same amount, same refunded total.
    fn settled_paid(&self, no: &str, day: &BillDay) -> bool {
        let (Some(trade), Some(order)) = (self.trades.get(no), self.orders.get(no)) else {
            return false;
        };
        trade.status == TradeStatus::Paid
            && trade.paid_at.is_some_and(|at| day.contains(at))
            && paid_or_later(order.status)
            && trade.amount == order.amount
            && trade.refunded() == order.refunded_amount
    }

    /// Whether the provider's bill of `day` has a line at all: a payment or a refund that day.
    /// (The sandbox's Alipay answers "no bill" for a day of foreign trades only, without
    /// taking the edit, where its WeChat makes the bill; an edit that is not taken would
    /// shape a later bill, so a foreign trade is only added to a day that has a bill anyway.)
    fn bill_has_lines(&self, day: &BillDay) -> bool {
        self.trades.values().any(|t| {
            t.paid_at.is_some_and(|at| day.contains(at))
                || t.refunds.iter().any(|r| day.contains(r.refunded_at))
        })
    }

    /// What identifies a trade's state on both sides (to tell a trade that moved).
    fn state_of(&self, no: &str) -> String {
        let trade = self
            .trades
            .get(no)
            .map(|t| format!("{:?} {} {}", t.status, t.amount, t.refunded()));
        let order = self
            .orders
            .get(no)
            .map(|o| format!("{} {}", o.status.as_str(), o.refunded_amount));
        format!("{trade:?}/{order:?}")
    }
}

/// Collects violations about one statement operation.
struct Checks {
    subject: String,
    violations: Vec<Violation>,
}

impl Checks {
    fn fail(&mut self, about: Option<&str>, problem: String) {
        self.violations.push(Violation::Statement {
            out_trade_no: about.unwrap_or(&self.subject).to_owned(),
            problem,
        });
    }

    /// Records a failed expectation about the run as a whole.
    fn outcome(&mut self, result: Result<(), String>) {
        if let Err(problem) = result {
            self.fail(None, problem);
        }
    }
}

fn edit_fault(provider: ProviderKind, edit: &BillEdit) -> Fault {
    let (kind, no) = match edit {
        BillEdit::Omit(trade) => (FaultKind::BillOmitTrade, trade.out_trade_no()),
        BillEdit::AmountDelta(trade, fen) => (
            FaultKind::BillAmountDelta { fen: *fen },
            trade.out_trade_no(),
        ),
        BillEdit::Foreign { out_trade_no, fen } => (
            FaultKind::BillForeignTrade { fen: *fen },
            out_trade_no.clone(),
        ),
    };
    Fault::once(kind)
        .for_provider(provider)
        .for_api(bill_api(provider))
        .for_trade(no)
}

fn download_fault(provider: ProviderKind, fault: BillDownloadFault) -> Fault {
    let kind = match fault {
        BillDownloadFault::NotReady => FaultKind::BillNotReady,
        BillDownloadFault::NoBill => FaultKind::NoBill,
        BillDownloadFault::Truncated => FaultKind::TruncatedBody,
    };
    Fault::once(kind)
        .for_provider(provider)
        .for_api(bill_api(provider))
}

/// The trade an edit names and the category it must be reported in.
fn expected(edit: &BillEdit) -> (String, &'static str) {
    match edit {
        BillEdit::Omit(trade) => (trade.out_trade_no(), "missing_in_bill"),
        BillEdit::AmountDelta(trade, _) => (trade.out_trade_no(), "amount_mismatch"),
        BillEdit::Foreign { out_trade_no, .. } => (out_trade_no.clone(), "missing_local"),
    }
}

fn answer_status(answer: &StatementAnswer) -> Option<u16> {
    match answer.answer {
        Answer::Status(status, _) => Some(status),
        Answer::Transport(_) => None,
    }
}

fn answer_code(answer: &StatementAnswer) -> Option<&str> {
    match &answer.answer {
        Answer::Status(_, code) => code.as_deref(),
        Answer::Transport(_) => None,
    }
}

impl StatementBook {
    /// Runs `run` (paying its lost trade first, through `lost_order`), checks it and says what
    /// it came to.
    pub async fn execute(
        &mut self,
        topology: &Topology,
        merchant: &Merchant,
        run: &StatementRun,
        lost_order: Option<&OrderView>,
    ) -> StatementOutcome {
        let now = Utc::now();
        let today = now.with_timezone(&BEIJING).date_naive();
        let window = BillDay::new(today);
        let day = today.format("%Y-%m-%d").to_string();
        let provider = run.provider;
        let mut checks = Checks {
            subject: format!("statement {provider} {day}"),
            violations: Vec::new(),
        };
        let mut log = Vec::new();
        // A lost payment: every notify of the trade dropped, then paid.
        if let Some(trade) = run.lost {
            topology.sandbox.add_fault(
                Fault::once(FaultKind::DropNotify)
                    .for_provider(provider)
                    .for_trade(trade.out_trade_no())
                    .times(FaultTimes::ALWAYS),
            );
            let paid = merchant.pay(trade, lost_order).await;
            log.push(format!("lost {trade} paid: {paid}"));
        }
        // Checked only when this run's bill is shaped by this run's faults alone, and the
        // day's trades cannot straddle a Beijing midnight.
        let near_midnight =
            now - window.start() < MIDNIGHT_MARGIN || window.end() - now < MIDNIGHT_MARGIN;
        let checked = !near_midnight && !self.faults_may_linger;
        if !checked {
            log.push("not checked (near midnight or earlier bill faults)".to_owned());
        }
        let runs_before = merchant.reconciliation_runs(provider, &day).await.ok();
        let before = Books::read(topology, merchant, provider).await;
        // An edit of a trade whose books do not agree yet would be reported otherwise (or not
        // at all): only settled trades are edited, and foreign trades added to days that have
        // a bill.
        let edits: Vec<&BillEdit> = run
            .edits
            .iter()
            .filter(|edit| match edit {
                BillEdit::Omit(trade) | BillEdit::AmountDelta(trade, _) => before
                    .as_ref()
                    .is_some_and(|b| b.settled_paid(&trade.out_trade_no(), &window)),
                BillEdit::Foreign { .. } => {
                    before.as_ref().is_some_and(|b| b.bill_has_lines(&window))
                }
            })
            .collect();
        if edits.len() < run.edits.len() {
            log.push(format!(
                "{} edits skipped (trades not settled, or no bill)",
                run.edits.len() - edits.len()
            ));
        }
        for edit in &edits {
            topology.sandbox.add_fault(edit_fault(provider, edit));
        }
        if let Some(fault) = run.download {
            topology.sandbox.add_fault(download_fault(provider, fault));
        }
        let first = merchant.reconcile(provider, &day).await;
        log.push(describe(&first));
        // A request that failed before the download leaves its faults for a later bill; a
        // bill that was built took every edit armed so far; a download refused took its fault
        // and left earlier edits where they were.
        let reached_provider = matches!(answer_status(&first), Some(200 | 409));
        let armed = !edits.is_empty() || run.download.is_some();
        self.faults_may_linger = match answer_status(&first) {
            Some(200) => false,
            _ => self.faults_may_linger || (armed && !reached_provider),
        };
        if checked && reached_provider {
            let after = Books::read(topology, merchant, provider).await;
            let runs_after = merchant.reconciliation_runs(provider, &day).await.ok();
            match run.download {
                Some(fault) => check_bad_bill(
                    &mut checks,
                    provider,
                    fault,
                    &first,
                    runs_before.as_deref(),
                    runs_after.as_deref(),
                    before.as_ref().is_some_and(|b| b.bill_has_lines(&window)),
                ),
                None => {
                    check_good_bill(&mut checks, &first, runs_after.as_deref());
                    if let Ok(differences) = merchant.differences(provider, &day).await {
                        if let Some(lost) = run.lost {
                            log.push(what_became_of(&lost.out_trade_no(), &differences));
                        }
                        check_differences(
                            &mut checks,
                            &edits,
                            &differences,
                            before.as_ref(),
                            after.as_ref(),
                            &window,
                        );
                    }
                }
            }
            check_act_step(&mut checks, &first, after.as_ref());
        }
        let first_good = run.download.is_none() && answer_status(&first) == Some(200);
        if run.rerun && first_good {
            let second = merchant.reconcile(provider, &day).await;
            log.push(format!("rerun: {}", describe(&second)));
            if checked && answer_status(&second) == Some(200) {
                let runs_after = merchant.reconciliation_runs(provider, &day).await.ok();
                check_good_bill(&mut checks, &second, runs_after.as_deref());
                let after = Books::read(topology, merchant, provider).await;
                check_act_step(&mut checks, &second, after.as_ref());
                if let Ok(differences) = merchant.differences(provider, &day).await {
                    check_rerun(&mut checks, &edits, &first, &second, &differences);
                }
            }
        }
        StatementOutcome {
            outcome: log.join("; "),
            violations: checks.violations,
        }
    }
}

/// What the run said about the lost payment, for the log: whether the bill showed it before
/// paygate knew, and what the act step did.
fn what_became_of(no: &str, differences: &[DifferenceView]) -> String {
    match differences.iter().find(|d| d.out_trade_no == no) {
        Some(d) => format!(
            "lost {no}: {} while {}, {}",
            d.category,
            d.local_status.as_deref().unwrap_or("absent"),
            d.resolution
                .as_ref()
                .map_or("left for finance", |r| r.note.as_str())
        ),
        None => format!("lost {no}: not a difference (not paid, or settled before the run)"),
    }
}

fn describe(answer: &StatementAnswer) -> String {
    match &answer.run {
        Some(run) => format!(
            "{} {} ({} differences, bill {}/{} local {}/{}, paid [{}])",
            answer.answer,
            run.status,
            run.differences_count,
            run.bill.payments_count,
            run.bill.refunds_count,
            run.local.payments_count,
            run.local.refunds_count,
            answer.paid.join(", ")
        ),
        None => answer.answer.to_string(),
    }
}

/// The answer to a day without a bill: 409 `bill_missing` with the day's runs as they were,
/// or, when our books have nothing that day either, a stored empty run.
fn no_bill(
    answer: &StatementAnswer,
    runs_before: Option<&[RunView]>,
    runs_after: Option<&[RunView]>,
) -> Result<(), String> {
    let status = answer_status(answer);
    match &answer.run {
        None if status == Some(409) && answer_code(answer) == Some("bill_missing") => {
            unchanged(runs_before, runs_after)
        }
        Some(run)
            if status == Some(200)
                && run.local.payments_count == 0
                && run.local.refunds_count == 0
                && run.bill.payments_count == 0
                && run.bill.refunds_count == 0 =>
        {
            check_replaced(runs_after, run)
        }
        _ => Err(format!(
            "a missing bill answered {} {:?}",
            answer.answer, answer.run
        )),
    }
}

/// The day's runs are as they were: nothing was stored.
fn unchanged(
    runs_before: Option<&[RunView]>,
    runs_after: Option<&[RunView]>,
) -> Result<(), String> {
    match (runs_before, runs_after) {
        (Some(before), Some(after)) if before != after => Err(format!(
            "a bill that never came replaced the day's runs {before:?} with {after:?}"
        )),
        _ => Ok(()),
    }
}

/// A bill the provider would not give, or a file that does not parse: no order marked paid,
/// and no run stored in place of the day's earlier one (a corrupt file stores a `failed` run,
/// which is the one exception: finance sees that the day failed). `bill_expected`: the
/// provider had lines for the day before the run (without any, the sandbox answers "no bill"
/// whatever the fault).
fn check_bad_bill(
    checks: &mut Checks,
    provider: ProviderKind,
    fault: BillDownloadFault,
    answer: &StatementAnswer,
    runs_before: Option<&[RunView]>,
    runs_after: Option<&[RunView]>,
    bill_expected: bool,
) {
    let status = answer_status(answer);
    if !answer.paid.is_empty() {
        checks.fail(
            None,
            format!("a bad bill ({fault:?}) marked {:?} paid", answer.paid),
        );
    }
    let result = match (fault, provider) {
        (BillDownloadFault::Truncated, _) => match &answer.run {
            Some(run) if status == Some(200) && run.status == "failed" => {
                if run.differences_count == 0 {
                    check_replaced(runs_after, run)
                } else {
                    Err(format!(
                        "a failed run lists {} differences",
                        run.differences_count
                    ))
                }
            }
            _ if !bill_expected => no_bill(answer, runs_before, runs_after),
            _ => Err(format!(
                "a truncated bill answered {} {:?}, not a failed run",
                answer.answer,
                answer.run.as_ref().map(|r| &r.status)
            )),
        },
        (BillDownloadFault::NotReady, ProviderKind::WECHAT) => {
            if status == Some(409) && answer_code(answer) == Some("bill_not_ready") {
                unchanged(runs_before, runs_after)
            } else {
                Err(format!(
                    "a bill still being made answered {}",
                    answer.answer
                ))
            }
        }
        // Alipay says "no bill" for one not made yet too.
        _ => no_bill(answer, runs_before, runs_after),
    };
    checks.outcome(result);
}

/// The day has exactly one run, this one: a rerun replaces.
fn check_replaced(runs_after: Option<&[RunView]>, run: &RunView) -> Result<(), String> {
    match runs_after {
        Some([only]) if only.id == run.id => Ok(()),
        Some(runs) => Err(format!(
            "the day's runs are {:?}, not just the run {} answered",
            runs.iter().map(|r| &r.id).collect::<Vec<_>>(),
            run.id
        )),
        None => Ok(()),
    }
}

fn check_good_bill(checks: &mut Checks, answer: &StatementAnswer, runs_after: Option<&[RunView]>) {
    let result = match &answer.run {
        Some(run) if run.status == "matched" || run.status == "differences" => {
            check_replaced(runs_after, run)
        }
        _ => Err(format!(
            "a good bill answered {} {:?}",
            answer.answer, answer.run
        )),
    };
    checks.outcome(result);
}

/// Each applied edit reported exactly once in its category, and nothing reported about a
/// payment both sides agreed on before and after the run.
fn check_differences(
    checks: &mut Checks,
    edits: &[&BillEdit],
    differences: &[DifferenceView],
    before: Option<&Books>,
    after: Option<&Books>,
    window: &BillDay,
) {
    let about = |no: &str| -> Vec<&DifferenceView> {
        differences
            .iter()
            .filter(|d| d.out_trade_no == no && d.kind == "payment")
            .collect()
    };
    for edit in edits {
        let (no, category) = expected(edit);
        let reported = about(&no);
        let right = match reported.as_slice() {
            [one] if one.category == category => match edit {
                BillEdit::AmountDelta(_, fen) => {
                    one.bill_amount.zip(one.local_amount).map(|(b, l)| b - l) == Some(*fen)
                }
                _ => true,
            },
            _ => false,
        };
        if !right {
            let seen: Vec<String> = reported
                .iter()
                .map(|d| format!("{} {:?}/{:?}", d.category, d.bill_amount, d.local_amount))
                .collect();
            checks.fail(
                Some(&no),
                format!("injected {edit:?} must be reported once as {category}, found {seen:?}"),
            );
        }
    }
    let (Some(before), Some(after)) = (before, after) else {
        return;
    };
    let edited: Vec<String> = edits.iter().map(|e| expected(e).0).collect();
    for no in before.orders.keys() {
        if edited.contains(no)
            || !before.settled_paid(no, window)
            || before.state_of(no) != after.state_of(no)
        {
            continue;
        }
        let reported = about(no);
        if !reported.is_empty() {
            let seen: Vec<&str> = reported.iter().map(|d| d.category.as_str()).collect();
            checks.fail(
                Some(no),
                format!("settled on both sides and not edited, yet reported as {seen:?}"),
            );
        }
    }
}

/// What the act step marked paid is paid at the provider and here.
fn check_act_step(checks: &mut Checks, answer: &StatementAnswer, after: Option<&Books>) {
    let Some(after) = after else { return };
    for no in &answer.paid {
        let there = after.trades.get(no).map(|t| t.status);
        let here = after.orders.get(no).map(|o| o.status);
        if there != Some(TradeStatus::Paid) || !here.is_some_and(paid_or_later) {
            checks.fail(
                Some(no),
                format!("the act step marked it paid: {there:?} at the provider, {here:?} here"),
            );
        }
    }
}

/// The rerun replaced the first run: the first run's edits (consumed with its bill) are no
/// longer reported, and nothing is marked paid twice.
fn check_rerun(
    checks: &mut Checks,
    edits: &[&BillEdit],
    first: &StatementAnswer,
    second: &StatementAnswer,
    differences: &[DifferenceView],
) {
    for edit in edits {
        let (no, category) = expected(edit);
        if differences
            .iter()
            .any(|d| d.out_trade_no == no && d.category == category && d.kind == "payment")
        {
            checks.fail(
                Some(&no),
                format!("the rerun still lists the first run's {category} (not replaced)"),
            );
        }
    }
    for no in &second.paid {
        if first.paid.contains(no) {
            checks.fail(
                Some(no),
                "marked paid by the run and again by its rerun".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::TradeNo;

    fn checks() -> Checks {
        Checks {
            subject: "statement wechat 2026-12-02".into(),
            violations: Vec::new(),
        }
    }

    fn difference(no: &str, category: &str, bill: i64, local: i64) -> DifferenceView {
        serde_json::from_value(serde_json::json!({
            "kind": "payment", "category": category, "out_trade_no": no,
            "bill_amount": bill, "local_amount": local, "local_status": "paid", "resolution": null,
        }))
        .unwrap()
    }

    fn run(id: &str, status: &str, payments: i64) -> RunView {
        serde_json::from_value(serde_json::json!({
            "id": id, "status": status, "bill_file_id": null, "differences_count": 0,
            "local": {"payments_count": payments, "refunds_count": 0},
            "bill": {"payments_count": payments, "refunds_count": 0},
            "finished_at": "2026-12-02T09:00:00Z",
        }))
        .unwrap()
    }

    fn answer(
        status: u16,
        code: Option<&str>,
        run: Option<RunView>,
        paid: &[&str],
    ) -> StatementAnswer {
        StatementAnswer {
            answer: Answer::Status(status, code.map(str::to_owned)),
            run,
            paid: paid.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn violations_for(differences: &[DifferenceView]) -> usize {
        let edits = [
            BillEdit::Omit(TradeNo(1)),
            BillEdit::AmountDelta(TradeNo(2), -5),
            BillEdit::Foreign {
                out_trade_no: "simx00009f2".into(),
                fen: 700,
            },
        ];
        let edits: Vec<&BillEdit> = edits.iter().collect();
        let window = BillDay::new(Utc::now().with_timezone(&BEIJING).date_naive());
        let mut checks = checks();
        check_differences(&mut checks, &edits, differences, None, None, &window);
        checks.violations.len()
    }

    #[test]
    fn each_injected_edit_must_be_reported_exactly_once_in_its_category() {
        let right = vec![
            difference("sim00001", "missing_in_bill", 0, 100),
            difference("sim00002", "amount_mismatch", 95, 100),
            difference("simx00009f2", "missing_local", 700, 0),
        ];
        assert_eq!(violations_for(&right), 0);
        let mut twice = right.clone();
        twice.push(difference("simx00009f2", "missing_local", 700, 0));
        assert_eq!(violations_for(&twice), 1);
        let mut wrong_category = right.clone();
        wrong_category[0] = difference("sim00001", "missing_local", 0, 100);
        assert_eq!(violations_for(&wrong_category), 1);
        let mut wrong_delta = right.clone();
        wrong_delta[1] = difference("sim00002", "amount_mismatch", 105, 100);
        assert_eq!(violations_for(&wrong_delta), 1);
        assert_eq!(
            violations_for(&right[1..]),
            1,
            "the omitted trade unreported"
        );
    }

    #[test]
    fn a_bad_bill_must_store_nothing_pay_nothing_or_store_a_failed_run() {
        let earlier = [run("rcn_1", "matched", 2)];
        let check = |fault, answer: &StatementAnswer, after: &[RunView], expected: bool| {
            let mut checks = checks();
            check_bad_bill(
                &mut checks,
                ProviderKind::WECHAT,
                fault,
                answer,
                Some(&earlier),
                Some(after),
                expected,
            );
            checks.violations.len()
        };
        let not_ready = answer(409, Some("bill_not_ready"), None, &[]);
        assert_eq!(
            check(BillDownloadFault::NotReady, &not_ready, &earlier, true),
            0
        );
        let replaced = [run("rcn_2", "matched", 2)];
        assert_eq!(
            check(BillDownloadFault::NotReady, &not_ready, &replaced, true),
            1
        );
        let stored = answer(200, None, Some(run("rcn_2", "matched", 2)), &[]);
        assert_eq!(
            check(BillDownloadFault::NotReady, &stored, &replaced, true),
            1
        );
        let missing = answer(409, Some("bill_missing"), None, &[]);
        assert_eq!(
            check(BillDownloadFault::NoBill, &missing, &earlier, true),
            0
        );
        let failed = answer(200, None, Some(run("rcn_3", "failed", 0)), &[]);
        let now_failed = [run("rcn_3", "failed", 0)];
        assert_eq!(
            check(BillDownloadFault::Truncated, &failed, &now_failed, true),
            0
        );
        let matched = answer(200, None, Some(run("rcn_3", "matched", 2)), &[]);
        assert_eq!(
            check(BillDownloadFault::Truncated, &matched, &now_failed, true),
            1
        );
        // Without lines for the day the sandbox has no bill to cut: an empty day is right.
        let empty = answer(200, None, Some(run("rcn_3", "matched", 0)), &[]);
        let now_empty = [run("rcn_3", "matched", 0)];
        assert_eq!(
            check(BillDownloadFault::Truncated, &empty, &now_empty, false),
            0
        );
        let paying = answer(200, None, Some(run("rcn_3", "failed", 0)), &["sim00001"]);
        assert_eq!(
            check(BillDownloadFault::Truncated, &paying, &now_failed, true),
            1
        );
    }

    #[test]
    fn a_rerun_that_keeps_the_first_runs_edits_or_pays_again_is_a_violation() {
        let edit = BillEdit::Omit(TradeNo(1));
        let first = answer(
            200,
            None,
            Some(run("rcn_1", "differences", 2)),
            &["sim00004"],
        );
        let check = |second: &StatementAnswer, differences: &[DifferenceView]| {
            let mut checks = checks();
            check_rerun(&mut checks, &[&edit], &first, second, differences);
            checks.violations.len()
        };
        let clean = answer(200, None, Some(run("rcn_2", "matched", 3)), &[]);
        assert_eq!(check(&clean, &[]), 0);
        let kept = [difference("sim00001", "missing_in_bill", 0, 100)];
        assert_eq!(check(&clean, &kept), 1);
        let again = answer(200, None, Some(run("rcn_2", "matched", 3)), &["sim00004"]);
        assert_eq!(check(&again, &[]), 1);
    }
}
