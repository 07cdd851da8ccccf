// The finance console: sign in with a finance key, then read the JSON finance API with it.
// The key lives in sessionStorage only (this tab, gone on close), travels only in the
// Authorization header, and is never written to a URL, the DOM or the browser console.
// Everything from the API is inserted as text (textContent), never as markup: callback bodies
// are attacker-controlled input.
import {
  addDays, dailyTotals, daysBetween, fenToYuan, formatShanghai, shanghaiDay, shanghaiMidnight,
  weekday, yuanToFen,
} from './format.js';

const KEY_SLOT = 'paygate.financeKey';
const PROVIDERS = ['wechat', 'alipay'];
const $ = (id) => document.getElementById(id);

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, message, code = '') {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, key = sessionStorage.getItem(KEY_SLOT), { method = 'GET', body } = {}) {
  const response = await fetch(path, {
    method,
    headers: {
      Authorization: `Bearer ${key}`,
      Accept: 'application/json',
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    let code = '';
    try {
      const answer = await response.json();
      message = answer?.error?.message ?? message;
      code = answer?.error?.code ?? '';
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 401 && key === sessionStorage.getItem(KEY_SLOT)) {
      signOut('The key was refused; sign in again.');
    }
    throw new ApiError(response.status, message, code);
  }
  return response;
}

const apiJson = async (path) => (await api(path)).json();

// ---------- small DOM helpers ----------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

const cell = (text, cls = '') => el('td', { class: cls, text: text ?? '' });
const moneyCell = (fen) => cell(fenToYuan(fen), 'num');
const timeCell = (instant) => cell(formatShanghai(instant), 'time');

function fillTable(table, rows, emptyText) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const columns = $(table).tHead.rows[0].cells.length;
    body.append(el('tr', {}, el('td', { colspan: String(columns), class: 'hint', text: emptyText })));
  }
}

function say(id, text, isError = false) {
  $(id).textContent = text;
  $(id).classList.toggle('error', isError);
}

// ---------- sign in / out ----------

async function signIn(event) {
  event.preventDefault();
  const input = $('finance-key');
  const key = input.value.trim();
  input.value = '';
  say('sign-in-error', '');
  try {
    // Anomalies are finance-only, so a merchant key is refused here rather than half-working.
    await api('/v1/anomalies?limit=1', key);
  } catch (error) {
    say('sign-in-error', error.status === 401 || error.status === 403
      ? 'That is not a valid finance key.' : `Cannot reach the gateway: ${error.message}`, true);
    return;
  }
  sessionStorage.setItem(KEY_SLOT, key);
  if (!location.hash || location.hash === '#') location.hash = '#orders';
  route();
}

function signOut(message = '') {
  sessionStorage.removeItem(KEY_SLOT);
  say('sign-in-error', message, Boolean(message));
  route();
}

// ---------- orders ----------

const ordersPaging = { cursors: [null], page: 0, next: null };

/** The API query of the filter form; dates are Shanghai days, amounts yuan. */
function orderQuery() {
  const form = new FormData($('filters'));
  const query = new URLSearchParams();
  for (const name of ['status', 'provider', 'app', 'channel', 'out_trade_no', 'out_trade_no_prefix']) {
    const value = String(form.get(name) ?? '').trim();
    if (value) query.set(name, value);
  }
  for (const field of ['created', 'paid']) {
    const from = form.get(`${field}_from`);
    const to = form.get(`${field}_to`);
    if (from) query.set(`${field}_from`, shanghaiMidnight(from));
    // "to" is inclusive for people and exclusive for the API: the next day's midnight.
    if (to) query.set(`${field}_to`, shanghaiMidnight(addDays(to, 1)));
  }
  for (const name of ['amount_min', 'amount_max']) {
    const value = String(form.get(name) ?? '').trim();
    if (value) query.set(name, yuanToFen(value).toString());
  }
  return query;
}

