//! The one schema for both backends. Only portable types: `Text` ids, `BigInt` fen, UTC
//! `Timestamp` (no time zone), `Binary` for raw callback bodies.

#![allow(missing_docs)]

diesel::table! {
    orders (id) {
        id -> Text,
        provider -> Text,
        app -> Text,
        channel -> Text,
        out_trade_no -> Text,
        amount -> BigInt,
        currency -> Text,
        subject -> Text,
        description -> Nullable<Text>,
        status -> Text,
        provider_trade_no -> Nullable<Text>,
        payer_id -> Nullable<Text>,
        pay_params -> Nullable<Text>,
        refunded_amount -> BigInt,
        metadata -> Nullable<Text>,
        request_hash -> Text,
        created_at -> Timestamp,
        paid_at -> Nullable<Timestamp>,
        closed_at -> Nullable<Timestamp>,
        expires_at -> Timestamp,
        updated_at -> Timestamp,
        version -> BigInt,
        next_query_at -> Nullable<Timestamp>,
        query_attempts -> BigInt,
    }
}

diesel::table! {
    refunds (id) {
        id -> Text,
        order_id -> Text,
        out_refund_no -> Text,
        amount -> BigInt,
        reason -> Nullable<Text>,
        status -> Text,
        provider_refund_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        succeeded_at -> Nullable<Timestamp>,
        version -> BigInt,
    }
}

diesel::table! {
    callbacks (id) {
        id -> Text,
        provider -> Text,
        app -> Text,
        kind -> Text,
        received_at -> Timestamp,
        body -> Binary,
        content_type -> Nullable<Text>,
        verdict -> Text,
        reason -> Nullable<Text>,
        order_id -> Nullable<Text>,
    }
}

diesel::table! {
    anomalies (id) {
        id -> Text,
        order_id -> Nullable<Text>,
        provider -> Text,
        app -> Text,
        kind -> Text,
        detail -> Text,
        callback_id -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        name -> Text,
        role -> Text,
        key_hash -> Text,
        key_prefix -> Text,
        apps -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    outbox_events (id) {
        id -> Text,
        kind -> Text,
        order_id -> Text,
        refund_id -> Nullable<Text>,
        payload -> Text,
        created_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
        attempts -> BigInt,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        delivery_round -> BigInt,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Text,
        event_id -> Text,
        delivery_round -> BigInt,
        endpoint -> Text,
        attempted_at -> Timestamp,
        response_status -> Nullable<BigInt>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    bill_files (id) {
        id -> Text,
        app -> Text,
        provider -> Text,
        bill_day -> Text,
        sha256 -> Text,
        size_bytes -> BigInt,
        body -> Binary,
        fetched_at -> Timestamp,
    }
}

diesel::table! {
    reconciliation_runs (id) {
        id -> Text,
        app -> Text,
        provider -> Text,
        bill_day -> Text,
        bill_file_id -> Nullable<Text>,
        status -> Text,
        failure_reason -> Nullable<Text>,
        bill_payments_count -> BigInt,
        bill_gross -> BigInt,
        bill_settlement_gross -> BigInt,
        bill_refunds_count -> BigInt,
        bill_refunds -> BigInt,
        bill_fees -> BigInt,
        local_payments_count -> BigInt,
        local_gross -> BigInt,
        local_refunds_count -> BigInt,
        local_refunds -> BigInt,
        differences_count -> BigInt,
        held_count -> BigInt,
        finished_at -> Timestamp,
    }
}

diesel::table! {
    reconciliation_differences (id) {
        id -> Text,
        run_id -> Text,
        seq -> BigInt,
        kind -> Text,
        category -> Text,
        out_trade_no -> Text,
        out_refund_no -> Nullable<Text>,
        provider_trade_no -> Nullable<Text>,
        provider_refund_no -> Nullable<Text>,
        bill_amount -> Nullable<BigInt>,
        bill_time -> Nullable<Timestamp>,
        bill_status -> Nullable<Text>,
        local_amount -> Nullable<BigInt>,
        local_time -> Nullable<Timestamp>,
        local_status -> Nullable<Text>,
        near_midnight -> Bool,
        held -> Bool,
        refund_status_differs -> Bool,
        resolution_note -> Nullable<Text>,
        resolved_by -> Nullable<Text>,
        resolved_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(refunds -> orders (order_id));
diesel::joinable!(outbox_events -> orders (order_id));
diesel::joinable!(webhook_attempts -> outbox_events (event_id));
diesel::joinable!(reconciliation_runs -> bill_files (bill_file_id));
diesel::joinable!(reconciliation_differences -> reconciliation_runs (run_id));

diesel::allow_tables_to_appear_in_same_query!(
    orders,
    refunds,
    callbacks,
    anomalies,
    api_keys,
    outbox_events,
    webhook_attempts,
    leases,
    bill_files,
    reconciliation_runs,
    reconciliation_differences
);
