//! The hot inserts as statements whose text never varies, each with a static query id.
//!
//! Why: diesel's `insert_into(table).values(&row)` has no static query id when the row has
//! optional columns (an absent one changes the text), so diesel builds the statement's SQL on
//! every call just to look it up in the connection's statement cache. On SQLite that happens on
//! the writer thread, the serial part of every notify (docs/performance.md §5). These bind
//! every column, `NULL` included, so each connection prepares them once and finds them again
//! by type.

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Binary, HasSqlType, Nullable, Text, Timestamp};

use crate::callbacks::CallbackRow;
use crate::outbox::OutboxRow;

/// `INSERT INTO outbox_events` of one event row, every column bound.
pub(crate) struct InsertOutboxRow<'a>(pub(crate) &'a OutboxRow);

/// `INSERT INTO callbacks` of one stored callback, every column bound.
pub(crate) struct InsertCallbackRow<'a>(pub(crate) &'a CallbackRow);

impl QueryId for InsertOutboxRow<'_> {
    type QueryId = InsertOutboxRow<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryId for InsertCallbackRow<'_> {
    type QueryId = InsertCallbackRow<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<C: diesel::Connection> diesel::RunQueryDsl<C> for InsertOutboxRow<'_> {}

impl<C: diesel::Connection> diesel::RunQueryDsl<C> for InsertCallbackRow<'_> {}

/// Pushes `, ?` binds after the first, so a column list and its values read side by side.
macro_rules! push_values {
    ($out:ident, $first_type:ty => $first:expr $(, $sql_type:ty => $value:expr)* $(,)?) => {{
        $out.push_bind_param::<$first_type, _>($first)?;
        $(
            $out.push_sql(", ");
            $out.push_bind_param::<$sql_type, _>($value)?;
        )*
    }};
}

impl<DB> QueryFragment<DB> for InsertOutboxRow<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<Timestamp> + HasSqlType<BigInt>,
    String: ToSql<Text, DB>,
    chrono::NaiveDateTime: ToSql<Timestamp, DB>,
    i64: ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let row = self.0;
        out.push_sql(
            "INSERT INTO outbox_events (id, kind, order_id, refund_id, payload, created_at, \
             delivered_at, attempts, next_attempt_at, last_error, delivery_round) VALUES (",
        );
        push_values!(out,
            Text => &row.id,
            Text => &row.kind,
            Text => &row.order_id,
            Nullable<Text> => &row.refund_id,
            Text => &row.payload,
            Timestamp => &row.created_at,
            Nullable<Timestamp> => &row.delivered_at,
            BigInt => &row.attempts,
            Timestamp => &row.next_attempt_at,
            Nullable<Text> => &row.last_error,
            BigInt => &row.delivery_round,
        );
        out.push_sql(")");
        Ok(())
    }
}

impl<DB> QueryFragment<DB> for InsertCallbackRow<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<Timestamp> + HasSqlType<Binary>,
    String: ToSql<Text, DB>,
    chrono::NaiveDateTime: ToSql<Timestamp, DB>,
    Vec<u8>: ToSql<Binary, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let row = self.0;
        out.push_sql(
            "INSERT INTO callbacks (id, provider, app, kind, received_at, body, content_type, \
             verdict, reason, order_id) VALUES (",
        );
        push_values!(out,
            Text => &row.id,
            Text => &row.provider,
            Text => &row.app,
            Text => &row.kind,
            Timestamp => &row.received_at,
            Binary => &row.body,
            Nullable<Text> => &row.content_type,
            Text => &row.verdict,
            Nullable<Text> => &row.reason,
            Nullable<Text> => &row.order_id,
        );
        out.push_sql(")");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use diesel::query_builder::QueryId;
    use diesel::sqlite::Sqlite;
    use diesel::{QueryDsl, SelectableHelper};

    use super::*;
    use crate::schema::{callbacks, outbox_events};

    /// The column names of a statement's first parenthesised list, or of a `SELECT`'s list.
    fn columns(sql: &str) -> Vec<String> {
        let list = match sql.split_once('(') {
            Some((_, rest)) if sql.starts_with("INSERT") => rest.split(')').next().unwrap_or(""),
            _ => sql
                .trim_start_matches("SELECT ")
                .split(" FROM")
                .next()
                .unwrap_or(""),
        };
        list.split(',')
            .map(|column| {
                let name = column.trim().rsplit('.').next().unwrap_or("");
                name.trim_matches('`').to_owned()
            })
            .collect()
    }

    fn outbox_row() -> OutboxRow {
        let event = crate::NewOutboxEvent {
            kind: crate::EventKind::OrderPaid,
            order_id: paygate_core::OrderId::generate(),
            refund_id: None,
            payload: serde_json::json!({}),
        };
        crate::outbox::new_outbox_row(&event).1
    }

    #[test]
    fn the_hot_inserts_have_static_query_ids_so_each_connection_prepares_them_once() {
        assert!(InsertOutboxRow::query_id().is_some());
        assert!(InsertCallbackRow::query_id().is_some());
    }

    #[test]
    fn the_hot_inserts_write_every_column_of_their_tables_in_order() {
        let row = outbox_row();
        let insert = diesel::debug_query::<Sqlite, _>(&InsertOutboxRow(&row)).to_string();
        let select = outbox_events::table.select(OutboxRow::as_select());
        let select = diesel::debug_query::<Sqlite, _>(&select).to_string();
        assert_eq!(columns(&insert), columns(&select), "{insert}");
        assert_eq!(insert.matches('?').count(), columns(&select).len());

        let callback = CallbackRow {
            id: "c".into(),
            provider: "alipay".into(),
            app: "shop".into(),
            kind: "payment".into(),
            received_at: row.created_at,
            body: Vec::new(),
            content_type: None,
            verdict: "accepted".into(),
            reason: None,
            order_id: None,
        };
        let insert = diesel::debug_query::<Sqlite, _>(&InsertCallbackRow(&callback)).to_string();
        let select = callbacks::table.select(CallbackRow::as_select());
        let select = diesel::debug_query::<Sqlite, _>(&select).to_string();
        assert_eq!(columns(&insert), columns(&select), "{insert}");
        assert_eq!(insert.matches('?').count(), columns(&select).len());
    }
}