async function loadOrders() {
  let query;
  try {
    query = orderQuery();
  } catch (error) {
    say('orders-message', error.message, true);
    return;
  }
  query.set('limit', new FormData($('filters')).get('limit') ?? '50');
  const cursor = ordersPaging.cursors[ordersPaging.page];
  if (cursor) query.set('cursor', cursor);
  say('orders-message', 'Loading…');
  try {
    const page = await apiJson(`/v1/orders?${query}`);
    ordersPaging.next = page.next_cursor;
    fillTable('orders-table', page.data.map(orderRow), 'No orders match these filters.');
    say('orders-message', `${page.data.length} order(s) on this page.`);
  } catch (error) {
    say('orders-message', error.message, true);
  }
  $('page-label').textContent = `Page ${ordersPaging.page + 1}`;
  $('prev-page').disabled = ordersPaging.page === 0;
  $('next-page').disabled = !ordersPaging.next;
}

function orderRow(order) {
  const open = () => { location.hash = `#order/${encodeURIComponent(order.id)}`; };
  return el('tr', { class: 'link', 'data-order-id': order.id, onclick: open },
    timeCell(order.created_at),
    cell(order.out_trade_no),
    cell(order.provider),
    cell(order.app),
    cell(order.channel),
    el('td', {}, el('span', { class: `status ${order.status}`, text: order.status })),
    moneyCell(order.amount),
    moneyCell(order.refunded_amount),
    timeCell(order.paid_at));
}

function restartOrders(event) {
  event?.preventDefault();
  Object.assign(ordersPaging, { cursors: [null], page: 0, next: null });
  loadOrders();
}

function nextPage() {
  if (!ordersPaging.next) return;
  ordersPaging.cursors[ordersPaging.page + 1] = ordersPaging.next;
  ordersPaging.page += 1;
  loadOrders();
}

function previousPage() {
  if (ordersPaging.page === 0) return;
  ordersPaging.page -= 1;
  loadOrders();
}

