//! Orders: insert, look-ups, filtered listing, and the compare-and-set status transition.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::{
    AppName, Channel, Currency, Fen, Order, OrderEvent, OrderId, OrderStatus, OutTradeNo,
    PayParams, ProviderKind,
};

use crate::callbacks::{CallbackRow, JudgedCallback, insert_callback};
use crate::conn::{Db, DbConnection, on_backend};
use crate::outbox::{NewOutboxEvent, OutboxRow, insert_outbox_row, new_outbox_row};
use crate::schema::orders;
use crate::{Cursor, LockKey, Page, Store, StoreError, corrupt, db_now, db_time, fen_column, utc};

/// The columns of `orders` spelled out in `OrderRow`'s order, for `RETURNING`:
/// `as_returning()` does not reach through the multi-backend, whose RETURNING is delegated to
/// each backend's own.
macro_rules! order_columns {
    () => {
        (
            orders::id,
            orders::provider,
            orders::app,
            orders::channel,
            orders::out_trade_no,
            orders::amount,
            orders::currency,
            orders::subject,
            orders::description,
            orders::status,
            orders::provider_trade_no,
            orders::payer_id,
            orders::pay_params,
            orders::refunded_amount,
            orders::metadata,
            orders::request_hash,
            orders::created_at,
            orders::paid_at,
            orders::closed_at,
            orders::expires_at,
            orders::updated_at,
            orders::version,
            orders::next_query_at,
        )
    };
}

/// What the gateway knows when it creates an order; the store adds the id, the `pending`
/// status and the bookkeeping columns.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    /// The provider that takes the money.
    pub provider: ProviderKind,
    /// The configured provider app.
    pub app: AppName,
    /// The payment product.
    pub channel: Channel,
    /// The merchant's order number, unique per app.
    pub out_trade_no: OutTradeNo,
    /// The amount to collect.
    pub amount: Fen,
    /// The currency of `amount`.
    pub currency: Currency,
    /// Item name shown to the buyer.
    pub subject: String,
    /// Optional longer description.
    pub description: Option<String>,
    /// The buyer at the provider, when the channel needs it up front (openid).
    pub payer_id: Option<String>,
    /// Pay params, when they are known before the insert (e.g. signed locally).
    pub pay_params: Option<PayParams>,
    /// The merchant's free-form JSON metadata, verbatim.
    pub metadata: Option<String>,
    /// Fingerprint of the create request, so a retry with the same body can be told apart
    /// from a different request reusing the number.
    pub request_hash: String,
    /// When the order was created (UTC).
    pub created_at: DateTime<Utc>,
    /// When it stops being payable (UTC).
    pub expires_at: DateTime<Utc>,
}

/// The optional facts a transition records alongside the new status. `None` leaves a column
/// as it is; nothing here can clear a column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderChanges {
    /// The provider's trade number (`transaction_id` / `trade_no`).
    pub provider_trade_no: Option<String>,
    /// The buyer at the provider.
    pub payer_id: Option<String>,
    /// When the buyer paid.
    pub paid_at: Option<DateTime<Utc>>,
    /// When the order was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// When the reconciler should ask the provider about the order again after this move.
    /// `None` takes it out of the reconciler's queues; a close the provider could not confirm
    /// (it had no trade yet, but the buyer may still open one) sets it so the closed order is
    /// watched until it expires.
    pub query_again_at: Option<DateTime<Utc>>,
}

/// The outcome of a compare-and-set transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The order was in the expected status and has moved; carries the updated order.
    Applied(Order),
    /// Someone else moved the order first; carries the order as it is now. Nothing was written.
    Lost(Order),
}

/// Filters of [`Store::list_orders`]; every `None`/empty field matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderFilter {
    /// Any of these statuses.
    pub statuses: Vec<OrderStatus>,
    /// This provider.
    pub provider: Option<ProviderKind>,
    /// Any of these apps (an API key's scope, or the caller's choice).
    pub apps: Vec<AppName>,
    /// This channel.
    pub channel: Option<Channel>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created before.
    pub created_to: Option<DateTime<Utc>>,
    /// Paid at or after.
    pub paid_from: Option<DateTime<Utc>>,
    /// Paid before.
    pub paid_to: Option<DateTime<Utc>>,
    /// Amount at least.
    pub amount_min: Option<Fen>,
    /// Amount at most.
    pub amount_max: Option<Fen>,
    /// `out_trade_no` is exactly this.
    pub out_trade_no: Option<String>,
    /// `out_trade_no` starts with this (case-sensitive, as the providers treat it).
    pub out_trade_no_prefix: Option<String>,
}

