// End-to-end test of the finance console in a real browser (Debian Chromium via playwright-core).
//
// It starts the built `paygate` on a free port with a fresh SQLite database and the embedded
// sandbox, reads the first-start merchant and finance keys from its banner, creates and pays
// orders through the merchant API and the sandbox, then drives /console as finance staff would:
// sign in, filter, page, open an order, export CSV, draw the chart, read anomalies, reconcile a
// day and resolve its difference. What the page shows is checked against numbers worked out
// here from the orders we made.
//
// Environment: PAYGATE_BIN (the binary), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT_DIR (default ../docs/img). Prints "N passed, N failed" last; exits 1 on failure.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { formatChecks } from './format.test.mjs';
import { i18nChecks } from './i18n.test.mjs';
import { assert, check, equal, finish } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.PAYGATE_BIN
  ?? join(process.env.CARGO_TARGET_DIR ?? join(process.env.HOME, '.cache/paygate-target'), 'debug/paygate');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = resolve(process.env.SCREENSHOT_DIR ?? join(here, '../docs/img'));
// The console's catalogues, read from the very files the gateway serves.
const CATALOGUES = join(here, '../crates/gateway/src/console/assets/i18n');
const EN = JSON.parse(readFileSync(join(CATALOGUES, 'en.json'), 'utf8'));
const ZH = JSON.parse(readFileSync(join(CATALOGUES, 'zh-CN.json'), 'utf8'));

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Starts paygate and resolves with its base URL, the sandbox URL and the two keys. */
function startGateway(workdir) {
  // No config file: the defaults (embedded sandbox) with only the database moved to the temp dir.
  const { PAYGATE_CONFIG: _ignored, ...inherited } = process.env;
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0'], {
    cwd: workdir,
    env: {
      ...inherited,
      PAYGATE__DATABASE_URL: `sqlite://${join(workdir, 'paygate.db')}`,
      // The daily bill job stays out of the way: this test reconciles the days it means to.
      PAYGATE__STATEMENTS__ENABLED: 'false',
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let banner = '';
  let log = '';
  child.stderr.on('data', (chunk) => { log += chunk; });
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`paygate did not print its keys in 60 s:\n${banner}\n${log}`)), 60_000);
    child.on('exit', (code) => fail(new Error(`paygate exited with ${code}:\n${banner}\n${log}`)));
    child.stdout.on('data', (chunk) => {
      banner += chunk;
      const base = /listening on (http:\/\/\S+)/.exec(banner)?.[1];
      const sandbox = /embedded sandbox[^:]*: (http:\/\/\S+)\/sandbox/.exec(banner)?.[1];
      const merchant = /merchant key: (pgm_\w+)/.exec(banner)?.[1];
      const finance = /finance key:\s+(pgf_\w+)/.exec(banner)?.[1];
      if (base && sandbox && merchant && finance) {
        clearTimeout(timer);
        done({ child, base, sandbox, merchant, finance, log: () => log });
      }
    });
  });
}