/** Fetches `path` with the key in the header and saves the answer as `filename` from a Blob. */
async function download(path, filename) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = el('a', { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return blob.size;
}

/** Export with the same filters: fetched with the header, then saved from a Blob. */
async function exportCsv() {
  let query;
  try {
    query = orderQuery();
  } catch (error) {
    say('orders-message', error.message, true);
    return;
  }
  say('orders-message', 'Exporting…');
  try {
    const size = await download(`/v1/orders/export.csv?${query}`, `paygate-orders-${shanghaiDay(new Date())}.csv`);
    say('orders-message', `Exported ${size} bytes.`);
  } catch (error) {
    say('orders-message', `Export failed: ${error.message}`, true);
  }
}

// ---------- one order ----------

async function showOrder(id) {
  say('order-message', 'Loading…');
  $('order-title').textContent = `Order ${id}`;
  $('order-fields').replaceChildren();
  fillTable('refunds-table', [], '');
  fillTable('callbacks-table', [], '');
  fillTable('events-table', [], '');
  try {
    const path = encodeURIComponent(id);
    const [order, refunds, callbacks, events] = await Promise.all([
      apiJson(`/v1/orders/${path}`),
      apiJson(`/v1/orders/${path}/refunds`),
      apiJson(`/v1/callbacks?order_id=${path}`),
      apiJson(`/v1/events?order_id=${path}`),
    ]);
    $('order-title').textContent = `Order ${order.out_trade_no}`;
    const fields = [
      ['Id', order.id], ['Out trade no', order.out_trade_no], ['Provider', order.provider],
      ['App', order.app], ['Channel', order.channel], ['Status', order.status],
      ['Amount ¥', fenToYuan(order.amount)], ['Refunded ¥', fenToYuan(order.refunded_amount)],
      ['Currency', order.currency], ['Subject', order.subject],
      ['Provider trade no', order.provider_trade_no ?? ''], ['Payer', order.payer_id ?? ''],
      ['Created', formatShanghai(order.created_at)], ['Paid', formatShanghai(order.paid_at)],
      ['Closed', formatShanghai(order.closed_at)], ['Expires', formatShanghai(order.expires_at)],
    ];
    $('order-fields').replaceChildren(...fields.flatMap(([name, value]) => [
      el('dt', { text: name }), el('dd', { 'data-field': name, text: value ?? '' })]));
    fillTable('refunds-table', refunds.data.map((r) => el('tr', {},
      timeCell(r.created_at), cell(r.out_refund_no), cell(r.status), moneyCell(r.amount),
      cell(r.reason ?? ''), timeCell(r.succeeded_at))), 'No refunds.');
    fillTable('callbacks-table', callbacks.data.map((c) => el('tr', {},
      timeCell(c.received_at), cell(c.provider), cell(c.kind),
      el('td', {}, el('span', { class: `verdict ${c.verdict}`, text: c.verdict })),
      cell(c.reason ?? ''), cell(c.body, 'body'))), 'No callbacks received.');
    fillTable('events-table', events.data.map((e) => el('tr', {},
      timeCell(e.created_at), cell(e.type), cell(e.status), cell(String(e.attempts.length), 'num'),
      cell(lastAttempt(e.attempts)), timeCell(e.delivered_at))), 'No webhook events.');
    say('order-message', '');
  } catch (error) {
    say('order-message', error.message, true);
  }
}

/** "HTTP 200 · 2026-11-23 09:35:58 GMT+8" for the newest attempt, or its error. */
function lastAttempt(attempts) {
  const last = attempts.at(-1);
  if (!last) return 'none yet';
  const outcome = last.response_status ? `HTTP ${last.response_status}` : (last.error ?? 'no answer');
  return `${outcome} · ${formatShanghai(last.attempted_at)}`;
}

// ---------- daily chart ----------

/** Every paid order of `provider` paid in the Shanghai days first..last, following cursors. */
async function paidOrders(provider, first, last) {
  const orders = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({
      provider,
      paid_from: shanghaiMidnight(first),
      paid_to: shanghaiMidnight(addDays(last, 1)),
      limit: '500',
    });
    if (cursor) query.set('cursor', cursor);
    const page = await apiJson(`/v1/orders?${query}`);
    orders.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return orders;
}

/**
 * The first and last day of a from/to form, or null after saying in `messageId` why not: both
 * needed, in order, at most 92 days (what one screen and the API's paging can carry).
 */
function dayRange(formId, messageId) {
  const form = new FormData($(formId));
  const first = String(form.get('from'));
  const last = String(form.get('to'));
  if (!first || !last || last < first) {
    say(messageId, 'Pick a first and a last day.', true);
    return null;
  }
  if (daysBetween(first, last).length > 92) {
    say(messageId, 'At most 92 days at a time.', true);
    return null;
  }
  return { first, last };
}

async function drawChart(event) {
  event?.preventDefault();
  const range = dayRange('chart-range', 'chart-message');
  if (!range) return;
  const { first, last } = range;
  say('chart-message', 'Loading…');
  try {
    const perProvider = await Promise.all(PROVIDERS.map(async (provider) =>
      [provider, dailyTotals(await paidOrders(provider, first, last), first, last)]));
    const summary = await apiJson(`/v1/reports/summary?${new URLSearchParams({
      from: shanghaiMidnight(first), to: shanghaiMidnight(addDays(last, 1)), group_by: 'provider',
    })}`);
    $('chart').replaceChildren(chartSvg(perProvider, daysBetween(first, last)));
    fillTable('chart-totals', perProvider.map(([provider, days]) =>
      totalsRow(provider, days, summary.data.find((row) => row.key === provider))), '');
    say('chart-message', '');
  } catch (error) {
    say('chart-message', error.message, true);
  }
}

function totalsRow(provider, days, reported) {
  const sum = { paid: 0n, refunded: 0n, net: 0n, count: 0 };
  for (const day of days.values()) {
    sum.paid += day.paid;
    sum.refunded += day.refunded;
    sum.net += day.net;
    sum.count += day.count;
  }
  const agrees = reported
    ? BigInt(reported.paid_amount) === sum.paid && BigInt(reported.refunded_amount) === sum.refunded
      && BigInt(reported.net_amount) === sum.net
    : sum.count === 0;
  return el('tr', { 'data-provider': provider },
    cell(provider), cell(String(sum.count), 'num'), moneyCell(sum.paid), moneyCell(sum.refunded),
    moneyCell(sum.net),
    cell(agrees ? 'matches' : `differs: report says net ${fenToYuan(reported?.net_amount ?? 0)}`,
      agrees ? 'check ok' : 'check error'));
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes = {}, text = '') {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text) node.textContent = text;
  return node;
}