/// One `orders` row as stored.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = orders)]
pub(crate) struct OrderRow {
    pub(crate) id: String,
    provider: String,
    app: String,
    channel: String,
    out_trade_no: String,
    amount: i64,
    currency: String,
    subject: String,
    description: Option<String>,
    status: String,
    provider_trade_no: Option<String>,
    payer_id: Option<String>,
    pay_params: Option<String>,
    refunded_amount: i64,
    metadata: Option<String>,
    pub(crate) request_hash: String,
    created_at: NaiveDateTime,
    paid_at: Option<NaiveDateTime>,
    closed_at: Option<NaiveDateTime>,
    expires_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
    /// When the reconciler may query the order next; a new order is due from its creation
    /// (the reconciler adds `query_pending_after_seconds`).
    next_query_at: Option<NaiveDateTime>,
}

impl OrderRow {
    fn from_new(new: NewOrder, pay_params: Option<String>) -> OrderRow {
        OrderRow {
            id: OrderId::generate().to_string(),
            provider: new.provider.as_str().to_owned(),
            app: new.app.to_string(),
            channel: new.channel.as_str().to_owned(),
            out_trade_no: new.out_trade_no.to_string(),
            amount: new.amount.get(),
            currency: new.currency.code().to_owned(),
            subject: new.subject,
            description: new.description,
            status: OrderStatus::Pending.as_str().to_owned(),
            provider_trade_no: None,
            payer_id: new.payer_id,
            pay_params,
            refunded_amount: 0,
            metadata: new.metadata,
            request_hash: new.request_hash,
            created_at: db_time(new.created_at),
            paid_at: None,
            closed_at: None,
            expires_at: db_time(new.expires_at),
            updated_at: db_now(),
            version: 0,
            next_query_at: Some(db_time(new.created_at)),
        }
    }

    /// Parses the row into the domain order; any unparsable column is a corrupt row.
    pub(crate) fn into_order(self) -> Result<Order, StoreError> {
        let bad = |reason: String| corrupt("orders", &self.id, reason);
        let pay_params = match &self.pay_params {
            Some(json) => Some(
                serde_json::from_str::<PayParams>(json)
                    .map_err(|e| bad(format!("pay_params: {e}")))?,
            ),
            None => None,
        };
        Ok(Order {
            id: OrderId::parse(&self.id).map_err(|e| bad(e.to_string()))?,
            provider: ProviderKind::parse(&self.provider).map_err(|e| bad(e.to_string()))?,
            app: AppName::parse(&self.app).map_err(|e| bad(e.to_string()))?,
            channel: Channel::parse(&self.channel).map_err(|e| bad(e.to_string()))?,
            out_trade_no: OutTradeNo::parse(&self.out_trade_no).map_err(|e| bad(e.to_string()))?,
            amount: fen_column("orders", &self.id, self.amount)?,
            currency: Currency::parse(&self.currency).map_err(|e| bad(e.to_string()))?,
            status: OrderStatus::parse(&self.status).map_err(|e| bad(e.to_string()))?,
            refunded_amount: fen_column("orders", &self.id, self.refunded_amount)?,
            pay_params,
            subject: self.subject,
            description: self.description,
            provider_trade_no: self.provider_trade_no,
            payer_id: self.payer_id,
            metadata: self.metadata,
            created_at: utc(self.created_at),
            paid_at: self.paid_at.map(utc),
            closed_at: self.closed_at.map(utc),
            expires_at: utc(self.expires_at),
            version: self.version,
        })
    }
}

/// The columns a transition may fill in; `None` fields are left out of the `SET`.
#[derive(AsChangeset)]
#[diesel(table_name = orders)]
pub(crate) struct OrderChangesRow {
    pub(crate) provider_trade_no: Option<String>,
    pub(crate) payer_id: Option<String>,
    pub(crate) paid_at: Option<NaiveDateTime>,
    pub(crate) closed_at: Option<NaiveDateTime>,
    // Always written (`Some`): a status move either schedules the next query or clears it.
    pub(crate) next_query_at: Option<Option<NaiveDateTime>>,
}

