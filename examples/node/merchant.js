#!/usr/bin/env node
// A merchant backend against paygate, Node.js 18+ with no packages (http, crypto, fetch).
//
// It does what a shop's server does, end to end:
// 1. receives paygate's webhooks on its own HTTP endpoint and verifies `Paygate-Signature`
//    (HMAC-SHA256 over "<t>.<raw body>", timestamp within 5 minutes) before trusting a byte;
// 2. creates orders through the API: a WeChat NATIVE order (QR code on a PC page), a WeChat
//    official-account (JSAPI) order on the APIv3 app with the buyer's OAuth openid, and an
//    Alipay APP order whose `order_string` goes to the Alipay SDK;
// 3. plays the buyer in paygate's sandbox (in production the buyer pays in WeChat or Alipay);
// 4. fulfils an order only on a verified `order.paid` webhook (or by reading the order), never on
//    what the buyer's client says;
// 5. refunds each order and waits for `refund.succeeded`.
//
// Configuration (environment): PAYGATE_BASE, PAYGATE_KEY (a merchant key), PAYGATE_SANDBOX (only
// to play the buyer), PAYGATE_WEBHOOK_SECRET (this receiver's endpoint secret), WEBHOOK_LISTEN
// (default 127.0.0.1:9102). Exits 0 when every order was paid, its webhook verified, and refunded.
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const assert = require('node:assert/strict');

const BASE = (process.env.PAYGATE_BASE || 'http://127.0.0.1:8080').replace(/\/$/, '');
const KEY = process.env.PAYGATE_KEY;
const SANDBOX = (process.env.PAYGATE_SANDBOX || '').replace(/\/$/, '');
const SECRET = process.env.PAYGATE_WEBHOOK_SECRET;
const LISTEN = process.env.WEBHOOK_LISTEN || '127.0.0.1:9102';
const TOLERANCE_SECONDS = 300;

// --- 1. Webhooks: verify, de-duplicate, then act ----------------------------------------------

/** True when `header` (Paygate-Signature) signs the raw `body` (a Buffer) with `secret`, recently. */
function verifyPaygateSignature(secret, header, body, nowSeconds = Date.now() / 1000, tolerance = TOLERANCE_SECONDS) {
  const items = String(header || '').split(',').map((part) => part.trim().split('='));
  const t = (items.find(([k]) => k === 't') || [])[1];
  if (!t || !/^\d+$/.test(t)) return false;
  if (Math.abs(nowSeconds - Number(t)) > tolerance) return false; // a replay, or a clock far off
  const expected = crypto.createHmac('sha256', secret).update(`${t}.`).update(body).digest();
  return items
    .filter(([k]) => k === 'v1')
    .some(([, v]) => {
      const given = Buffer.from(v || '', 'hex');
      return given.length === expected.length && crypto.timingSafeEqual(given, expected);
    });
}

const seenEventIds = new Set(); // delivery is at least once: a repeat is acknowledged and ignored
const received = []; // verified events
const waiters = [];

function deliver(event) {
  received.push(event);
  for (const waiter of waiters.splice(0)) waiter();
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > 64 * 1024) req.destroy();
    else chunks.push(chunk);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks); // the raw bytes: verify before parsing
    if (req.method !== 'POST' || !verifyPaygateSignature(SECRET, req.headers['paygate-signature'], body)) {
      res.writeHead(400).end();
      return;
    }
    const event = JSON.parse(body);
    if (!seenEventIds.has(event.id)) {
      seenEventIds.add(event.id);
      deliver(event); // real code queues the work (fulfil, notify the buyer) here
    }
    res.writeHead(204).end(); // any 2xx acknowledges; answer fast
  });
});

