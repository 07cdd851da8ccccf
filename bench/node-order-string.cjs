// Builds N alipay.trade.app.pay orderStrings with the official Node SDK's sdkExecute, the same
// work and inputs as paygate-alipay's `app_pay_order_string` bench, and prints orders/s.
// Usage: node node-order-string.cjs <sdk dir> <app private key PKCS#1 PEM> <N> <rounds>
'use strict';
const fs = require('fs');
const path = require('path');

const [sdkDir, keyFile, countText, roundsText] = process.argv.slice(2);
const sdk = require(path.join(sdkDir, 'node_modules', 'alipay-sdk'));
const AlipaySdk = sdk.AlipaySdk || sdk.default || sdk;
const privateKey = fs.readFileSync(keyFile, 'utf8');
const count = Number(countText || 2000);
const rounds = Number(roundsText || 5);

const client = new AlipaySdk({
  appId: '2021000000000001',
  privateKey,
  keyType: 'PKCS1',
  signType: 'RSA2',
  // sdkExecute never calls the network; a key is required only to construct the client.
  alipayPublicKey: fs.readFileSync(path.join(path.dirname(keyFile), 'alipay_public.pem'), 'utf8'),
});

const bizContent = {
  out_trade_no: 'ORDER_20240102_0001',
  total_amount: '88.88',
  subject: '测试商品 Test+1 & 2=2 /x',
  body: "a+b & c=d / e ~*!'()",
  product_code: 'QUICK_MSECURITY_PAY',
  timeout_express: '30m',
  passback_params: 'k1=v1&k2=a b+c/d',
};

function one() {
  return client.sdkExecute('alipay.trade.app.pay', {
    notify_url: 'https://merchant.example.com/alipay/notify',
    bizContent,
  });
}

const sample = one();
if (!/sign=/.test(sample) || sample.length < 600) {
  throw new Error('unexpected orderString: ' + sample.slice(0, 200));
}
const perSecond = [];
for (let r = 0; r < rounds; r++) {
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) one();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  perSecond.push(count / seconds);
}
perSecond.sort((a, b) => a - b);
console.log(JSON.stringify({
  median_per_s: perSecond[Math.floor(perSecond.length / 2)],
  min_per_s: perSecond[0],
  max_per_s: perSecond[perSecond.length - 1],
  order_string_bytes: sample.length,
}));