async function call(method, url, key, body) {
  const response = await fetch(url, {
    method,
    headers: {
      ...(key ? { Authorization: `Bearer ${key}` } : {}),
      ...(body ? { 'Content-Type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${url} → ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Polls until `probe()` gives something truthy; the sandbox notifies asynchronously. */
async function waitFor(probe, what) {
  for (let attempt = 0; attempt < 150; attempt += 1) {
    const found = await probe();
    if (found) return found;
    await sleep(200);
  }
  throw new Error(`never saw ${what}`);
}

async function waitForOrder(gw, id, ready, what) {
  return waitFor(async () => {
    const order = await call('GET', `${gw.base}/v1/orders/${id}`, gw.merchant);
    return ready(order) ? order : null;
  }, `order ${id} ${what}`);
}

/** "2026-11-23 00:30:05 GMT+8" worked out with plain UTC arithmetic, independent of Intl. */
function expectedShanghai(iso) {
  const shifted = new Date(Date.parse(iso) + 8 * 3600 * 1000).toISOString();
  return `${shifted.slice(0, 10)} ${shifted.slice(11, 19)} GMT+8`;
}

/** The orders this test makes, with amounts in fen and the yuan strings people must see. */
const PLAN = [
  { out: 'e2e_ali_tea', provider: 'alipay', channel: 'precreate', amount: 1999, yuan: '19.99', pay: true, refund: 0, refundedYuan: '0.00' },
  { out: 'e2e_ali_cake', provider: 'alipay', channel: 'precreate', amount: 5, yuan: '0.05', pay: true, refund: 2, refundedYuan: '0.02' },
  { out: 'e2e_wx_box', provider: 'wechat', channel: 'mini_program', amount: 12345, yuan: '123.45', pay: true, refund: 345, refundedYuan: '3.45' },
  // Genuinely signed by the sandbox but one fen more than the order: a payment_mismatch anomaly.
  { out: 'e2e_wx_mismatch', provider: 'wechat', channel: 'mini_program', amount: 888, yuan: '8.88', pay: true, fault: 'wrong_amount', refund: 0, refundedYuan: '0.00' },
  { out: 'e2e_wx_pending', provider: 'wechat', channel: 'mini_program', amount: 100, yuan: '1.00', pay: false, refund: 0, refundedYuan: '0.00' },
];
const BULK = 17; // pending filler orders, so that 22 orders need two pages of 20

async function makeOrders(gw) {
  const made = {};
  // Fillers first, so the newest-first orders page opens on the interesting orders.
  for (let i = 0; i < BULK; i += 1) {
    await call('POST', `${gw.base}/v1/orders`, gw.merchant, {
      provider: 'alipay', channel: 'app', out_trade_no: `e2e_bulk_${String(i).padStart(2, '0')}`, amount: 100 + i, subject: 'filler',
    });
  }
  for (const plan of PLAN) {
    const order = await call('POST', `${gw.base}/v1/orders`, gw.merchant, {
      provider: plan.provider, channel: plan.channel, out_trade_no: plan.out, amount: plan.amount,
      subject: 'e2e', ...(plan.provider === 'wechat' ? { openid: 'o_e2e_buyer', client_ip: '203.0.113.7' } : {}),
    });
    made[plan.out] = order;
    if (plan.fault) {
      await call('POST', `${gw.sandbox}/sandbox/faults`, null, { fault: plan.fault, provider: plan.provider, out_trade_no: plan.out, times: 'always' });
    }
    if (plan.pay) {
      await call('POST', `${gw.sandbox}/sandbox/pay`, null, { provider: plan.provider, out_trade_no: plan.out });
    }
    if (plan.pay && !plan.fault) {
      made[plan.out] = await waitForOrder(gw, order.id, (o) => o.status === 'paid', 'paid');
    }
    if (plan.fault) {
      await waitFor(async () => (await call('GET', `${gw.base}/v1/anomalies`, gw.finance)).data.some((a) => a.order_id === order.id), `an anomaly for ${plan.out}`);
    }
    if (plan.refund) {
      await call('POST', `${gw.base}/v1/orders/${order.id}/refunds`, gw.merchant, { amount: plan.refund, reason: 'e2e partial refund' });
      made[plan.out] = await waitForOrder(gw, order.id, (o) => o.refunded_amount === plan.refund, 'refunded');
    }
  }
  return made;
}

/** Arms a sandbox fault for the next WeChat bill, then asks the page to reconcile `day`. */
async function reconcileWechatThroughThePage(gw, page, fault, day) {
  await call('POST', `${gw.sandbox}/sandbox/faults`, null, { fault, provider: 'wechat', api: '/pay/downloadbill' });
  await page.click('nav a[data-view=reconciliation]');
  await page.waitForSelector('#reconciliation-view:not([hidden])');
  await page.fill('#recon-now input[name=day]', day);
  await page.selectOption('#recon-now select[name=provider]', 'wechat');
  await page.click('#recon-now button[type=submit]');
}

/** Opens an order with a refund from the orders list and waits until all of it has loaded. */
async function openRefundedOrder(page, id) {
  await page.click(`#orders-table tr[data-order-id="${id}"]`);
  await page.waitForSelector('#order-view:not([hidden]) #refunds-table tbody tr td:nth-child(4)');
  await page.waitForFunction(() => document.getElementById('order-message').textContent === '');
}

async function tableTexts(page, selector) {
  return page.$$eval(`${selector} tbody tr`, (rows) => rows.map((row) => [...row.cells].map((c) => c.textContent.trim())));
}

/**
 * A page in a fresh browser context with the browser language `locale`, far from Shanghai,
 * with the problems it runs into (script errors, CSP reports, unexpected HTTP errors) and the
 * URLs it asks for collected.
 */
async function openPage(browser, locale) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1360, height: 900 },
    timezoneId: 'America/New_York', locale });
  const page = await context.newPage();
  const pageProblems = [];
  page.on('pageerror', (error) => pageProblems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // Failed loads are judged by the response listener below, which knows the URL.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      pageProblems.push(`console: ${message.text()}`);
    }
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    const expected = url.pathname === '/favicon.ico'
      || (response.status() === 403 && url.pathname === '/v1/anomalies' && url.search === '?limit=1')
      // The "bill not ready" answer the reconciliation checks provoke on purpose.
      || (response.status() === 409 && url.pathname === '/v1/reconciliation/runs');
    if (response.status() >= 400 && !expected) pageProblems.push(`HTTP ${response.status()} ${url.pathname}`);
  });
  const requestedUrls = [];
  page.on('request', (request) => requestedUrls.push(request.url()));
  return { page, pageProblems, requestedUrls };
}

/** Words that are the same in Chinese text: the product, file and time-zone abbreviations. */
const SAME_IN_CHINESE = new Set(['paygate', 'CSV', 'UTC', 'GMT', 'HTTP']);

/**
 * English left on the page shown in Chinese: any visible text that is exactly an English
 * catalogue text (one that differs from its Chinese), any ⟦missing key⟧, any option of a
 * visible filter in English, and Latin words in labels, headers, buttons, hints and messages
 * (data such as order numbers and app names is told apart: it has digits or underscores, or
 * is the app name "sandbox").
 */
async function englishLeft(page) {
  const english = Object.entries(EN).filter(([key, text]) => text !== ZH[key] && /[A-Za-z]/.test(text)).map(([, text]) => text);
  return page.evaluate(({ english, same }) => {
    const texts = new Set(english);
    const allowed = new Set([...same, 'sandbox']);
    const found = [];
    const labelish = 'th, label, button, h1, h2, h3, nav, dt, .hint, .legend, footer, .message, .run, .category, .status, .verdict, svg text';
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const parent = node.parentElement;
      const text = node.textContent.trim();
      if (!text || !parent || parent.closest('#language') || !parent.checkVisibility()) continue;
      if (texts.has(text) || text.includes('⟦')) {
        found.push(text);
        continue;
      }
      if (!parent.closest(labelish)) continue;
      const words = text.replace(/[\w.-]*[\d_][\w.-]*/g, ' ').match(/[A-Za-z]{2,}/g) ?? [];
      const foreign = words.filter((word) => !allowed.has(word));
      if (foreign.length) found.push(`${text} (${foreign.join(' ')})`);
    }
    for (const select of document.querySelectorAll('select:not(#language)')) {
      if (!select.checkVisibility()) continue;
      for (const option of select.options) if (texts.has(option.textContent.trim())) found.push(`option ${option.textContent}`);
    }
    return found;
  }, { english, same: [...SAME_IN_CHINESE] });
}