/** The verified event of `type` for `outTradeNo`. */
async function waitForEvent(type, outTradeNo, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = received.find((e) => e.type === type && e.data.out_trade_no === outTradeNo);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no verified ${type} webhook for ${outTradeNo}`);
    await new Promise((resolve) => {
      waiters.push(resolve);
      setTimeout(resolve, 200);
    });
  }
}

// --- 2. The paygate API -----------------------------------------------------------------------

/** An API error: `code` is stable (docs/api.md lists every one), `status` the HTTP status. */
class PaygateError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

async function call(method, url, body, key = KEY) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const payload = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    if (typeof error === 'string') throw new PaygateError(response.status, null, error);
    throw new PaygateError(response.status, error.code, error.message);
  }
  return payload;
}

// POST /v1/orders. Retrying with the same out_trade_no and body is safe (same order).
const createOrder = (fields) => call('POST', `${BASE}/v1/orders`, fields);
const getOrder = (id) => call('GET', `${BASE}/v1/orders/${id}`);
// out_refund_no makes a retry the same refund.
const refund = (id, amount, outRefundNo) =>
  call('POST', `${BASE}/v1/orders/${id}/refunds`, { amount, reason: 'example refund', out_refund_no: outRefundNo });

// --- 3. The buyer, played in the sandbox (docs/sandbox.md) ------------------------------------

const sandboxPay = (body) => call('POST', `${SANDBOX}/sandbox/pay`, body, null);

function payAsBuyer(order) {
  const params = order.pay_params;
  if (params.type === 'alipay_order_string') return sandboxPay({ order_string: params.order_string });
  if (params.type === 'wechat_jsapi') return sandboxPay({ prepay_id: params.package.split('=')[1] });
  return sandboxPay({ provider: order.provider, out_trade_no: order.out_trade_no });
}

/** The official-account buyer's openid: the OAuth redirect, as the buyer's WeChat browser follows it. */
async function officialAccountOpenid(app) {
  const { url } = await call('POST', `${BASE}/v1/wechat/${app}/oauth/authorize-url`, {
    redirect_uri: 'https://shop.example.com/pay/return',
    scope: 'snsapi_base',
    state: 'x7Kq',
  });
  // WeChat's authorize page (the sandbox's here) redirects back with ?code=…&state=…
  const redirect = await fetch(url, { redirect: 'manual' });
  const back = new URL(redirect.headers.get('location'));
  assert.equal(back.searchParams.get('state'), 'x7Kq'); // bind state to the session against CSRF
  const { openid } = await call('POST', `${BASE}/v1/wechat/${app}/oauth/openid`, { code: back.searchParams.get('code') });
  return openid;
}

// --- 4. The whole flow ------------------------------------------------------------------------

async function main() {
  const [host, port] = [LISTEN.slice(0, LISTEN.lastIndexOf(':')), Number(LISTEN.slice(LISTEN.lastIndexOf(':') + 1))];
  await new Promise((resolve) => server.listen(port, host, resolve));

  // Self-checks of the verifier: a tampered body and a stale timestamp are refused.
  const body = Buffer.from('{"id":"x"}');
  const now = Math.floor(Date.now() / 1000);
  const good = crypto.createHmac('sha256', SECRET).update(`${now}.`).update(body).digest('hex');
  assert.ok(verifyPaygateSignature(SECRET, `t=${now},v1=${good}`, body));
  assert.ok(!verifyPaygateSignature(SECRET, `t=${now},v1=${good}`, Buffer.concat([body, Buffer.from(' ')])));
  assert.ok(!verifyPaygateSignature(SECRET, `t=${now - 3600},v1=${good}`, body));

  const run = `js${Date.now() % 1e10}`;
  const openid = await officialAccountOpenid('sandbox-v3');
  const orders = [
    { provider: 'wechat', channel: 'native', amount: 990, subject: 'Oolong tea', client_ip: '203.0.113.7' },
    { provider: 'wechat', app: 'sandbox-v3', channel: 'jsapi', amount: 1200, subject: 'Green tea', openid, client_ip: '203.0.113.7' },
    { provider: 'alipay', channel: 'app', amount: 1999, subject: 'Jasmine tea' },
  ];
  let last;
  for (const [index, fields] of orders.entries()) {
    const outTradeNo = `${run}_${index + 1}`;
    const request = { out_trade_no: outTradeNo, metadata: { cart: index + 1 }, ...fields };
    const order = await createOrder(request);
    assert.equal(order.status, 'pending');
    // The same request again is the same order (a safe retry), not a second charge.
    assert.equal((await createOrder(request)).id, order.id);
    await payAsBuyer(order);
    const paid = await waitForEvent('order.paid', outTradeNo);
    assert.equal(paid.data.amount, order.amount);
    assert.equal((await getOrder(order.id)).status, 'paid');
    console.log(`paid      ${fields.provider.padEnd(6)} ${fields.channel.padEnd(12)} ${outTradeNo} (webhook ${paid.id})`);

    const started = await refund(order.id, order.amount, `${outTradeNo}_r`);
    assert.ok(['processing', 'succeeded'].includes(started.status), JSON.stringify(started));
    await waitForEvent('refund.succeeded', outTradeNo);
    assert.equal((await getOrder(order.id)).status, 'refunded');
    console.log(`refunded  ${fields.provider.padEnd(6)} ${fields.channel.padEnd(12)} ${outTradeNo}`);
    last = order;
  }

  // Errors carry a stable code to switch on.
  await assert.rejects(refund(last.id, 1, `${run}_again`), (error) =>
    error instanceof PaygateError && error.status === 409 && ['refund_exceeds_paid', 'not_refundable'].includes(error.code));
  server.close();
  console.log('node example: every order paid, verified and refunded');
}

main().catch((error) => {
  console.error(`node example failed: ${error.stack || error}`);
  process.exit(1);
});