impl From<OrderChanges> for OrderChangesRow {
    fn from(changes: OrderChanges) -> Self {
        OrderChangesRow {
            provider_trade_no: changes.provider_trade_no,
            payer_id: changes.payer_id,
            paid_at: changes.paid_at.map(db_time),
            closed_at: changes.closed_at.map(db_time),
            next_query_at: Some(changes.query_again_at.map(db_time)),
        }
    }
}

/// Loads one order row, if it exists.
pub(crate) fn find_order_row(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<OrderRow>, StoreError> {
    Ok(orders::table
        .find(id)
        .select(OrderRow::as_select())
        .first(conn)
        .optional()?)
}

/// Loads one order, or `NotFound`.
pub(crate) fn load_order(conn: &mut DbConnection, id: &str) -> Result<Order, StoreError> {
    find_order_row(conn, id)?
        .ok_or_else(|| StoreError::NotFound {
            entity: "order",
            key: id.to_owned(),
        })?
        .into_order()
}

/// The order read by the merchant's number, a hot read (every notify starts with it).
type ByOutTradeNo<'a> = diesel::dsl::Select<
    diesel::dsl::Filter<
        diesel::dsl::Filter<orders::table, diesel::dsl::Eq<orders::app, &'a str>>,
        diesel::dsl::Eq<orders::out_trade_no, &'a str>,
    >,
    diesel::dsl::AsSelect<OrderRow, Db>,
>;

fn by_out_trade_no<'a>(app: &'a str, out_trade_no: &'a str) -> ByOutTradeNo<'a> {
    orders::table
        .filter(orders::app.eq(app))
        .filter(orders::out_trade_no.eq(out_trade_no))
        .select(OrderRow::as_select())
}

fn find_by_out_trade_no(
    conn: &mut DbConnection,
    app: &str,
    out_trade_no: &str,
) -> Result<Option<OrderRow>, StoreError> {
    Ok(by_out_trade_no(app, out_trade_no).first(conn).optional()?)
}

/// Parses loaded rows, failing on the first corrupt one.
pub(crate) fn into_orders(rows: Vec<OrderRow>) -> Result<Vec<Order>, StoreError> {
    rows.into_iter().map(OrderRow::into_order).collect()
}

/// The smallest string greater than every string starting with `prefix`, for a prefix range
/// that uses the index (`LIKE` is case-insensitive on SQLite and needs escaping). `None` when
/// no such bound exists.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn filtered(filter: &OrderFilter) -> orders::BoxedQuery<'static, Db> {
    let mut query = orders::table.into_boxed::<Db>();
    if !filter.statuses.is_empty() {
        let names: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query = query.filter(orders::status.eq_any(names));
    }
    if let Some(provider) = filter.provider {
        query = query.filter(orders::provider.eq(provider.as_str().to_owned()));
    }
    if !filter.apps.is_empty() {
        let apps: Vec<String> = filter.apps.iter().map(|a| a.to_string()).collect();
        query = query.filter(orders::app.eq_any(apps));
    }
    if let Some(channel) = filter.channel {
        query = query.filter(orders::channel.eq(channel.as_str()));
    }
    if let Some(out_trade_no) = &filter.out_trade_no {
        query = query.filter(orders::out_trade_no.eq(out_trade_no.clone()));
    }
    if let Some(from) = filter.created_from {
        query = query.filter(orders::created_at.ge(db_time(from)));
    }
    if let Some(to) = filter.created_to {
        query = query.filter(orders::created_at.lt(db_time(to)));
    }
    if let Some(from) = filter.paid_from {
        query = query.filter(orders::paid_at.ge(db_time(from)));
    }
    if let Some(to) = filter.paid_to {
        query = query.filter(orders::paid_at.lt(db_time(to)));
    }
    if let Some(min) = filter.amount_min {
        query = query.filter(orders::amount.ge(min.get()));
    }
    if let Some(max) = filter.amount_max {
        query = query.filter(orders::amount.le(max.get()));
    }
    if let Some(prefix) = filter
        .out_trade_no_prefix
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        query = query.filter(orders::out_trade_no.ge(prefix.to_owned()));
        if let Some(upper) = prefix_upper_bound(prefix) {
            query = query.filter(orders::out_trade_no.lt(upper));
        }
    }
    query
}

