//! The audit trail: every raw provider callback with its verdict, and the anomalies finance
//! must look at.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::{OrderId, ProviderKind};
use sha2::{Digest, Sha256};

use crate::schema::{anomalies, callbacks};
use crate::text::text_enum;
use crate::{
    AnomalyId, CallbackId, Cursor, LockKey, Page, Store, StoreError, corrupt, db_time, utc,
};

text_enum!(
    /// Which notify endpoint received the callback.
    CallbackKind {
        /// A payment (trade status) notify.
        Payment => "payment",
        /// A refund result notify.
        Refund => "refund",
    }
);

text_enum!(
    /// What paygate made of a callback.
    CallbackVerdict {
        /// Stored before it was judged: rows written before callbacks were stored together
        /// with their verdict. Nothing writes it any more; it is kept so those rows still read.
        Received => "received",
        /// Verified and applied.
        Accepted => "accepted",
        /// Verified, and it reported what was already recorded.
        Duplicate => "duplicate",
        /// The signature did not verify.
        BadSignature => "bad_signature",
        /// Not a well-formed callback.
        Malformed => "malformed",
        /// The body exceeded the size limit.
        TooLarge => "too_large",
        /// Verified, but its facts contradict the order (amount, app id, …).
        Mismatch => "mismatch",
        /// Verified, but no such order exists.
        UnknownOrder => "unknown_order",
        /// Processing failed on paygate's side (the provider will retry).
        Error => "error",
    }
);

impl CallbackVerdict {
    /// Whether the callback was refused before anything in it could be trusted: a bad
    /// signature, a malformed or an oversized body. Anyone can send those, so only a bounded
    /// part of their body is kept.
    pub const fn is_unverified(self) -> bool {
        matches!(
            self,
            CallbackVerdict::BadSignature | CallbackVerdict::Malformed | CallbackVerdict::TooLarge
        )
    }
}

/// How much of an unverified callback's body is stored; the rest is summed up by its length
/// and SHA-256 in the row's reason. Genuine provider notifies are 1–3 KiB and kept whole even
/// when their signature fails (a key mix-up), so forensics rarely miss anything.
pub const UNVERIFIED_BODY_KEPT_BYTES: usize = 2048;

text_enum!(
    /// What kind of anomaly finance is looking at.
    AnomalyKind {
        /// A verified callback or query whose facts contradict the order.
        PaymentMismatch => "payment_mismatch",
        /// Money arrived for an order already closed locally.
        LatePayment => "late_payment",
        /// A verified callback for an order paygate does not have.
        UnknownOrder => "unknown_order",
        /// A refund the provider refused or closed.
        RefundFailed => "refund_failed",
        /// The provider and paygate disagree about a trade's state.
        StateDisagreement => "state_disagreement",
        /// A pending order of a provider app no longer configured: paygate can neither query
        /// nor close it, so the reconciler parks it (reported once) until the app returns.
        AppUnconfigured => "app_unconfigured",
    }
);

/// A raw callback as it arrived, before anything is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallback {
    /// The provider of the endpoint it reached.
    pub provider: ProviderKind,
    /// The app named in the endpoint's URL, as received (it may not be configured).
    pub app: String,
    /// Which endpoint.
    pub kind: CallbackKind,
    /// When it arrived (UTC).
    pub received_at: DateTime<Utc>,
    /// The exact body bytes.
    pub body: Vec<u8>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
}

/// A callback already judged: verified (or refused) before anything was stored, and written
/// with its verdict in one statement, in the same transaction as what it caused when it caused
/// something. Its id is chosen by the caller so an anomaly can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgedCallback {
    /// The id the row gets.
    pub id: CallbackId,
    /// The raw callback.
    pub callback: NewCallback,
    /// What paygate made of it.
    pub verdict: CallbackVerdict,
    /// Why, in words.
    pub reason: Option<String>,
    /// The order it was matched to.
    pub order_id: Option<OrderId>,
}