/**
 * One panel per provider: green bars paid, orange bars refunded, a blue line net, per day.
 * Heights are pixels (floats are fine for drawing); every label is an exact fenToYuan string.
 */
function chartSvg(perProvider, days) {
  const panelHeight = 190;
  const left = 78;
  const plotHeight = 130;
  const step = Math.max(18, Math.min(56, 820 / days.length));
  const width = left + step * days.length + 20;
  const height = perProvider.length * panelHeight + 34;
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    'aria-label': 'Daily paid, refunded and net amounts by provider',
  });
  perProvider.forEach(([provider, totals], index) => {
    const top = index * panelHeight + 24;
    const values = [...totals.values()];
    let max = 0n;
    for (const v of values) for (const n of [v.paid, v.refunded, v.net]) if (n > max) max = n;
    if (max === 0n) max = 100n;
    const y = (fen) => top + plotHeight - (Number(fen) / Number(max)) * plotHeight;
    root.append(svg('text', { x: 8, y: top - 8, class: 'title' }, provider));
    root.append(svg('line', { x1: left, x2: width - 10, y1: y(0n), y2: y(0n), class: 'axis' }));
    root.append(svg('line', { x1: left, x2: width - 10, y1: y(max), y2: y(max), class: 'axis' }));
    root.append(svg('text', { x: left - 6, y: y(max) + 4, 'text-anchor': 'end' }, `¥${fenToYuan(max)}`));
    root.append(svg('text', { x: left - 6, y: y(0n) + 4, 'text-anchor': 'end' }, '¥0.00'));
    const points = [];
    days.forEach((day, i) => {
      const v = totals.get(day);
      const x = left + i * step;
      const bar = Math.max(3, step / 2 - 3);
      const tip = `${provider} ${day}: paid ¥${fenToYuan(v.paid)}, refunded ¥${fenToYuan(v.refunded)}, net ¥${fenToYuan(v.net)}`;
      const paidBar = svg('rect', { x: x + 2, y: y(v.paid), width: bar, height: y(0n) - y(v.paid), class: 'paid', 'data-day': day, 'data-paid': fenToYuan(v.paid) });
      paidBar.append(svg('title', {}, tip));
      const refundBar = svg('rect', { x: x + 2 + bar, y: y(v.refunded), width: bar, height: y(0n) - y(v.refunded), class: 'refunded' });
      refundBar.append(svg('title', {}, tip));
      root.append(paidBar, refundBar);
      points.push([x + 2 + bar, y(v.net)]);
      if (days.length <= 16 || i % Math.ceil(days.length / 16) === 0) {
        root.append(svg('text', { x: x + 2 + bar, y: top + plotHeight + 16, 'text-anchor': 'middle' }, day.slice(5)));
      }
    });
    root.append(svg('polyline', { points: points.map((p) => p.join(',')).join(' '), class: 'net' }));
    for (const [px, py] of points) root.append(svg('circle', { cx: px, cy: py, r: 2.5, class: 'net-dot' }));
  });
  const legendY = height - 10;
  [['paid', 'paid'], ['refunded', 'refunded'], ['net-dot', 'net (paid − refunded)']].forEach(([cls, label], i) => {
    root.append(svg('rect', { x: left + i * 170, y: legendY - 9, width: 10, height: 10, class: cls }));
    root.append(svg('text', { x: left + i * 170 + 14, y: legendY }, label));
  });
  return root;
}