impl Store {
    /// Inserts a new pending order. A second order with the same `(app, out_trade_no)` fails
    /// with [`StoreError::DuplicateOrder`] carrying the existing order, even under a race.
    pub async fn insert_order(&self, new: NewOrder) -> Result<Order, StoreError> {
        let pay_params = new
            .pay_params
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                table: "orders",
                id: new.out_trade_no.to_string(),
                reason: format!("pay_params do not serialise: {e}"),
            })?;
        let row = OrderRow::from_new(new, pay_params);
        let number = LockKey::OrderNumber {
            app: row.app.clone(),
            out_trade_no: row.out_trade_no.clone(),
        };
        self.write_rerunnable(number, move |conn| {
            // `ON CONFLICT DO NOTHING`, not a caught unique violation: on PostgreSQL a failed
            // statement aborts its transaction, so catching one would take a savepoint of its
            // own, one more subtransaction in the writer's batch (see `writer.rs`).
            let inserted = on_backend!(conn, inner => diesel::insert_into(orders::table)
                .values(&row)
                .on_conflict((orders::app, orders::out_trade_no))
                .do_nothing()
                .execute(inner)?);
            if inserted == 1 {
                return row.clone().into_order();
            }
            let existing =
                find_by_out_trade_no(conn, &row.app, &row.out_trade_no)?.ok_or_else(|| {
                    StoreError::NotFound {
                        entity: "order",
                        key: format!("{}/{}", row.app, row.out_trade_no),
                    }
                })?;
            Err(StoreError::DuplicateOrder {
                request_hash: existing.request_hash.clone(),
                existing: Box::new(existing.into_order()?),
            })
        })
        .await
    }

    /// One order by paygate's id.
    pub async fn order(&self, id: &OrderId) -> Result<Order, StoreError> {
        let id = id.to_string();
        self.read(move |conn| load_order(conn, &id)).await
    }

    /// One order by the merchant's number within an app.
    pub async fn order_by_out_trade_no(
        &self,
        app: &AppName,
        out_trade_no: &OutTradeNo,
    ) -> Result<Order, StoreError> {
        let (app, out_trade_no) = (app.to_string(), out_trade_no.to_string());
        self.read(move |conn| {
            find_by_out_trade_no(conn, &app, &out_trade_no)?
                .ok_or_else(|| StoreError::NotFound {
                    entity: "order",
                    key: format!("{app}/{out_trade_no}"),
                })?
                .into_order()
        })
        .await
    }

    /// A newest-first page of orders matching `filter`, starting after `cursor`. Keyset
    /// pagination on the id (a ULID, so creation order): no gaps or repeats while rows are
    /// inserted between pages.
    pub async fn list_orders(
        &self,
        filter: &OrderFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Order>, StoreError> {
        let mut query = filtered(filter);
        if let Some(cursor) = cursor {
            query = query.filter(orders::id.lt(cursor.as_str().to_owned()));
        }
        let query = query
            .order(orders::id.desc())
            .limit(crate::page_fetch(limit))
            .select(OrderRow::as_select());
        self.run(move |conn| {
            let orders = into_orders(query.load(conn)?)?;
            Ok(Page::from_fetched(orders, limit, |o| o.id.as_str()))
        })
        .await
    }

    /// Stores the pay params the provider issued for a still-pending order (and its trade
    /// number when creation already revealed it), so an idempotent retry can serve them again.
    pub async fn set_pay_params(
        &self,
        id: &OrderId,
        pay_params: &PayParams,
        provider_trade_no: Option<String>,
    ) -> Result<Order, StoreError> {
        let locks = LockKey::Order(id.clone());
        let id = id.to_string();
        let json = serde_json::to_string(pay_params).map_err(|e| StoreError::Corrupt {
            table: "orders",
            id: id.clone(),
            reason: format!("pay_params do not serialise: {e}"),
        })?;
        // `UPDATE … RETURNING`: the stored order in the same round trip as the update.
        self.write_rerunnable(locks, move |conn| {
            let pending = OrderStatus::Pending.as_str();
            let changes = OrderChangesRow {
                provider_trade_no: provider_trade_no.clone(),
                ..OrderChangesRow::none()
            };
            let updated = diesel::update(
                orders::table
                    .filter(orders::id.eq(&id))
                    .filter(orders::status.eq(pending)),
            )
            .set((
                orders::pay_params.eq(Some(json.as_str())),
                orders::updated_at.eq(db_now()),
                orders::version.eq(orders::version + 1),
                &changes,
            ))
            .returning(order_columns!())
            .get_result::<OrderRow>(conn)
            .optional()?;
            match updated {
                Some(row) => row.into_order(),
                None => Err(StoreError::StaleStatus {
                    expected: OrderStatus::Pending,
                    actual: load_order(conn, &id)?.status,
                }),
            }
        })
        .await
    }

    /// The only way an order's status changes. Computes the next status from
    /// `expected.apply(event)` (an illegal move is an error before any I/O), then runs
    /// `UPDATE orders SET status = next, … WHERE id = ? AND status = expected` and, in the same
    /// transaction and only if that update won, inserts `outbox`.
    pub async fn transition_order(
        &self,
        id: &OrderId,
        expected: OrderStatus,
        event: OrderEvent,
        changes: OrderChanges,
        outbox: Option<NewOutboxEvent>,
    ) -> Result<Transition, StoreError> {
        self.transition_order_for_callback(id, expected, event, changes, outbox, None)
            .await
    }

    /// [`Store::transition_order`] for a provider callback: when the transition wins, the
    /// callback that caused it is stored with its verdict in the same transaction, so a notify
    /// costs one write. When it loses, nothing of the callback is stored and the caller records
    /// it with the verdict the lost race calls for.
    pub async fn transition_order_for_callback(
        &self,
        id: &OrderId,
        expected: OrderStatus,
        event: OrderEvent,
        changes: OrderChanges,
        outbox: Option<NewOutboxEvent>,
        callback: Option<JudgedCallback>,
    ) -> Result<Transition, StoreError> {
        // Built here, on the caller's thread: the writer thread is the serial part.
        let callback = callback.map(CallbackRow::from);
        let outbox = outbox.map(|event| new_outbox_row(&event).1);
        let next = expected.apply(event)?;
        let locks = LockKey::Order(id.clone());
        let id = id.to_string();
        let changes = OrderChangesRow::from(changes);
        self.write_rerunnable(locks, move |conn| {
            if let DbConnection::Pg(pg) = conn {
                let moved = transition_in_one_statement(
                    pg,
                    &id,
                    (expected, next),
                    &changes,
                    outbox.as_ref(),
                    callback.as_ref(),
                )?;
                return match moved {
                    Some(current) => Ok(Transition::Applied(current)),
                    None => Ok(Transition::Lost(load_order(conn, &id)?)),
                };
            }
            let Some(current) = cas_status(conn, &id, expected, next, &changes)? else {
                return Ok(Transition::Lost(load_order(conn, &id)?));
            };
            if let Some(event) = &outbox {
                insert_outbox_row(conn, event)?;
            }
            if let Some(callback) = &callback {
                insert_callback(conn, callback)?;
            }
            Ok(Transition::Applied(current))
        })
        .await
    }

    /// Pending orders created before `before`, oldest first, for the reconciler to query.
    pub async fn pending_orders_older_than(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let query = orders::table
            .filter(orders::status.eq(OrderStatus::Pending.as_str()))
            .filter(orders::created_at.lt(db_time(before)))
            .order((orders::created_at.asc(), orders::id.asc()))
            .limit(i64::from(limit))
            .select(OrderRow::as_select());
        self.run(move |conn| into_orders(query.load(conn)?)).await
    }
}

