// The finance console: sign in with a finance key, then read the JSON finance API with it.
// The key lives in sessionStorage only (this tab, gone on close), travels only in the
// Authorization header, and is never written to a URL, the DOM or the browser console.
// Everything from the API is inserted as text (textContent), never as markup: callback bodies
// are attacker-controlled input. Every word shown comes from the language catalogues through
// i18n.js (t for labels and messages, label for the API's codes); the API's own English
// messages are kept only as a tooltip of the translated error.
import {
  addDays, dailyTotals, daysBetween, fenToYuan, formatShanghai, shanghaiDay, shanghaiMidnight,
  weekday, yuanToFen,
} from './format.js';
import {
  has, label, language, preferredLanguage, rememberLanguage, t, translatePage, useLanguage,
} from './i18n.js';

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
      signOut(t('sign_in.refused'));
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

function say(id, text, isError = false, detail = '') {
  $(id).textContent = text;
  $(id).classList.toggle('error', isError);
  // The API's English message, for whoever reports the problem to the developers.
  if (detail) $(id).title = detail;
  else $(id).removeAttribute('title');
}

/** What to tell people about `error`: an API error by its code, in their language. */
function errorText(error) {
  if (error instanceof ApiError) {
    if (error.code && has(`error.${error.code}`)) return t(`error.${error.code}`);
    return error.code ? t('error.generic', { code: error.code }) : t('error.http', { status: error.status });
  }
  // fetch rejects with a TypeError when the gateway cannot be reached at all.
  if (error instanceof TypeError) return t('error.network');
  return error.message;
}

/** Shows `error` in `id`, optionally inside the `key` message's `{message}`. */
function sayError(id, error, key = '') {
  const text = errorText(error);
  say(id, key ? t(key, { message: text }) : text, true, error instanceof ApiError ? error.message : '');
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
    if (error.status === 401 || error.status === 403) say('sign-in-error', t('sign_in.invalid_key'), true);
    else sayError('sign-in-error', error, 'sign_in.unreachable');
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
    if (!value) continue;
    try {
      query.set(name, yuanToFen(value).toString());
    } catch {
      throw new Error(t('error.amount', { text: value }));
    }
  }
  return query;
}

async function loadOrders() {
  let query;
  try {
    query = orderQuery();
  } catch (error) {
    sayError('orders-message', error);
    return;
  }
  query.set('limit', new FormData($('filters')).get('limit') ?? '50');
  const cursor = ordersPaging.cursors[ordersPaging.page];
  if (cursor) query.set('cursor', cursor);
  say('orders-message', t('common.loading'));
  try {
    const page = await apiJson(`/v1/orders?${query}`);
    ordersPaging.next = page.next_cursor;
    fillTable('orders-table', page.data.map(orderRow), t('orders.none'));
    say('orders-message', t('orders.count', { count: page.data.length }));
  } catch (error) {
    sayError('orders-message', error);
  }
  $('page-label').textContent = t('orders.page', { page: ordersPaging.page + 1 });
  $('prev-page').disabled = ordersPaging.page === 0;
  $('next-page').disabled = !ordersPaging.next;
}

function orderRow(order) {
  const open = () => { location.hash = `#order/${encodeURIComponent(order.id)}`; };
  return el('tr', { class: 'link', 'data-order-id': order.id, onclick: open },
    timeCell(order.created_at),
    cell(order.out_trade_no),
    cell(label('provider', order.provider)),
    cell(order.app),
    cell(label('channel', order.channel)),
    el('td', {}, el('span', { class: `status ${order.status}`, 'data-status': order.status, text: label('order_status', order.status) })),
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
    sayError('orders-message', error);
    return;
  }
  say('orders-message', t('common.exporting'));
  try {
    const size = await download(`/v1/orders/export.csv?${query}`, `paygate-orders-${shanghaiDay(new Date())}.csv`);
    say('orders-message', t('common.exported', { size }));
  } catch (error) {
    sayError('orders-message', error, 'common.export_failed');
  }
}

// ---------- one order ----------