/// A recorded callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// Its id.
    pub id: CallbackId,
    /// The provider of the endpoint it reached.
    pub provider: ProviderKind,
    /// The app named in the endpoint's URL.
    pub app: String,
    /// Which endpoint.
    pub kind: CallbackKind,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The exact body bytes.
    pub body: Vec<u8>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// What paygate made of it.
    pub verdict: CallbackVerdict,
    /// Why, in words.
    pub reason: Option<String>,
    /// The order it was matched to.
    pub order_id: Option<OrderId>,
}

/// Something finance should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnomaly {
    /// The order concerned, if known.
    pub order_id: Option<OrderId>,
    /// The provider concerned.
    pub provider: ProviderKind,
    /// The app concerned.
    pub app: String,
    /// What kind of anomaly.
    pub kind: AnomalyKind,
    /// A human-readable account.
    pub detail: String,
    /// The callback that revealed it, if any.
    pub callback_id: Option<CallbackId>,
    /// When it was found (UTC).
    pub created_at: DateTime<Utc>,
}

/// A recorded anomaly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// Its id.
    pub id: AnomalyId,
    /// The order concerned.
    pub order_id: Option<OrderId>,
    /// The provider concerned.
    pub provider: ProviderKind,
    /// The app concerned.
    pub app: String,
    /// What kind of anomaly.
    pub kind: AnomalyKind,
    /// A human-readable account.
    pub detail: String,
    /// The callback that revealed it.
    pub callback_id: Option<CallbackId>,
    /// When it was found.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = callbacks)]
pub(crate) struct CallbackRow {
    pub(crate) id: String,
    pub(crate) provider: String,
    pub(crate) app: String,
    pub(crate) kind: String,
    pub(crate) received_at: NaiveDateTime,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<String>,
    pub(crate) verdict: String,
    pub(crate) reason: Option<String>,
    pub(crate) order_id: Option<String>,
}