/// `UPDATE orders SET status = next … WHERE id = ? AND status = expected RETURNING *`: the
/// updated order when it won, `None` when the status had moved on. One statement on the
/// winning path instead of an update and a read.
pub(crate) fn cas_status(
    conn: &mut DbConnection,
    id: &str,
    expected: OrderStatus,
    next: OrderStatus,
    changes: &OrderChangesRow,
) -> Result<Option<Order>, StoreError> {
    let update = CasUpdate::new(id, (expected, next), db_now(), changes);
    let updated: Option<OrderRow> =
        on_backend!(conn, inner => update.get_result::<OrderRow>(inner).optional()?);
    updated.map(OrderRow::into_order).transpose()
}

/// The compare-and-set of a status move as one statement text whatever the changes carry
/// (`COALESCE` keeps a column an absent change leaves alone, a flag says whether the query
/// schedule is written), with a static query id: each connection prepares it once. Diesel's
/// own `UPDATE … SET <changeset>` varies with the changeset and is never cached, so SQLite
/// parsed and planned it again on every notify (docs/performance.md §5).
struct CasUpdate<'a> {
    id: &'a str,
    expected: &'a str,
    next: &'a str,
    now: NaiveDateTime,
    changes: &'a OrderChangesRow,
    /// Whether `next_query_at` is written, and its new value.
    next_query_set: bool,
    next_query_at: Option<NaiveDateTime>,
}