async function showOrder(id) {
  say('order-message', t('common.loading'));
  $('order-title').textContent = t('order.title', { id });
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
    $('order-title').textContent = t('order.title', { id: order.out_trade_no });
    const fields = [
      ['id', order.id], ['out_trade_no', order.out_trade_no], ['provider', label('provider', order.provider)],
      ['app', order.app], ['channel', label('channel', order.channel)], ['status', label('order_status', order.status)],
      ['amount', fenToYuan(order.amount)], ['refunded', fenToYuan(order.refunded_amount)],
      ['currency', order.currency], ['subject', order.subject],
      ['provider_trade_no', order.provider_trade_no ?? ''], ['payer', order.payer_id ?? ''],
      ['created', formatShanghai(order.created_at)], ['paid', formatShanghai(order.paid_at)],
      ['closed', formatShanghai(order.closed_at)], ['expires', formatShanghai(order.expires_at)],
    ];
    $('order-fields').replaceChildren(...fields.flatMap(([name, value]) => [
      el('dt', { text: t(`field.${name}`) }), el('dd', { 'data-field': name, text: value ?? '' })]));
    fillTable('refunds-table', refunds.data.map((r) => el('tr', {},
      timeCell(r.created_at), cell(r.out_refund_no), cell(label('refund_status', r.status)), moneyCell(r.amount),
      cell(r.reason ?? ''), timeCell(r.succeeded_at))), t('order.no_refunds'));
    fillTable('callbacks-table', callbacks.data.map((c) => el('tr', { 'data-provider': c.provider, 'data-verdict': c.verdict },
      timeCell(c.received_at), cell(label('provider', c.provider)), cell(label('callback_kind', c.kind)),
      el('td', {}, el('span', { class: `verdict ${c.verdict}`, text: label('verdict', c.verdict) })),
      cell(c.reason ?? ''), cell(c.body, 'body'))), t('order.no_callbacks'));
    fillTable('events-table', events.data.map((e) => el('tr', { 'data-event': e.type },
      timeCell(e.created_at), cell(label('event', e.type)), cell(label('delivery', e.status)),
      cell(String(e.attempts.length), 'num'), cell(lastAttempt(e.attempts)), timeCell(e.delivered_at))),
    t('order.no_events'));
    say('order-message', '');
  } catch (error) {
    sayError('order-message', error);
  }
}

