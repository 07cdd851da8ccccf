// Preparation for bench/side-by-side.sh, done before any clock starts (so neither the RSA
// signing of notifies nor the order seeding is charged to a system under test):
//
//   node side-by-side-prep.cjs seed <base url> <token> <prefix> <from> <to>
//       POSTs /v1/orders for <prefix><from> … <prefix><to - 1> (the body create.lua sends,
//       amount 1999 fen, subject "Tea"), 16 in flight on keep-alive connections; exits 1 on
//       the first answer that is not 201 (or 200 for a retried, identical order).
//   node side-by-side-prep.cjs sign <alipay private key PEM> <app_id> <seller_id> <prefix> <from> <to>
//       Prints one form body a line: the paid notify (trade_status_sync, TRADE_SUCCESS)
//       Alipay would post for each of those orders, RSA2-signed over the sorted fields minus
//       sign and sign_type (rsaCheckV1), with the field set paygate-loadgen's NotifySigner
//       uses. Both systems hold the public half and the same orders, so the same line is a
//       genuine notify for either.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');

const AMOUNT_FEN = 1999;
const YUAN = '19.99';
const SUBJECT = 'Tea';

function usage() {
  console.error('usage: side-by-side-prep.cjs seed URL TOKEN PREFIX FROM TO | sign KEY_PEM APP_ID SELLER_ID PREFIX FROM TO');
  process.exit(2);
}

function range(fromText, toText) {
  const from = Number(fromText);
  const to = Number(toText);
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || to < from) usage();
  return [from, to];
}

// Alipay's clock: China time, "yyyy-MM-dd HH:mm:ss".
function chinaTime() {
  return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 19).replace('T', ' ');
}

function sign(keyFile, appId, sellerId, prefix, from, to) {
  const key = crypto.createPrivateKey(fs.readFileSync(keyFile, 'ascii'));
  const out = [];
  for (let i = from; i < to; i++) {
    const now = chinaTime();
    const digits = String(i).padStart(20, '0');
    const params = {
      notify_time: now,
      notify_type: 'trade_status_sync',
      notify_id: `20261202${digits}`,
      app_id: appId,
      auth_app_id: appId,
      charset: 'utf-8',
      version: '1.0',
      sign_type: 'RSA2',
      trade_no: `2026${digits}`,
      out_trade_no: `${prefix}${i}`,
      buyer_id: '2088000000000099',
      buyer_logon_id: '159****5620',
      seller_id: sellerId,
      seller_email: 'sandbox-seller@example.com',
      trade_status: 'TRADE_SUCCESS',
      total_amount: YUAN,
      receipt_amount: YUAN,
      invoice_amount: YUAN,
      buyer_pay_amount: YUAN,
      point_amount: '0.00',
      subject: SUBJECT,
      gmt_create: now,
      gmt_payment: now,
      fund_bill_list: `[{"amount":"${YUAN}","fundChannel":"ALIPAYACCOUNT"}]`,
    };
    // Byte order of the keys, as Alipay sorts them (all keys here are ASCII).
    const content = Object.keys(params)
      .filter((k) => k !== 'sign' && k !== 'sign_type' && params[k] !== '')
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .map((k) => `${k}=${params[k]}`)
      .join('&');
    params.sign = crypto.sign('sha256', Buffer.from(content, 'utf8'), key).toString('base64');
    out.push(Object.entries(params).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&'));
    if (out.length >= 1000) { process.stdout.write(out.join('\n') + '\n'); out.length = 0; }
  }
  if (out.length) process.stdout.write(out.join('\n') + '\n');
}

async function seed(baseUrl, token, prefix, from, to) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const url = new URL('/v1/orders', baseUrl);
  const post = (i) => new Promise((resolve, reject) => {
    const body = JSON.stringify({
      provider: 'alipay', channel: 'app', out_trade_no: `${prefix}${i}`, amount: AMOUNT_FEN, subject: SUBJECT,
    });
    const req = http.request(url, {
      method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => (res.statusCode === 201 || res.statusCode === 200
        ? resolve()
        : reject(new Error(`${prefix}${i}: ${res.statusCode} ${text.slice(0, 200)}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
  let next = from;
  const lane = async () => { while (next < to) await post(next++); };
  await Promise.all(Array.from({ length: 16 }, lane));
  agent.destroy();
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'sign' && args.length === 6) {
  const [from, to] = range(args[4], args[5]);
  sign(args[0], args[1], args[2], args[3], from, to);
} else if (mode === 'seed' && args.length === 5) {
  const [from, to] = range(args[3], args[4]);
  seed(args[0], args[1], args[2], from, to).catch((e) => { console.error(`seed failed: ${e.message}`); process.exit(1); });
} else {
  usage();
}