// ---------- anomalies ----------

const anomaliesPaging = { next: null };

async function loadAnomalies(more = false) {
  const query = new URLSearchParams({ limit: '50' });
  if (more && anomaliesPaging.next) query.set('cursor', anomaliesPaging.next);
  say('anomalies-message', 'Loading…');
  try {
    const page = await apiJson(`/v1/anomalies?${query}`);
    anomaliesPaging.next = page.next_cursor;
    const rows = page.data.map((a) => el('tr', {},
      timeCell(a.created_at), cell(a.kind), cell(a.provider ?? ''), cell(a.app ?? ''),
      a.order_id
        ? el('td', {}, el('a', { href: `#order/${encodeURIComponent(a.order_id)}`, text: a.order_id }))
        : cell(''),
      cell(typeof a.detail === 'string' ? a.detail : JSON.stringify(a.detail), 'body')));
    if (more) $('anomalies-table').tBodies[0].append(...rows);
    else fillTable('anomalies-table', rows, 'No anomalies. Nothing needs a person.');
    say('anomalies-message', '');
  } catch (error) {
    say('anomalies-message', error.message, true);
  }
  $('anomalies-more').disabled = !anomaliesPaging.next;
}

// ---------- statement reconciliation ----------

const RUN_WORDS = { matched: 'matched', differences: 'differences', failed: 'failed' };

async function loadRuns(event) {
  event?.preventDefault();
  const range = dayRange('recon-range', 'recon-message');
  if (!range) return;
  const { first, last } = range;
  const app = String(new FormData($('recon-range')).get('app') ?? '').trim();
  say('recon-message', 'Loading…');
  try {
    const query = new URLSearchParams({ from: first, to: last });
    if (app) query.set('app', app);
    const runs = (await apiJson(`/v1/reconciliation/runs?${query}`)).data;
    $('recon-calendar').replaceChildren(calendar(runs, first, last));
    say('recon-message', runs.length ? '' : 'No reconciliation runs in these days.');
  } catch (error) {
    say('recon-message', error.message, true);
  }
}

/** A week-per-row grid of the days first..last, each day with one chip per run. */
function calendar(runs, first, last) {
  const byDay = new Map();
  for (const run of runs) byDay.set(run.day, [...(byDay.get(run.day) ?? []), run]);
  const today = shanghaiDay(new Date());
  const grid = el('div', { class: 'weeks' });
  for (const name of ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']) {
    grid.append(el('div', { class: 'weekday', text: name }));
  }
  for (let i = 0; i < weekday(first); i += 1) grid.append(el('div', { class: 'pad' }));
  for (const day of daysBetween(first, last)) {
    const dayRuns = byDay.get(day) ?? [];
    const cellNode = el('div', { class: `day${day > today ? ' future' : ''}`, 'data-day': day },
      el('div', { class: 'date', text: day }));
    for (const run of dayRuns) cellNode.append(runChip(run));
    if (dayRuns.length === 0 && day <= today) {
      cellNode.append(el('span', { class: 'run none', text: 'not reconciled' }));
    }
    grid.append(cellNode);
  }
  return grid;
}

function runChip(run) {
  const outcome = run.status === 'differences'
    ? `${run.differences_count} difference(s)` : RUN_WORDS[run.status] ?? run.status;
  return el('a', {
    class: `run ${run.status}`,
    href: `#reconciliation/${encodeURIComponent(run.app)}/${run.provider}/${run.day}`,
    'data-app': run.app,
    'data-provider': run.provider,
    'data-status': run.status,
    title: run.failure_reason ?? '',
    text: `${run.app} · ${run.provider}: ${outcome}`,
  });
}