/** "HTTP 200 · 2026-11-23 09:35:58 GMT+8" for the newest attempt, or its error. */
function lastAttempt(attempts) {
  const last = attempts.at(-1);
  if (!last) return t('common.none_yet');
  const outcome = last.response_status
    ? t('order.http_status', { status: last.response_status }) : (last.error ?? t('order.no_answer'));
  return t('order.attempt', { outcome, time: formatShanghai(last.attempted_at) });
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
const MAX_DAYS = 92;

function dayRange(formId, messageId) {
  const form = new FormData($(formId));
  const first = String(form.get('from'));
  const last = String(form.get('to'));
  if (!first || !last || last < first) {
    say(messageId, t('common.pick_days'), true);
    return null;
  }
  if (daysBetween(first, last).length > MAX_DAYS) {
    say(messageId, t('common.too_many_days', { max: MAX_DAYS }), true);
    return null;
  }
  return { first, last };
}

async function drawChart(event) {
  event?.preventDefault();
  const range = dayRange('chart-range', 'chart-message');
  if (!range) return;
  const { first, last } = range;
  say('chart-message', t('common.loading'));
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
    sayError('chart-message', error);
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
    cell(label('provider', provider)), cell(String(sum.count), 'num'), moneyCell(sum.paid),
    moneyCell(sum.refunded), moneyCell(sum.net),
    cell(agrees ? t('chart.matches') : t('chart.differs', { net: fenToYuan(reported?.net_amount ?? 0) }),
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
    'aria-label': t('chart.aria'),
  });
  perProvider.forEach(([provider, totals], index) => {
    const top = index * panelHeight + 24;
    const values = [...totals.values()];
    let max = 0n;
    for (const v of values) for (const n of [v.paid, v.refunded, v.net]) if (n > max) max = n;
    if (max === 0n) max = 100n;
    const y = (fen) => top + plotHeight - (Number(fen) / Number(max)) * plotHeight;
    const name = label('provider', provider);
    root.append(svg('text', { x: 8, y: top - 8, class: 'title' }, name));
    root.append(svg('line', { x1: left, x2: width - 10, y1: y(0n), y2: y(0n), class: 'axis' }));
    root.append(svg('line', { x1: left, x2: width - 10, y1: y(max), y2: y(max), class: 'axis' }));
    root.append(svg('text', { x: left - 6, y: y(max) + 4, 'text-anchor': 'end' }, `¥${fenToYuan(max)}`));
    root.append(svg('text', { x: left - 6, y: y(0n) + 4, 'text-anchor': 'end' }, '¥0.00'));
    const points = [];
    days.forEach((day, i) => {
      const v = totals.get(day);
      const x = left + i * step;
      const bar = Math.max(3, step / 2 - 3);
      const tip = t('chart.tip', {
        provider: name, day, paid: fenToYuan(v.paid), refunded: fenToYuan(v.refunded), net: fenToYuan(v.net),
      });
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
  [['paid', 'paid'], ['refunded', 'refunded'], ['net-dot', 'net']].forEach(([cls, key], i) => {
    root.append(svg('rect', { x: left + i * 170, y: legendY - 9, width: 10, height: 10, class: cls }));
    root.append(svg('text', { x: left + i * 170 + 14, y: legendY, class: 'legend' }, t(`chart.legend.${key}`)));
  });
  return root;
}

// ---------- anomalies ----------

const anomaliesPaging = { next: null };

async function loadAnomalies(more = false) {
  const query = new URLSearchParams({ limit: '50' });
  if (more && anomaliesPaging.next) query.set('cursor', anomaliesPaging.next);
  say('anomalies-message', t('common.loading'));
  try {
    const page = await apiJson(`/v1/anomalies?${query}`);
    anomaliesPaging.next = page.next_cursor;
    const rows = page.data.map((a) => el('tr', { 'data-kind': a.kind },
      timeCell(a.created_at), cell(label('anomaly', a.kind)), cell(label('provider', a.provider)), cell(a.app ?? ''),
      a.order_id
        ? el('td', {}, el('a', { href: `#order/${encodeURIComponent(a.order_id)}`, text: a.order_id }))
        : cell(''),
      cell(typeof a.detail === 'string' ? a.detail : JSON.stringify(a.detail), 'body')));
    if (more) $('anomalies-table').tBodies[0].append(...rows);
    else fillTable('anomalies-table', rows, t('anomalies.none'));
    say('anomalies-message', '');
  } catch (error) {
    sayError('anomalies-message', error);
  }
  $('anomalies-more').disabled = !anomaliesPaging.next;
}

// ---------- statement reconciliation ----------

/** "matched", "3 difference(s)" or "failed", in the page's language. */
const runOutcome = (run) => (run.status === 'differences'
  ? t('recon.differences_count', { count: run.differences_count }) : label('run_status', run.status));

async function loadRuns(event) {
  event?.preventDefault();
  const range = dayRange('recon-range', 'recon-message');
  if (!range) return;
  const { first, last } = range;
  const app = String(new FormData($('recon-range')).get('app') ?? '').trim();
  say('recon-message', t('common.loading'));
  try {
    const query = new URLSearchParams({ from: first, to: last });
    if (app) query.set('app', app);
    const runs = (await apiJson(`/v1/reconciliation/runs?${query}`)).data;
    $('recon-calendar').replaceChildren(calendar(runs, first, last));
    say('recon-message', runs.length ? '' : t('recon.no_runs'));
  } catch (error) {
    sayError('recon-message', error);
  }
}

/** A week-per-row grid of the days first..last, each day with one chip per run. */
function calendar(runs, first, last) {
  const byDay = new Map();
  for (const run of runs) byDay.set(run.day, [...(byDay.get(run.day) ?? []), run]);
  const today = shanghaiDay(new Date());
  const grid = el('div', { class: 'weeks' });
  for (let day = 0; day < 7; day += 1) grid.append(el('div', { class: 'weekday', text: t(`weekday.${day}`) }));
  for (let i = 0; i < weekday(first); i += 1) grid.append(el('div', { class: 'pad' }));
  for (const day of daysBetween(first, last)) {
    const dayRuns = byDay.get(day) ?? [];
    const cellNode = el('div', { class: `day${day > today ? ' future' : ''}`, 'data-day': day },
      el('div', { class: 'date', text: day }));
    for (const run of dayRuns) cellNode.append(runChip(run));
    if (dayRuns.length === 0 && day <= today) {
      const state = unreconciledState(day, today);
      cellNode.append(el('span', { class: `run none ${state}`, 'data-state': state, text: t(`recon.state.${state}`) }));
    }
    grid.append(cellNode);
  }
  return grid;
}

/**
 * Why a past day has no run, as far as the page can tell: the bill of day T comes on T+1, so
 * today is still open; yesterday's bill may not be ready yet (the daily job retries, and a
 * "not ready" answer stores nothing); an older day without a run was missed and needs a hand.
 */
function unreconciledState(day, today) {
  if (day === today) return 'open';
  if (day === addDays(today, -1)) return 'waiting';
  return 'missed';
}

function runChip(run) {
  return el('a', {
    class: `run ${run.status}`,
    href: `#reconciliation/${encodeURIComponent(run.app)}/${run.provider}/${run.day}`,
    'data-app': run.app,
    'data-provider': run.provider,
    'data-status': run.status,
    // The failure reason is the store's English text: shown on hover, as the API's messages are.
    title: run.failure_reason ?? '',
    text: t('recon.chip', { app: run.app, provider: label('provider', run.provider), outcome: runOutcome(run) }),
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
  say('recon-now-message', t('recon.now.busy'));
  try {
    const answer = await (await api('/v1/reconciliation/runs', undefined, { method: 'POST', body: request })).json();
    const { run } = answer;
    const done = t('recon.now.done', {
      day: run.day, app: run.app, provider: label('provider', run.provider), outcome: runOutcome(run),
    });
    const paid = answer.paid.length ? t('recon.now.paid', { orders: answer.paid.join(', ') }) : '';
    say('recon-now-message', paid ? `${done} ${paid}` : done);
    loadRuns();
  } catch (error) {
    sayError('recon-now-message', error);
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
  $('recon-day-title').textContent = t('recon.day_title', { day, app, provider: label('provider', provider) });
  $('recon-day-status').replaceChildren();
  $('recon-totals').tBodies[0].replaceChildren();
  fillTable('recon-differences', [], '');
  await loadDifferences();
}

async function loadDifferences(event) {
  event?.preventDefault();
  say('recon-day-message', t('common.loading'));
  try {
    const answer = await apiJson(`/v1/reconciliation/differences?${differencesQuery()}`);
    reconDay.run = answer.run;
    reconDay.differences = answer.data;
    showRun(answer.run);
    drawDifferences();
    say('recon-day-message', '');
  } catch (error) {
    sayError('recon-day-message', error);
  }
  $('recon-bill-file').disabled = !reconDay.run?.bill_file_id;
  $('recon-export').disabled = !reconDay.run;
}

function showRun(run) {
  const outcome = run.status === 'differences'
    ? t('recon.outcome_differences', { count: run.differences_count, held: run.held_count })
    : label('run_status', run.status);
  $('recon-day-status').replaceChildren(
    el('span', { class: `run ${run.status}`, 'data-status': run.status, text: outcome }),
    ' ',
    el('span', { class: 'hint', text: t('recon.reconciled_at', { time: formatShanghai(run.finished_at) }) }),
    ...(run.failure_reason ? [' ', el('span', { class: 'error failure', text: run.failure_reason })] : []));
  const { bill, local } = run;
  const ourNet = local.gross - local.refunds;
  const billNetBeforeFees = bill.settlement_gross - bill.refunds;
  const count = (n) => cell(String(n), 'num');
  const line = (key, billCell, ourCell, diffCell) => el('tr', { 'data-line': key },
    el('th', { text: t(`recon.line.${key}`) }), billCell, ourCell, diffCell);
  const differenceCell = (billFen, ourFen) => {
    const delta = billFen - ourFen;
    return cell(fenToYuan(delta), delta === 0 ? 'num' : 'num differs');
  };
  const countDifference = (a, b) => cell(String(a - b), a === b ? 'num' : 'num differs');
  if (run.status === 'failed') {
    // A bill that did not parse has no totals; zeros beside ours would read as a difference.
    fillTable('recon-totals', [], t('recon.failed_totals'));
    return;
  }
  $('recon-totals').tBodies[0].replaceChildren(
    line('payments_count', count(bill.payments_count), count(local.payments_count),
      countDifference(bill.payments_count, local.payments_count)),
    line('gross', moneyCell(bill.gross), moneyCell(local.gross), differenceCell(bill.gross, local.gross)),
    line('refunds_count', count(bill.refunds_count), count(local.refunds_count),
      countDifference(bill.refunds_count, local.refunds_count)),
    line('refunds', moneyCell(bill.refunds), moneyCell(local.refunds), differenceCell(bill.refunds, local.refunds)),
    line('net_before_fees', moneyCell(billNetBeforeFees), moneyCell(ourNet),
      differenceCell(billNetBeforeFees, ourNet)),
    line('fees', moneyCell(bill.fees), cell('—', 'num'), cell('', 'num')),
    line('net', moneyCell(bill.net), cell('—', 'num'), cell('', 'num')));
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
  let empty = 'recon.none';
  if (reconDay.run?.status === 'failed') empty = 'recon.failed_none';
  else if (reconDay.run?.differences_count) empty = 'recon.no_match';
  fillTable('recon-differences', rows, t(empty));
}

/** Who wrote a resolution: the API says "key <id>" for a finance key. */
function resolvedBy(by) {
  return by.startsWith('key ') ? t('recon.by_key', { id: by.slice(4) }) : by;
}

/** Our side's status, in the words of its kind (an order's or a refund's). */
function localStatus(d) {
  return label(d.kind === 'refund' ? 'refund_status' : 'order_status', d.local_status);
}

function differenceRow(d) {
  const numbers = d.out_refund_no ? `${d.out_trade_no} / ${d.out_refund_no}` : d.out_trade_no;
  const notes = [d.held ? t('recon.held') : '', d.near_midnight ? t('recon.near_midnight') : '']
    .filter(Boolean).join(', ');
  const resolution = d.resolution ? t('recon.resolution', {
    note: d.resolution.note, by: resolvedBy(d.resolution.by), at: formatShanghai(d.resolution.at),
  }) : '';
  const row = el('tr', { 'data-difference-id': d.id, 'data-category': d.category, 'data-kind': d.kind },
    el('td', {}, el('span', { class: `category ${d.category}`, text: label('category', d.category) }),
      ...(notes ? [el('span', { class: 'hint', text: ` (${notes})` })] : [])),
    cell(label('line_kind', d.kind)),
    cell(numbers),
    d.bill_amount === null ? cell('', 'num') : moneyCell(d.bill_amount),
    d.local_amount === null ? cell('', 'num') : moneyCell(d.local_amount),
    timeCell(d.bill_time),
    timeCell(d.local_time),
    cell(label('bill_status', d.bill_status)),
    cell(localStatus(d)),
    cell(resolution, 'resolution'),
    el('td', {}, el('button', {
      type: 'button', class: 'resolve', text: t(d.resolution ? 'recon.edit_note' : 'recon.resolve'),
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
    el('label', { text: t('recon.note_label') }, note),
    el('button', { type: 'submit', text: t('recon.save') }),
    el('button', { type: 'button', text: t('recon.cancel'), onclick: () => editor.remove() }),
    message);
  const editor = el('tr', { class: 'resolution-editor' },
    el('td', { colspan: String(row.cells.length) }, form));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.textContent = t('recon.saving');
    message.classList.remove('error');
    try {
      const saved = await (await api(`/v1/reconciliation/differences/${encodeURIComponent(difference.id)}/resolution`,
        undefined, { method: 'PUT', body: { note: note.value.trim() } })).json();
      reconDay.differences = reconDay.differences.map((d) => (d.id === saved.id ? saved : d));
      editor.remove();
      drawDifferences();
      say('recon-day-message', t('recon.saved', { order: saved.out_trade_no }));
    } catch (error) {
      message.textContent = errorText(error);
      message.classList.add('error');
    }
  });
  row.after(editor);
  note.focus();
}

async function exportDifferences() {
  say('recon-day-message', t('common.exporting'));
  try {
    const size = await download(`/v1/reconciliation/differences.csv?${differencesQuery()}`,
      `differences-${reconDay.app}-${reconDay.provider}-${reconDay.day}.csv`);
    say('recon-day-message', t('common.exported', { size }));
  } catch (error) {
    sayError('recon-day-message', error, 'common.export_failed');
  }
}

async function downloadBillFile() {
  const id = reconDay.run?.bill_file_id;
  if (!id) return;
  say('recon-day-message', t('common.downloading'));
  try {
    const size = await download(`/v1/reconciliation/files/${encodeURIComponent(id)}`,
      `bill-${reconDay.app}-${reconDay.provider}-${reconDay.day}${reconDay.provider === 'alipay' ? '.csv.zip' : '.csv.gz'}`);
    say('recon-day-message', t('common.downloaded', { size }));
  } catch (error) {
    sayError('recon-day-message', error, 'common.download_failed');
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

/** Switching language reloads the page: every view then draws itself in the new words. */
function switchLanguage(event) {
  rememberLanguage(event.target.value);
  location.reload();
}

async function start() {
  try {
    await useLanguage(preferredLanguage());
  } catch {
    // Without any catalogue the page shows its keys (⟦…⟧) rather than nothing at all.
    await useLanguage('en').catch(() => {});
  }
  translatePage();
  $('language').value = language();
  $('language').addEventListener('change', switchLanguage);
  document.body.classList.remove('loading');
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