/** The console in Chinese, chosen by a browser set to Chinese: the key views, no English left. */
async function chineseChecks(browser, gw, made) {
  const { page, pageProblems } = await openPage(browser, 'zh-CN');
  const today = expectedShanghai(new Date().toISOString()).slice(0, 10);
  const noEnglish = async (view) => {
    const left = await englishLeft(page);
    equal(left.join(' | '), '', `English left on the ${view} view`);
  };

  await check('中文: a browser set to Chinese gets the Chinese console, sign-in included', async () => {
    await page.goto(`${gw.base}/console`);
    await page.waitForSelector('#sign-in-view:not([hidden])');
    await page.waitForFunction(() => !document.body.classList.contains('loading'));
    equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN', 'the page language');
    equal(await page.textContent('#sign-in-view h2'), ZH['sign_in.title']);
    equal(await page.title(), ZH['app.title']);
    await page.fill('#finance-key', gw.merchant);
    await page.click('#sign-in-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('sign-in-error').textContent.length > 0);
    equal(await page.textContent('#sign-in-error'), ZH['sign_in.invalid_key']);
    await noEnglish('sign-in');
  });

  await check('中文: orders show Chinese statuses, ¥ amounts and Shanghai times', async () => {
    await page.fill('#finance-key', gw.finance);
    await page.click('#sign-in-form button[type=submit]');
    await page.waitForFunction((text) => document.getElementById('orders-message').textContent === text,
      ZH['orders.count'].replace('{count}', String(PLAN.length + BULK)));
    const rows = await tableTexts(page, '#orders-table');
    const box = rows.find((cells) => cells[1] === 'e2e_wx_box');
    equal(box.slice(2).join('|'), ['微信支付', 'sandbox', '小程序支付', '部分退款', '123.45', '3.45',
      expectedShanghai(made.e2e_wx_box.paid_at)].join('|'), 'the refunded WeChat order');
    equal(rows.find((cells) => cells[1] === 'e2e_ali_tea')[5], '已支付', 'a paid order');
    equal(rows.find((cells) => cells[1] === 'e2e_wx_pending')[5], '待支付', 'a pending order');
    equal(await page.textContent('#orders-table thead th:nth-child(7)'), '金额 ¥', 'amounts in ¥');
    equal(await page.textContent('#page-label'), '第 1 页');
    await noEnglish('orders');
    await page.screenshot({ path: join(SHOTS, 'console-orders.zh-CN.png') });
  });

  await check('中文: a yuan amount the API cannot take is refused in Chinese', async () => {
    await page.fill('#filters input[name=amount_min]', '1.005');
    await page.click('#apply-filters');
    await page.waitForFunction(() => document.getElementById('orders-message').classList.contains('error'));
    equal(await page.textContent('#orders-message'), ZH['error.amount'].replace('{text}', '1.005'));
    await page.fill('#filters input[name=amount_min]', '');
  });

  await check('中文: an order shows its fields, refunds, callbacks and webhooks in Chinese', async () => {
    await openRefundedOrder(page, made.e2e_wx_box.id);
    equal(await page.textContent('#order-title'), '订单 e2e_wx_box');
    equal(await page.textContent('dd[data-field=status]'), '部分退款');
    equal(await page.textContent('dd[data-field=provider]'), '微信支付');
    equal((await tableTexts(page, '#refunds-table'))[0][2], '退款成功', 'refund status');
    const callbacks = await tableTexts(page, '#callbacks-table');
    assert(callbacks.every((c) => c[1] === '微信支付') && callbacks.some((c) => c[3] === '已受理'), JSON.stringify(callbacks));
    equal((await tableTexts(page, '#events-table')).map((e) => e[1]).sort().join(','), ['订单已支付', '退款成功'].sort().join(','));
    await noEnglish('order detail');
    await page.screenshot({ path: join(SHOTS, 'console-order.zh-CN.png'), fullPage: true });
  });

  await check('中文: the daily chart has Chinese panels, legend and totals', async () => {
    await page.click('nav a[data-view=chart]');
    await page.waitForSelector('#chart svg');
    await page.waitForSelector('#chart-totals tbody tr[data-provider]');
    const legend = await page.$$eval('#chart svg text.legend', (nodes) => nodes.map((n) => n.textContent));
    equal(legend.join('|'), [ZH['chart.legend.paid'], ZH['chart.legend.refunded'], ZH['chart.legend.net']].join('|'), 'legend');
    const titles = await page.$$eval('#chart svg text.title', (nodes) => nodes.map((n) => n.textContent));
    equal(titles.join('|'), '微信支付|支付宝', 'panel titles');
    const wechat = await page.$$eval('#chart-totals tr[data-provider=wechat] td', (cells) => cells.map((c) => c.textContent));
    equal(wechat.join('|'), '微信支付|1|123.45|3.45|120.00|一致', 'WeChat totals');
    await noEnglish('chart');
    await page.locator('#chart-view').screenshot({ path: join(SHOTS, 'console-chart.zh-CN.png') });
  });

  await check('中文: anomalies name their kind in Chinese', async () => {
    await page.click('nav a[data-view=anomalies]');
    await page.waitForSelector(`#anomalies-table tr[data-kind=payment_mismatch]`);
    equal(await page.textContent('#anomalies-table tr[data-kind=payment_mismatch] td:nth-child(2)'), '支付信息不符');
    await noEnglish('anomalies');
  });

  await check('中文: reconciliation days, a not-ready bill by its code, and a day in Chinese', async () => {
    await page.click('nav a[data-view=reconciliation]');
    await page.waitForSelector(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=alipay]`);
    equal(await page.textContent(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=alipay]`), 'sandbox · 支付宝：1 笔差异');
    equal(await page.textContent(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=wechat]`), 'sandbox · 微信支付：对账失败');
    equal(await page.textContent('#recon-calendar .weekday'), '周一');
    await noEnglish('reconciliation days');
    // An app without runs: today is open, yesterday waits for its bill, older days were missed.
    await page.fill('#recon-range input[name=app]', 'no-such-app');
    await page.click('#recon-range button[type=submit]');
    await page.waitForFunction((text) => document.getElementById('recon-message').textContent === text, ZH['recon.no_runs']);
    const yesterday = new Date(Date.parse(`${today}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
    const before = new Date(Date.parse(`${today}T00:00:00Z`) - 2 * 86_400_000).toISOString().slice(0, 10);
    const states = await Promise.all([today, yesterday, before].map((day) => page.textContent(`#recon-calendar .day[data-day="${day}"] .run.none`)));
    equal(states.join('|'), '当日未结束|等待账单|未对账', 'days without a run, by why');
    await noEnglish('reconciliation days without runs');
    await page.fill('#recon-range input[name=app]', '');
    await page.click('#recon-range button[type=submit]');
    await page.waitForSelector(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=alipay]`);
    await reconcileWechatThroughThePage(gw, page, 'bill_not_ready', today);
    await page.waitForFunction(() => document.getElementById('recon-now-message').classList.contains('error'));
    // The console words the API's code; the API's English message stays available on hover.
    equal(await page.textContent('#recon-now-message'), ZH['error.bill_not_ready']);
    assert((await page.getAttribute('#recon-now-message', 'title')).includes('try again later'), 'the API message as the tooltip');
    await page.locator('#reconciliation-view').screenshot({ path: join(SHOTS, 'console-reconciliation-days.zh-CN.png') });
    await page.click(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=alipay]`);
    await page.waitForSelector('#recon-day-view:not([hidden]) #recon-differences tbody tr[data-difference-id]');
    equal(await page.textContent('#recon-day-title'), `${today} · sandbox · 支付宝`);
    const row = (await tableTexts(page, '#recon-differences'))[0];
    equal([row[0], row[1], row[8]].join('|'), '账单无此单|支付|已支付', 'category, kind and our status');
    assert(row[9].startsWith('Alipay support: bill reissued on T+2 —— 密钥 key_'), row[9]);
    equal(await page.textContent('#recon-totals tr[data-line=gross] th'), ZH['recon.line.gross']);
    equal(await page.textContent('#recon-differences tr[data-difference-id] button.resolve'), '修改说明');
    await noEnglish('reconciliation day');
    await page.locator('#recon-day-view').screenshot({ path: join(SHOTS, 'console-reconciliation.zh-CN.png') });
  });

  await check('中文 → English: the switch changes the language and is remembered', async () => {
    await page.selectOption('#language', 'en');
    await page.waitForFunction(() => document.documentElement.lang === 'en' && !document.body.classList.contains('loading'));
    await page.waitForSelector('#recon-differences tbody tr[data-difference-id]');
    equal(await page.textContent('nav a[data-view=orders]'), EN['nav.orders']);
    equal((await tableTexts(page, '#recon-differences'))[0][0], EN['category.missing_in_bill']);
    equal(await page.evaluate(() => localStorage.getItem('paygate.language')), 'en', 'remembered');
    // The detector of English left over sees it here, so its silence in Chinese means something.
    assert((await englishLeft(page)).length > 10, 'englishLeft finds the English page English');
    // A new visit in the same Chinese browser keeps the choice.
    await page.goto(`${gw.base}/console#orders`);
    await page.waitForFunction(() => !document.body.classList.contains('loading'));
    equal(await page.textContent('nav a[data-view=orders]'), EN['nav.orders'], 'after a new visit');
    await page.selectOption('#language', 'zh-CN');
    await page.waitForFunction(() => document.documentElement.lang === 'zh-CN' && !document.body.classList.contains('loading'));
    equal(await page.textContent('nav a[data-view=orders]'), ZH['nav.orders']);
    equal(await page.evaluate(() => Object.keys(localStorage).join(',')), 'paygate.language', 'only the language is in localStorage');
  });

  await check('中文: the page ran without script errors or CSP violations', async () => {
    equal(pageProblems.join('\n'), '', 'problems');
  });
}