async function reconcileNow(event) {
  event.preventDefault();
  const form = new FormData($('recon-now'));
  const request = {
    app: String(form.get('app') ?? '').trim(),
    provider: String(form.get('provider')),
    day: String(form.get('day')),
  };
  say('recon-now-message', 'Fetching the bill and reconciling…');
  try {
    const answer = await (await api('/v1/reconciliation/runs', undefined, { method: 'POST', body: request })).json();
    const run = answer.run;
    const paid = answer.paid.length ? ` Marked paid after the provider's query: ${answer.paid.join(', ')}.` : '';
    say('recon-now-message', `${run.day} ${run.app} · ${run.provider}: ${run.status === 'differences'
      ? `${run.differences_count} difference(s)` : RUN_WORDS[run.status] ?? run.status}.${paid}`);
    loadRuns();
  } catch (error) {
    say('recon-now-message', error.message, true);
  }
}

/** The day shown in the day view: app, provider, day and its run once loaded. */
const reconDay = { app: '', provider: '', day: '', run: null, differences: [] };

function differencesQuery() {
  const query = new URLSearchParams({ app: reconDay.app, provider: reconDay.provider, day: reconDay.day });
  const category = new FormData($('recon-filters')).get('category');
  if (category) query.set('category', String(category));
  return query;
}

async function showReconDay(app, provider, day) {
  Object.assign(reconDay, { app, provider, day, run: null, differences: [] });
  $('recon-day-title').textContent = `${day} · ${app} · ${provider}`;
  $('recon-day-status').replaceChildren();
  $('recon-totals').tBodies[0].replaceChildren();
  fillTable('recon-differences', [], '');
  await loadDifferences();
}

async function loadDifferences(event) {
  event?.preventDefault();
  say('recon-day-message', 'Loading…');
  try {
    const answer = await apiJson(`/v1/reconciliation/differences?${differencesQuery()}`);
    reconDay.run = answer.run;
    reconDay.differences = answer.data;
    showRun(answer.run);
    drawDifferences();
    say('recon-day-message', '');
  } catch (error) {
    say('recon-day-message', error.message, true);
  }
  $('recon-bill-file').disabled = !reconDay.run?.bill_file_id;
  $('recon-export').disabled = !reconDay.run;
}

function showRun(run) {
  const outcome = run.status === 'differences'
    ? `${run.differences_count} difference(s), ${run.held_count} held near midnight`
    : RUN_WORDS[run.status] ?? run.status;
  $('recon-day-status').replaceChildren(
    el('span', { class: `run ${run.status}`, 'data-status': run.status, text: outcome }),
    ` reconciled ${formatShanghai(run.finished_at)}`,
    ...(run.failure_reason ? [el('span', { class: 'error failure', text: ` ${run.failure_reason}` })] : []));
  const { bill, local } = run;
  const ourNet = local.gross - local.refunds;
  const billNetBeforeFees = bill.settlement_gross - bill.refunds;
  const count = (n) => cell(String(n), 'num');
  const line = (label, key, billCell, ourCell, diffCell) => el('tr', { 'data-line': key },
    el('th', { text: label }), billCell, ourCell, diffCell);
  const differenceCell = (billFen, ourFen) => {
    const delta = billFen - ourFen;
    return cell(fenToYuan(delta), delta === 0 ? 'num' : 'num differs');
  };
  const countDifference = (a, b) => cell(String(a - b), a === b ? 'num' : 'num differs');
  $('recon-totals').tBodies[0].replaceChildren(
    line('Payments', 'payments_count', count(bill.payments_count), count(local.payments_count),
      countDifference(bill.payments_count, local.payments_count)),
    line('Gross ¥', 'gross', moneyCell(bill.gross), moneyCell(local.gross), differenceCell(bill.gross, local.gross)),
    line('Refunds', 'refunds_count', count(bill.refunds_count), count(local.refunds_count),
      countDifference(bill.refunds_count, local.refunds_count)),
    line('Refunded ¥', 'refunds', moneyCell(bill.refunds), moneyCell(local.refunds), differenceCell(bill.refunds, local.refunds)),
    line('Net before fees ¥ (settled gross − refunds)', 'net_before_fees', moneyCell(billNetBeforeFees),
      moneyCell(ourNet), differenceCell(billNetBeforeFees, ourNet)),
    line('Fees ¥ (provider only)', 'fees', moneyCell(bill.fees), cell('—', 'num'), cell('', 'num')),
    line('Net settlement ¥ (after fees)', 'net', moneyCell(bill.net), cell('—', 'num'), cell('', 'num')));
}