impl<'a> CasUpdate<'a> {
    fn new(
        id: &'a str,
        (expected, next): (OrderStatus, OrderStatus),
        now: NaiveDateTime,
        changes: &'a OrderChangesRow,
    ) -> Self {
        CasUpdate {
            id,
            expected: expected.as_str(),
            next: next.as_str(),
            now,
            changes,
            next_query_set: changes.next_query_at.is_some(),
            next_query_at: changes.next_query_at.flatten(),
        }
    }
}

impl diesel::query_builder::QueryId for CasUpdate<'_> {
    type QueryId = CasUpdate<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for CasUpdate<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<C: diesel::Connection> RunQueryDsl<C> for CasUpdate<'_> {}

impl<DB> diesel::query_builder::QueryFragment<DB> for CasUpdate<'_>
where
    DB: diesel::backend::Backend,
    DB: diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Timestamp>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Bool>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    NaiveDateTime: diesel::serialize::ToSql<diesel::sql_types::Timestamp, DB>,
    bool: diesel::serialize::ToSql<diesel::sql_types::Bool, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Bool, Nullable, Text, Timestamp};
        let changes = self.changes;
        out.push_sql("UPDATE orders SET status = ");
        out.push_bind_param::<Text, _>(self.next)?;
        out.push_sql(", updated_at = ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(", version = version + 1, provider_trade_no = COALESCE(");
        out.push_bind_param::<Nullable<Text>, _>(&changes.provider_trade_no)?;
        out.push_sql(", provider_trade_no), payer_id = COALESCE(");
        out.push_bind_param::<Nullable<Text>, _>(&changes.payer_id)?;
        out.push_sql(", payer_id), paid_at = COALESCE(");
        out.push_bind_param::<Nullable<Timestamp>, _>(&changes.paid_at)?;
        out.push_sql(", paid_at), closed_at = COALESCE(");
        out.push_bind_param::<Nullable<Timestamp>, _>(&changes.closed_at)?;
        out.push_sql(", closed_at), next_query_at = CASE WHEN ");
        out.push_bind_param::<Bool, _>(&self.next_query_set)?;
        out.push_sql(" THEN ");
        out.push_bind_param::<Nullable<Timestamp>, _>(&self.next_query_at)?;
        out.push_sql(" ELSE next_query_at END WHERE id = ");
        out.push_bind_param::<Text, _>(self.id)?;
        out.push_sql(" AND status = ");
        out.push_bind_param::<Text, _>(self.expected)?;
        out.push_sql(" RETURNING *");
        Ok(())
    }
}

/// The compare-and-set of [`cas_status`], the outbox event it raises and the callback that
/// caused it, as one PostgreSQL statement: the two inserts read the updated row, so they
/// happen exactly when the update won, and the winning path of a notify is one round trip
/// instead of three. Data-modifying `WITH` is PostgreSQL's; SQLite runs the three statements
/// in process.
///
/// A query type of its own rather than `sql_query`, which diesel never caches: with a static
/// query id, each connection prepares it once and PostgreSQL plans it once, instead of parsing
/// and planning the statement on every notify. The `… IS TRUE` guards keep one statement text
/// whether or not an event or a callback comes along.
struct TransitionInOneStatement<'a> {
    /// The compare-and-set, the statement's first part.
    cas: CasUpdate<'a>,
    has_event: bool,
    event: Option<&'a OutboxRow>,
    has_callback: bool,
    callback: Option<&'a CallbackRow>,
}

/// What the absent event's or callback's text binds carry (the `IS TRUE` guard drops them).
static NO_TEXT: String = String::new();
/// What the absent event's or callback's nullable text binds carry.
static NO_NULLABLE_TEXT: Option<String> = None;
/// What the absent callback's body bind carries.
static NO_BYTES: Vec<u8> = Vec::new();