async function main() {
  await formatChecks();
  await i18nChecks();

  const workdir = mkdtempSync(join(tmpdir(), 'paygate-e2e-'));
  const gw = await startGateway(workdir);
  let browser;
  try {
    let made;
    await check('orders are created and paid through the API and the sandbox', async () => {
      made = await makeOrders(gw);
      equal(made.e2e_wx_box.status, 'partially_refunded', 'refunded WeChat order status');
    });
    if (!made) return;

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    // First in English: a browser far from Shanghai whose language is English. What the page
    // shows must not depend on the zone; the language follows the browser.
    const { page, pageProblems, requestedUrls } = await openPage(browser, 'en-US');

    await check('the console asks for a finance key and refuses a merchant key', async () => {
      const response = await page.goto(`${gw.base}/console`);
      assert((response.headers()['content-security-policy'] ?? '').includes("script-src 'self'"), 'CSP header on /console');
      await page.waitForSelector('#sign-in-view:not([hidden])');
      await page.fill('#finance-key', gw.merchant);
      await page.click('#sign-in-form button[type=submit]');
      await page.waitForFunction(() => document.getElementById('sign-in-error').textContent.length > 0);
      equal(await page.textContent('#sign-in-error'), 'That is not a valid finance key.');
      equal(await page.evaluate(() => sessionStorage.length), 0, 'nothing stored for a refused key');
    });

    await check('signing in lists every order with yuan amounts and Asia/Shanghai times', async () => {
      await page.fill('#finance-key', gw.finance);
      await page.click('#sign-in-form button[type=submit]');
      await page.waitForSelector('#orders-view:not([hidden]) #orders-table tbody tr[data-order-id]');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent.includes('order(s)'));
      assert(!page.url().includes('pgf_'), 'the key is not in the address');
    });

    // The default page size is 50: all 22 orders on one page; then 20 per page for paging.
    await check('the first page at the default size shows all orders, exact yuan and Shanghai times', async () => {
      const rows = await tableTexts(page, '#orders-table');
      equal(rows.length, PLAN.length + BULK, 'rows at 50 per page');
      for (const plan of PLAN) {
        const row = rows.find((cells) => cells[1] === plan.out);
        assert(row, `row for ${plan.out}`);
        equal(row[6], plan.yuan, `${plan.out} amount`);
        equal(row[7], plan.refundedYuan, `${plan.out} refunded`);
        equal(row[0], expectedShanghai(made[plan.out].created_at), `${plan.out} created time`);
        if (plan.pay && !plan.fault) equal(row[8], expectedShanghai(made[plan.out].paid_at), `${plan.out} paid time`);
      }
    });

    await check('cursor paging walks 20 + 2 orders forward and back', async () => {
      await page.selectOption('#filters select[name=limit]', '20');
      await page.click('#apply-filters');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === '20 order(s) on this page.');
      const first = (await tableTexts(page, '#orders-table')).map((r) => r[1]);
      await page.click('#next-page');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === '2 order(s) on this page.');
      const second = (await tableTexts(page, '#orders-table')).map((r) => r[1]);
      equal(await page.textContent('#page-label'), 'Page 2');
      assert(await page.isDisabled('#next-page'), 'no page after the last');
      equal(new Set([...first, ...second]).size, 22, 'distinct orders over both pages');
      await page.click('#prev-page');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === '20 order(s) on this page.');
      equal((await tableTexts(page, '#orders-table'))[0][1], first[0], 'back on page 1');
    });

    await check('filters by provider, status, a yuan amount and Shanghai paid days reach the API', async () => {
      await page.selectOption('#filters select[name=limit]', '50');
      await page.selectOption('#filters select[name=provider]', 'wechat');
      await page.click('#apply-filters');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === '3 order(s) on this page.');
      equal((await tableTexts(page, '#orders-table')).map((r) => r[1]).sort().join(','), 'e2e_wx_box,e2e_wx_mismatch,e2e_wx_pending');
      await page.selectOption('#filters select[name=provider]', '');
      await page.fill('#filters input[name=amount_min]', '19.99');
      await page.click('#apply-filters');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === '2 order(s) on this page.');
      equal((await tableTexts(page, '#orders-table')).map((r) => r[1]).sort().join(','), 'e2e_ali_tea,e2e_wx_box');
      await page.fill('#filters input[name=amount_min]', '');
      await page.selectOption('#filters select[name=status]', 'paid');
      await page.selectOption('#filters select[name=provider]', 'alipay');
      await page.click('#apply-filters');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === '1 order(s) on this page.');
      equal((await tableTexts(page, '#orders-table'))[0][1], 'e2e_ali_tea');
      // Paid today, as a Shanghai calendar day (both ends inclusive in the form).
      const today = expectedShanghai(new Date().toISOString()).slice(0, 10);
      await page.selectOption('#filters select[name=status]', '');
      await page.selectOption('#filters select[name=provider]', '');
      await page.fill('#filters input[name=paid_from]', today);
      await page.fill('#filters input[name=paid_to]', today);
      await page.click('#apply-filters');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === '3 order(s) on this page.');
      equal((await tableTexts(page, '#orders-table')).map((r) => r[1]).sort().join(','), 'e2e_ali_cake,e2e_ali_tea,e2e_wx_box');
      await page.fill('#filters input[name=paid_from]', '');
      await page.fill('#filters input[name=paid_to]', '');
      await page.selectOption('#filters select[name=provider]', 'alipay');
    });

    await check('CSV export downloads the filtered orders through the Authorization header', async () => {
      await page.selectOption('#filters select[name=status]', '');
      await page.click('#apply-filters');
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
      assert(/^paygate-orders-\d{4}-\d{2}-\d{2}\.csv$/.test(download.suggestedFilename()), download.suggestedFilename());
      const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
      assert(csv[0].startsWith('id,provider,app,channel,out_trade_no'), 'CSV header');
      equal(csv.length, 1 + 2 + BULK, 'header + every Alipay order');
      const tea = csv.find((line) => line.includes(',e2e_ali_tea,'));
      assert(tea && tea.includes(',1999,19.99,'), `amount columns of ${tea}`);
    });

    await check('an order shows its fields, refunds, callbacks audit trail and webhook deliveries', async () => {
      await page.selectOption('#filters select[name=provider]', 'wechat');
      await page.click('#apply-filters');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === '3 order(s) on this page.');
      await openRefundedOrder(page, made.e2e_wx_box.id);
      equal(await page.textContent('#order-title'), 'Order e2e_wx_box');
      equal(await page.textContent('dd[data-field=amount]'), '123.45');
      equal(await page.textContent('dd[data-field=refunded]'), '3.45');
      equal(await page.textContent('dd[data-field=paid]'), expectedShanghai(made.e2e_wx_box.paid_at));
      equal(await page.textContent('dd[data-field=status]'), EN['order_status.partially_refunded']);
      const refunds = await tableTexts(page, '#refunds-table');
      equal(refunds.length, 1, 'one refund');
      equal(refunds[0][3], '3.45', 'refund amount');
      const callbacks = await tableTexts(page, '#callbacks-table');
      assert(callbacks.length >= 1 && callbacks.every((c) => c[1] === EN['provider.wechat']), `callbacks ${JSON.stringify(callbacks)}`);
      assert(callbacks.some((c) => c[5].includes('e2e_wx_box')), 'raw notify bodies are shown');
      const events = (await page.$$eval('#events-table tbody tr', (rows) => rows.map((r) => r.dataset.event))).sort();
      equal(events.join(','), 'order.paid,refund.succeeded', 'webhook events of the order');
      equal((await tableTexts(page, '#events-table')).map((e) => e[1]).sort().join(','),
        [EN['event.order.paid'], EN['event.refund.succeeded']].sort().join(','), 'events in words');
    });

    await check('the daily chart totals each provider exactly and agree with the summary report', async () => {
      await page.goto(`${gw.base}/console#chart`);
      await page.waitForSelector('#chart svg');
      await page.waitForSelector('#chart-totals tbody tr[data-provider]');
      const totals = Object.fromEntries(await page.$$eval('#chart-totals tbody tr', (rows) => rows.map((r) => [r.dataset.provider, [...r.cells].map((c) => c.textContent.trim())])));
      equal(totals.wechat[0], EN['provider.wechat'], 'provider in words');
      equal(totals.wechat.slice(1).join('|'), '1|123.45|3.45|120.00|matches', 'WeChat totals');
      equal(totals.alipay.slice(1).join('|'), '2|20.04|0.02|20.02|matches', 'Alipay totals');
      const today = expectedShanghai(new Date().toISOString()).slice(0, 10);
      const wechatBar = await page.getAttribute(`#chart rect.paid[data-day="${today}"]`, 'data-paid');
      assert(['123.45', '20.04'].includes(wechatBar), `today's first paid bar: ${wechatBar}`);
      mkdirSync(SHOTS, { recursive: true });
      await page.locator('#chart-view').screenshot({ path: join(SHOTS, 'console-chart.png') });
    });

    await check('anomalies list what the API lists: the mismatched notify, linked to its order', async () => {
      const listed = await call('GET', `${gw.base}/v1/anomalies?limit=50`, gw.finance);
      await page.click('nav a[data-view=anomalies]');
      await page.waitForSelector('#anomalies-view:not([hidden]) #anomalies-table tbody tr');
      await page.waitForFunction(() => document.getElementById('anomalies-message').textContent === '');
      const rows = await tableTexts(page, '#anomalies-table');
      const mismatch = listed.data.find((a) => a.order_id === made.e2e_wx_mismatch.id);
      assert(mismatch, 'the API lists the mismatch');
      equal(rows.length, listed.data.length, 'one row per anomaly');
      const row = rows.find((cells) => cells[4] === made.e2e_wx_mismatch.id);
      assert(row, 'a row linking to the mismatched order');
      equal(row[1], EN['anomaly.payment_mismatch'], 'kind');
      equal(row[0], expectedShanghai(mismatch.created_at), 'anomaly time');
      await page.click(`#anomalies-table a[href="#order/${made.e2e_wx_mismatch.id}"]`);
      await page.waitForFunction(() => document.getElementById('order-title').textContent === 'Order e2e_wx_mismatch');
      const verdicts = (await tableTexts(page, '#callbacks-table')).map((c) => c[3]);
      assert(verdicts.includes(EN['verdict.mismatch']), `callback verdicts ${verdicts}`);
    });

    await check('the orders page screenshot is saved', async () => {
      await page.click('nav a[data-view=orders]');
      await page.click('#reset-filters');
      await page.waitForFunction(() => document.getElementById('orders-message').textContent === `${22} order(s) on this page.`);
      await page.screenshot({ path: join(SHOTS, 'console-orders.png'), fullPage: false });
      equal(await page.evaluate(() => document.documentElement.lang), 'en', 'an English browser gets English');
      assert(!(await page.textContent('body')).includes('⟦'), 'a catalogue key is missing');
    });

    await check('reconciliation: the days show matched and with-differences runs, and a not-ready bill says so', async () => {
      const today = expectedShanghai(new Date().toISOString()).slice(0, 10);
      const yesterday = new Date(Date.parse(`${today}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
      // Yesterday had no business: the provider has no bill and our books are empty, a verified empty day.
      const empty = await call('POST', `${gw.base}/v1/reconciliation/runs`, gw.finance, { app: 'sandbox', provider: 'alipay', day: yesterday });
      equal(empty.run.status, 'matched', 'yesterday with no business');
      // Today's Alipay bill leaves out the tea order, which our books have paid.
      await call('POST', `${gw.sandbox}/sandbox/faults`, null, {
        fault: 'bill_omit_trade', provider: 'alipay', api: 'alipay.data.dataservice.bill.downloadurl.query', out_trade_no: 'e2e_ali_tea',
      });
      // The WeChat bill is "still being made": nothing is stored and the page says why.
      await reconcileWechatThroughThePage(gw, page, 'bill_not_ready', today);
      await page.waitForFunction(() => document.getElementById('recon-now-message').classList.contains('error'));
      assert((await page.textContent('#recon-now-message')).includes('still making this bill'), await page.textContent('#recon-now-message'));
      // The Alipay day through the same form: reconciled with one difference.
      await page.selectOption('#recon-now select[name=provider]', 'alipay');
      await page.click('#recon-now button[type=submit]');
      await page.waitForFunction(() => /difference/.test(document.getElementById('recon-now-message').textContent));
      await page.waitForSelector(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=alipay]`);
      equal(await page.getAttribute(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=alipay]`, 'data-status'), 'differences', 'today');
      equal(await page.textContent(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=alipay]`), 'sandbox · Alipay: 1 difference(s)');
      equal(await page.getAttribute(`#recon-calendar .day[data-day="${yesterday}"] a.run[data-provider=alipay]`, 'data-status'), 'matched', 'yesterday');
      equal(await page.$$eval(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=wechat]`, (n) => n.length), 0, 'no WeChat run stored for a bill not ready');
      const before = new Date(Date.parse(`${yesterday}T00:00:00Z`) - 86_400_000).toISOString().slice(0, 10);
      equal(await page.textContent(`#recon-calendar .day[data-day="${before}"] .run.none[data-state=missed]`), 'not reconciled', 'an older day without a run');
      mkdirSync(SHOTS, { recursive: true });
      await page.locator('#reconciliation-view').screenshot({ path: join(SHOTS, 'console-reconciliation-days.png') });
    });

    await check('reconciliation: a day shows the bill beside our books and its difference', async () => {
      const today = expectedShanghai(new Date().toISOString()).slice(0, 10);
      const listed = await call('GET', `${gw.base}/v1/reconciliation/differences?app=sandbox&provider=alipay&day=${today}`, gw.finance);
      await page.click(`#recon-calendar .day[data-day="${today}"] a.run[data-provider=alipay]`);
      await page.waitForSelector('#recon-day-view:not([hidden]) #recon-differences tbody tr[data-difference-id]');
      equal(await page.textContent('#recon-day-title'), `${today} · sandbox · Alipay`);
      const totals = Object.fromEntries((await page.$$eval('#recon-totals tbody tr', (rows) => rows.map((r) => [r.dataset.line, [...r.cells].map((c) => c.textContent.trim())]))));
      const { bill, local } = listed.run;
      // Ours: the tea and the cake orders; the bill: only the cake. The difference is the tea.
      equal(totals.payments_count.slice(1).join('|'), `${bill.payments_count}|${local.payments_count}|-1`, 'payments');
      equal(local.payments_count, 2, 'our Alipay payments today');
      equal(totals.gross.slice(1).join('|'), `${(bill.gross / 100).toFixed(2)}|20.04|-19.99`, 'gross');
      equal(totals.refunds.slice(1).join('|'), '0.02|0.02|0.00', 'refunded');
      equal(totals.fees[1], (bill.fees / 100).toFixed(2), 'fees');
      equal(totals.net[1], (bill.net / 100).toFixed(2), 'net settlement');
      const rows = await tableTexts(page, '#recon-differences');
      equal(rows.length, listed.data.length, 'one row per difference');
      equal(rows.length, 1, 'only the omitted trade differs');
      equal(rows[0].slice(0, 5).join('|'), 'Missing in the bill|Payment|e2e_ali_tea||19.99', 'the omitted trade');
      equal(rows[0][6], expectedShanghai(made.e2e_ali_tea.paid_at), 'our paid time');
      equal(rows[0][8], 'Paid', 'our status');
    });

    await check('reconciliation: filters narrow the list and a resolution note is saved', async () => {
      await page.selectOption('#recon-filters select[name=category]', 'amount_mismatch');
      await page.waitForFunction(() => document.querySelector('#recon-differences tbody tr td.hint')?.textContent === 'No differences match these filters.');
      await page.selectOption('#recon-filters select[name=category]', '');
      await page.waitForSelector('#recon-differences tbody tr[data-difference-id]');
      await page.selectOption('#recon-filters select[name=kind]', 'refund');
      equal(await page.$$eval('#recon-differences tbody tr[data-difference-id]', (n) => n.length), 0, 'refund differences');
      await page.selectOption('#recon-filters select[name=kind]', '');
      await page.fill('#recon-filters input[name=search]', 'ali_tea');
      equal(await page.$$eval('#recon-differences tbody tr[data-difference-id]', (n) => n.length), 1, 'found by number');
      await page.selectOption('#recon-filters select[name=resolution]', 'resolved');
      equal(await page.$$eval('#recon-differences tbody tr[data-difference-id]', (n) => n.length), 0, 'resolved before any note');
      await page.selectOption('#recon-filters select[name=resolution]', 'open');
      await page.click('#recon-differences tr[data-difference-id] button.resolve');
      await page.fill('#recon-differences .resolution-editor textarea', 'Alipay support: bill reissued on T+2');
      await page.click('#recon-differences .resolution-editor button[type=submit]');
      await page.waitForFunction(() => document.getElementById('recon-day-message').textContent.startsWith('Resolution saved'));
      equal(await page.$$eval('#recon-differences tbody tr[data-difference-id]', (n) => n.length), 0, 'no open difference left');
      await page.selectOption('#recon-filters select[name=resolution]', 'resolved');
      const note = await page.textContent('#recon-differences tr[data-difference-id] td.resolution');
      assert(note.startsWith('Alipay support: bill reissued on T+2 — key key_'), note);
      const today = expectedShanghai(new Date().toISOString()).slice(0, 10);
      const stored = await call('GET', `${gw.base}/v1/reconciliation/differences?app=sandbox&provider=alipay&day=${today}`, gw.finance);
      equal(stored.data[0].resolution?.note, 'Alipay support: bill reissued on T+2', 'the note the API keeps');
      // Still there after a reload: it came from the server, not the page.
      await page.reload();
      await page.waitForSelector('#recon-differences tr[data-difference-id] td.resolution');
      equal(await page.textContent('#recon-differences tr[data-difference-id] td.resolution'), note, 'after a reload');
      await page.locator('#recon-day-view').screenshot({ path: join(SHOTS, 'console-reconciliation.png') });
    });

    await check('reconciliation: the differences CSV and the raw bill file download with the key', async () => {
      const [csvDownload] = await Promise.all([page.waitForEvent('download'), page.click('#recon-export')]);
      const csv = readFileSync(await csvDownload.path(), 'utf8');
      assert(csv.startsWith('\uFEFFcategory,kind,out_trade_no'), 'a BOM and the header');
      assert(csv.includes('missing_in_bill,payment,e2e_ali_tea') && csv.includes('Alipay support: bill reissued on T+2'), csv);
      const [billDownload] = await Promise.all([page.waitForEvent('download'), page.click('#recon-bill-file')]);
      const bytes = readFileSync(await billDownload.path());
      equal(bytes.subarray(0, 2).toString('latin1'), 'PK', 'the Alipay zip as the provider sent it');
      assert(/^bill-sandbox-alipay-\d{4}-\d{2}-\d{2}\.csv\.zip$/.test(billDownload.suggestedFilename()), billDownload.suggestedFilename());
    });

    await check('reconciliation: a bill that does not parse is a failed day with its reason and its raw file', async () => {
      const today = expectedShanghai(new Date().toISOString()).slice(0, 10);
      // Half the gzip: the run fails, keeps the file and changes no order.
      await reconcileWechatThroughThePage(gw, page, 'truncated_body', today);
      const chip = `#recon-calendar .day[data-day="${today}"] a.run[data-provider=wechat]`;
      await page.waitForSelector(chip);
      equal(await page.textContent('#recon-now-message'), `${today} sandbox · WeChat Pay: failed.`);
      equal(await page.getAttribute(chip, 'data-status'), 'failed');
      assert((await page.getAttribute(chip, 'title')).includes('gzip'), 'the reason on hover');
      await page.click(chip);
      await page.waitForSelector('#recon-day-view:not([hidden]) #recon-day-status .failure');
      assert((await page.textContent('#recon-day-status .failure')).includes('gzip'), 'the reason on the day');
      equal(await page.textContent('#recon-totals tbody'), EN['recon.failed_totals'], 'no totals for a bill that did not parse');
      equal(await page.textContent('#recon-differences tbody'), EN['recon.failed_none']);
      const [billDownload] = await Promise.all([page.waitForEvent('download'), page.click('#recon-bill-file')]);
      equal(readFileSync(await billDownload.path()).subarray(0, 2).toString('hex'), '1f8b', 'the half gzip, as received');
      equal((await call('GET', `${gw.base}/v1/orders/${made.e2e_wx_pending.id}`, gw.merchant)).status, 'pending', 'no order changed');
    });

    await check('the key never appears in a URL and sign-out forgets it', async () => {
      const leaks = requestedUrls.filter((url) => url.includes(gw.finance) || url.includes(gw.merchant));
      equal(leaks.length, 0, 'URLs carrying a key');
      assert(requestedUrls.some((url) => url.includes('/v1/orders/export.csv')), 'the export went to the API');
      equal(await page.evaluate(() => sessionStorage.getItem('paygate.financeKey')), gw.finance, 'kept in sessionStorage');
      equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
      assert(!gw.log().includes(gw.finance), 'the gateway log does not contain the key');
      await page.click('#sign-out');
      await page.waitForSelector('#sign-in-view:not([hidden])');
      equal(await page.evaluate(() => sessionStorage.getItem('paygate.financeKey')), null, 'forgotten on sign-out');
    });

    await check('the page ran without script errors or CSP violations', async () => {
      equal(pageProblems.join('\n'), '', 'problems');
    });

    await chineseChecks(browser, gw, made);
  } finally {
    await browser?.close();
    gw.child.kill('SIGTERM');
    rmSync(workdir, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (error) {
  await check('the test environment starts', () => { throw error; });
}
process.exit(finish());