/** The differences that pass the page's own filters (kind, resolution, number). */
function filteredDifferences() {
  const form = new FormData($('recon-filters'));
  const kind = String(form.get('kind') ?? '');
  const resolution = String(form.get('resolution') ?? '');
  const search = String(form.get('search') ?? '').trim();
  return reconDay.differences.filter((d) => (!kind || d.kind === kind)
    && (!resolution || (resolution === 'resolved') === Boolean(d.resolution))
    && (!search || d.out_trade_no.includes(search) || (d.out_refund_no ?? '').includes(search)));
}

function drawDifferences() {
  const rows = filteredDifferences().map(differenceRow);
  // The category filter is the API's, so the run's own count says whether the day had any.
  fillTable('recon-differences', rows, reconDay.run?.differences_count
    ? 'No differences match these filters.' : 'No differences: every line matched.');
}

function differenceRow(d) {
  const numbers = d.out_refund_no ? `${d.out_trade_no} / ${d.out_refund_no}` : d.out_trade_no;
  const notes = [d.held ? 'held' : '', d.near_midnight ? 'near midnight' : ''].filter(Boolean).join(', ');
  const resolution = d.resolution
    ? `${d.resolution.note} — ${d.resolution.by}, ${formatShanghai(d.resolution.at)}` : '';
  const row = el('tr', { 'data-difference-id': d.id, 'data-category': d.category },
    el('td', {}, el('span', { class: `category ${d.category}`, text: d.category }),
      ...(notes ? [el('span', { class: 'hint', text: ` (${notes})` })] : [])),
    cell(d.kind),
    cell(numbers),
    d.bill_amount === null ? cell('', 'num') : moneyCell(d.bill_amount),
    d.local_amount === null ? cell('', 'num') : moneyCell(d.local_amount),
    timeCell(d.bill_time),
    timeCell(d.local_time),
    cell(d.bill_status ?? ''),
    cell(d.local_status ?? ''),
    cell(resolution, 'resolution'),
    el('td', {}, el('button', {
      type: 'button', class: 'resolve', text: d.resolution ? 'Edit note' : 'Resolve',
      onclick: () => openResolution(row, d),
    })));
  return row;
}

/** Puts a note form under the difference's row; saving PUTs it and redraws the row. */
function openResolution(row, difference) {
  if (row.nextElementSibling?.classList.contains('resolution-editor')) row.nextElementSibling.remove();
  const note = el('textarea', { name: 'note', rows: '2', cols: '60', maxlength: '2000', required: '' });
  note.value = difference.resolution?.note ?? '';
  const message = el('span', { class: 'message', role: 'status' });
  const form = el('form', { class: 'resolution-form' },
    el('label', { text: 'Resolution note: what was done and why' }, note),
    el('button', { type: 'submit', text: 'Save' }),
    el('button', { type: 'button', text: 'Cancel', onclick: () => editor.remove() }),
    message);
  const editor = el('tr', { class: 'resolution-editor' },
    el('td', { colspan: String(row.cells.length) }, form));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.textContent = 'Saving…';
    message.classList.remove('error');
    try {
      const saved = await (await api(`/v1/reconciliation/differences/${encodeURIComponent(difference.id)}/resolution`,
        undefined, { method: 'PUT', body: { note: note.value.trim() } })).json();
      reconDay.differences = reconDay.differences.map((d) => (d.id === saved.id ? saved : d));
      editor.remove();
      drawDifferences();
      say('recon-day-message', `Resolution saved for ${saved.out_trade_no}.`);
    } catch (error) {
      message.textContent = error.message;
      message.classList.add('error');
    }
  });
  row.after(editor);
  note.focus();
}