impl diesel::query_builder::QueryId for TransitionInOneStatement<'_> {
    type QueryId = TransitionInOneStatement<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for TransitionInOneStatement<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<diesel::PgConnection> for TransitionInOneStatement<'_> {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for TransitionInOneStatement<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Binary, Bool, Nullable, Text, Timestamp};
        let event = self.event;
        let callback = self.callback;
        let now = &self.cas.now;
        out.push_sql("WITH moved AS (");
        self.cas.walk_ast(out.reborrow())?;
        out.push_sql("), event AS (INSERT INTO outbox_events (id, kind, order_id, ");
        out.push_sql("refund_id, payload, created_at, delivered_at, attempts, next_attempt_at, ");
        out.push_sql("last_error, delivery_round) SELECT ");
        out.push_bind_param::<Text, _>(event.map_or(&NO_TEXT, |e| &e.id))?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(event.map_or(&NO_TEXT, |e| &e.kind))?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(event.map_or(&NO_TEXT, |e| &e.order_id))?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(
            event.map_or(&NO_NULLABLE_TEXT, |e| &e.refund_id),
        )?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(event.map_or(&NO_TEXT, |e| &e.payload))?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(event.map_or(now, |e| &e.created_at))?;
        out.push_sql(", NULL, 0, ");
        out.push_bind_param::<Timestamp, _>(event.map_or(now, |e| &e.next_attempt_at))?;
        out.push_sql(", NULL, 0 FROM moved WHERE ");
        out.push_bind_param::<Bool, _>(&self.has_event)?;
        out.push_sql(" IS TRUE), callback AS (INSERT INTO callbacks (id, provider, app, kind, ");
        out.push_sql("received_at, body, content_type, verdict, reason, order_id) SELECT ");
        out.push_bind_param::<Text, _>(callback.map_or(&NO_TEXT, |c| &c.id))?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(callback.map_or(&NO_TEXT, |c| &c.provider))?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(callback.map_or(&NO_TEXT, |c| &c.app))?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(callback.map_or(&NO_TEXT, |c| &c.kind))?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(callback.map_or(now, |c| &c.received_at))?;
        out.push_sql(", ");
        out.push_bind_param::<Binary, _>(callback.map_or(&NO_BYTES, |c| &c.body))?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(
            callback.map_or(&NO_NULLABLE_TEXT, |c| &c.content_type),
        )?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(callback.map_or(&NO_TEXT, |c| &c.verdict))?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(
            callback.map_or(&NO_NULLABLE_TEXT, |c| &c.reason),
        )?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(
            callback.map_or(&NO_NULLABLE_TEXT, |c| &c.order_id),
        )?;
        out.push_sql(" FROM moved WHERE ");
        out.push_bind_param::<Bool, _>(&self.has_callback)?;
        out.push_sql(" IS TRUE) SELECT * FROM moved");
        Ok(())
    }
}

/// Runs [`TransitionInOneStatement`]: the updated order when the compare-and-set won, `None`
/// when the status had moved on (then nothing was inserted).
fn transition_in_one_statement(
    conn: &mut diesel::PgConnection,
    id: &str,
    (expected, next): (OrderStatus, OrderStatus),
    changes: &OrderChangesRow,
    event: Option<&OutboxRow>,
    callback: Option<&CallbackRow>,
) -> Result<Option<Order>, StoreError> {
    let statement = TransitionInOneStatement {
        cas: CasUpdate::new(id, (expected, next), db_now(), changes),
        has_event: event.is_some(),
        event,
        has_callback: callback.is_some(),
        callback,
    };
    statement
        .get_result::<OrderRow>(conn)
        .optional()?
        .map(OrderRow::into_order)
        .transpose()
}

impl OrderChangesRow {
    /// No column changes besides the status, the query schedule included (a pending order
    /// keeps its place in the reconciler's queue).
    pub(crate) fn none() -> OrderChangesRow {
        OrderChangesRow {
            provider_trade_no: None,
            payer_id: None,
            paid_at: None,
            closed_at: None,
            next_query_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::query_builder::QueryId;

    use super::*;

    fn static_query_id<Q: QueryId>(_: &Q) -> Option<std::any::TypeId> {
        Q::query_id()
    }

    #[test]
    fn the_read_by_out_trade_no_is_found_in_the_statement_cache_by_type() {
        // `.first()` is `.limit(1)`: the statement a notify's read sends. With a static query
        // id diesel finds the prepared statement by type, without building its SQL first.
        let read = by_out_trade_no("shop", "o_1").limit(1);
        assert!(static_query_id(&read).is_some());
    }
}