impl CallbackRow {
    fn into_callback(self) -> Result<Callback, StoreError> {
        let bad = |reason: String| corrupt("callbacks", &self.id, reason);
        Ok(Callback {
            id: CallbackId::parse(&self.id).map_err(|e| bad(e.to_string()))?,
            provider: ProviderKind::parse(&self.provider).map_err(|e| bad(e.to_string()))?,
            kind: CallbackKind::parse(&self.kind)
                .ok_or_else(|| bad(format!("unknown kind {:?}", self.kind)))?,
            verdict: CallbackVerdict::parse(&self.verdict)
                .ok_or_else(|| bad(format!("unknown verdict {:?}", self.verdict)))?,
            order_id: parse_order_id(self.order_id.as_deref()).map_err(bad)?,
            app: self.app,
            received_at: utc(self.received_at),
            body: self.body,
            content_type: self.content_type,
            reason: self.reason,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = anomalies)]
struct AnomalyRow {
    id: String,
    order_id: Option<String>,
    provider: String,
    app: String,
    kind: String,
    detail: String,
    callback_id: Option<String>,
    created_at: NaiveDateTime,
}

impl AnomalyRow {
    fn into_anomaly(self) -> Result<Anomaly, StoreError> {
        let bad = |reason: String| corrupt("anomalies", &self.id, reason);
        Ok(Anomaly {
            id: AnomalyId::parse(&self.id).map_err(|e| bad(e.to_string()))?,
            order_id: parse_order_id(self.order_id.as_deref()).map_err(bad)?,
            provider: ProviderKind::parse(&self.provider).map_err(|e| bad(e.to_string()))?,
            kind: AnomalyKind::parse(&self.kind)
                .ok_or_else(|| bad(format!("unknown kind {:?}", self.kind)))?,
            callback_id: self
                .callback_id
                .as_deref()
                .map(CallbackId::parse)
                .transpose()
                .map_err(|e| bad(e.to_string()))?,
            app: self.app,
            detail: self.detail,
            created_at: utc(self.created_at),
        })
    }
}

impl From<JudgedCallback> for CallbackRow {
    fn from(judged: JudgedCallback) -> CallbackRow {
        let JudgedCallback {
            id,
            callback,
            verdict,
            reason,
            order_id,
        } = judged;
        let (body, reason) = if verdict.is_unverified() {
            bounded_body(callback.body, reason)
        } else {
            (callback.body, reason)
        };
        CallbackRow {
            id: id.to_string(),
            provider: callback.provider.as_str().to_owned(),
            app: callback.app,
            kind: callback.kind.as_str().to_owned(),
            received_at: db_time(callback.received_at),
            body,
            content_type: callback.content_type,
            verdict: verdict.as_str().to_owned(),
            reason,
            order_id: order_id.map(|o| o.to_string()),
        }
    }
}

/// Keeps the first [`UNVERIFIED_BODY_KEPT_BYTES`] of a body and notes its full length and
/// SHA-256 in the reason, so a stored prefix can still be matched with the original.
fn bounded_body(mut body: Vec<u8>, reason: Option<String>) -> (Vec<u8>, Option<String>) {
    if body.len() <= UNVERIFIED_BODY_KEPT_BYTES {
        return (body, reason);
    }
    let note = format!(
        "body of {} bytes, sha256 {}; first {UNVERIFIED_BODY_KEPT_BYTES} bytes kept",
        body.len(),
        hex::encode(Sha256::digest(&body))
    );
    body.truncate(UNVERIFIED_BODY_KEPT_BYTES);
    let reason = match reason {
        Some(reason) => format!("{reason}; {note}"),
        None => note,
    };
    (body, Some(reason))
}

/// Inserts a callback row; shared by the standalone and the transition-bound paths.
pub(crate) fn insert_callback(
    conn: &mut crate::DbConnection,
    row: &CallbackRow,
) -> Result<(), StoreError> {
    crate::prepared::InsertCallbackRow(row).execute(conn)?;
    Ok(())
}

fn parse_order_id(text: Option<&str>) -> Result<Option<OrderId>, String> {
    text.map(OrderId::parse)
        .transpose()
        .map_err(|e| e.to_string())
}

impl Store {
    /// Stores a callback together with its verdict, in one write.
    pub async fn record_judged_callback(
        &self,
        judged: JudgedCallback,
    ) -> Result<CallbackId, StoreError> {
        let id = judged.id.clone();
        let row = CallbackRow::from(judged);
        self.write_rerunnable(LockKey::NewRows, move |conn| {
            insert_callback(conn, &row).map(|()| id.clone())
        })
        .await
    }

    /// Every callback matched to an order, oldest first.
    pub async fn callbacks_for_order(
        &self,
        order_id: &OrderId,
    ) -> Result<Vec<Callback>, StoreError> {
        let query = callbacks::table
            .filter(callbacks::order_id.eq(order_id.to_string()))
            .order(callbacks::id.asc())
            .select(CallbackRow::as_select());
        self.run(move |conn| {
            let rows: Vec<CallbackRow> = query.load(conn)?;
            rows.into_iter().map(CallbackRow::into_callback).collect()
        })
        .await
    }

    /// Records an anomaly for finance.
    pub async fn record_anomaly(&self, new: NewAnomaly) -> Result<AnomalyId, StoreError> {
        let id = AnomalyId::generate();
        let row = AnomalyRow {
            id: id.to_string(),
            order_id: new.order_id.map(|o| o.to_string()),
            provider: new.provider.as_str().to_owned(),
            app: new.app,
            kind: new.kind.as_str().to_owned(),
            detail: new.detail,
            callback_id: new.callback_id.map(|c| c.to_string()),
            created_at: db_time(new.created_at),
        };
        self.write(LockKey::NewRows, move |conn| {
            diesel::insert_into(anomalies::table)
                .values(&row)
                .execute(conn)?;
            Ok(id)
        })
        .await
    }

    /// A newest-first page of anomalies.
    pub async fn list_anomalies(
        &self,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<Anomaly>, StoreError> {
        let mut query = anomalies::table
            .select(AnomalyRow::as_select())
            .into_boxed::<crate::conn::Db>();
        if let Some(cursor) = cursor {
            query = query.filter(anomalies::id.lt(cursor.as_str().to_owned()));
        }
        let query = query
            .order(anomalies::id.desc())
            .limit(crate::page_fetch(limit));
        self.run(move |conn| {
            let rows: Vec<AnomalyRow> = query.load(conn)?;
            let items = rows
                .into_iter()
                .map(AnomalyRow::into_anomaly)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_fetched(items, limit, |a| a.id.as_str()))
        })
        .await
    }
}