async function exportDifferences() {
  say('recon-day-message', 'Exporting…');
  try {
    const size = await download(`/v1/reconciliation/differences.csv?${differencesQuery()}`,
      `differences-${reconDay.app}-${reconDay.provider}-${reconDay.day}.csv`);
    say('recon-day-message', `Exported ${size} bytes.`);
  } catch (error) {
    say('recon-day-message', `Export failed: ${error.message}`, true);
  }
}

async function downloadBillFile() {
  const id = reconDay.run?.bill_file_id;
  if (!id) return;
  say('recon-day-message', 'Downloading…');
  try {
    const size = await download(`/v1/reconciliation/files/${encodeURIComponent(id)}`,
      `bill-${reconDay.app}-${reconDay.provider}-${reconDay.day}${reconDay.provider === 'alipay' ? '.csv.zip' : '.csv.gz'}`);
    say('recon-day-message', `Downloaded ${size} bytes.`);
  } catch (error) {
    say('recon-day-message', `Download failed: ${error.message}`, true);
  }
}

// ---------- views ----------

const VIEWS = ['sign-in', 'orders', 'order', 'chart', 'anomalies', 'reconciliation', 'recon-day'];

function show(view) {
  for (const name of VIEWS) $(`${name}-view`).hidden = name !== view;
  $('nav').hidden = view === 'sign-in';
  for (const link of document.querySelectorAll('nav a')) {
    const parent = { order: 'orders', 'recon-day': 'reconciliation' }[view];
    link.classList.toggle('active', link.dataset.view === view || link.dataset.view === parent);
  }
}

let ordersLoaded = false;

function route() {
  if (!sessionStorage.getItem(KEY_SLOT)) {
    show('sign-in');
    $('finance-key').focus();
    return;
  }
  const [view, argument, ...rest] = location.hash.replace(/^#/, '').split('/');
  if (view === 'reconciliation' && argument && rest.length === 2) {
    show('recon-day');
    showReconDay(decodeURIComponent(argument), rest[0], rest[1]);
  } else if (view === 'reconciliation') {
    show('reconciliation');
    loadRuns();
  } else if (view === 'order' && argument) {
    show('order');
    showOrder(decodeURIComponent(argument));
  } else if (view === 'chart') {
    show('chart');
    drawChart();
  } else if (view === 'anomalies') {
    show('anomalies');
    loadAnomalies();
  } else {
    show('orders');
    if (!ordersLoaded) {
      ordersLoaded = true;
      loadOrders();
    }
  }
}

function start() {
  const today = shanghaiDay(new Date());
  const range = $('chart-range');
  range.elements.from.value = addDays(today, -13);
  range.elements.to.value = today;
  const reconRange = $('recon-range');
  // Four whole weeks, Monday to Sunday, ending with the week of today.
  const lastSunday = addDays(today, 6 - weekday(today));
  reconRange.elements.from.value = addDays(lastSunday, -27);
  reconRange.elements.to.value = lastSunday;
  $('recon-now').elements.day.value = addDays(today, -1);
  reconRange.addEventListener('submit', loadRuns);
  $('recon-now').addEventListener('submit', reconcileNow);
  $('recon-filters').addEventListener('submit', loadDifferences);
  for (const name of ['kind', 'resolution']) $('recon-filters').elements[name].addEventListener('change', drawDifferences);
  $('recon-filters').elements.search.addEventListener('input', drawDifferences);
  $('recon-filters').elements.category.addEventListener('change', loadDifferences);
  $('recon-export').addEventListener('click', exportDifferences);
  $('recon-bill-file').addEventListener('click', downloadBillFile);
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => signOut());
  $('filters').addEventListener('submit', restartOrders);
  $('filters').addEventListener('reset', () => setTimeout(restartOrders, 0));
  $('next-page').addEventListener('click', nextPage);
  $('prev-page').addEventListener('click', previousPage);
  $('export-csv').addEventListener('click', exportCsv);
  range.addEventListener('submit', drawChart);
  $('anomalies-more').addEventListener('click', () => loadAnomalies(true));
  window.addEventListener('hashchange', route);
  route();
}

start();
