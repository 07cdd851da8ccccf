// Pure helpers of the finance console: money, Asia/Shanghai times, day arithmetic and the daily
// buckets of the chart. No DOM here, so Node can test these directly (e2e/format.test.mjs).

// Money is integer fen everywhere; yuan strings are made by moving the decimal point in the
// decimal digits, never by dividing a float (0.1 + 0.2 is not 0.3, and 1.005 rounds wrong).

/** Yuan with exactly two decimals ("19.99", "-0.01") from integer fen (number, bigint or digits). */
export function fenToYuan(fen) {
  let digits;
  if (typeof fen === 'bigint') {
    digits = fen.toString();
  } else if (typeof fen === 'number' && Number.isSafeInteger(fen)) {
    digits = String(fen);
  } else if (typeof fen === 'string' && /^-?\d+$/.test(fen)) {
    digits = fen;
  } else {
    throw new TypeError(`not an integer amount of fen: ${String(fen)}`);
  }
  const negative = digits.startsWith('-');
  const magnitude = (negative ? digits.slice(1) : digits).replace(/^0+/, '').padStart(3, '0');
  const yuan = `${magnitude.slice(0, -2)}.${magnitude.slice(-2)}`;
  return negative && /[1-9]/.test(magnitude) ? `-${yuan}` : yuan;
}

/** Integer fen (bigint) from a yuan string with at most two decimals; throws on anything else. */
export function yuanToFen(text) {
  const match = /^\s*(\d{1,13})(?:\.(\d{1,2}))?\s*$/.exec(String(text));
  if (!match) {
    throw new RangeError(`"${text}" is not an amount in yuan like 12 or 12.34`);
  }
  return BigInt(match[1]) * 100n + BigInt((match[2] ?? '').padEnd(2, '0'));
}

/** The zone every time is shown in: finance reconciles by the China business day. */
export const ZONE = 'Asia/Shanghai';

const shanghaiParts = new Intl.DateTimeFormat('en-US', {
  timeZone: ZONE,
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hourCycle: 'h23',
  timeZoneName: 'shortOffset',
});

function partsOf(instant) {
  const date = instant instanceof Date ? instant : new Date(instant);
  if (Number.isNaN(date.getTime())) {
    throw new RangeError(`not a time: ${String(instant)}`);
  }
  const parts = {};
  for (const { type, value } of shanghaiParts.formatToParts(date)) {
    parts[type] = value;
  }
  return parts;
}

/** "2026-11-23 09:35:58 GMT+8": an RFC 3339 instant in Asia/Shanghai, with the zone shown. */
export function formatShanghai(instant) {
  if (instant === null || instant === undefined || instant === '') {
    return '';
  }
  const p = partsOf(instant);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

/** The Asia/Shanghai calendar day ("YYYY-MM-DD") an instant falls on. */
export function shanghaiDay(instant) {
  const p = partsOf(instant);
  return `${p.year}-${p.month}-${p.day}`;
}

/**
 * RFC 3339 start of a Shanghai day, for the API's UTC filters. China has had no daylight saving
 * since 1991, so the offset is always +08:00.
 */
export function shanghaiMidnight(day) {
  checkDay(day);
  return `${day}T00:00:00+08:00`;
}

function checkDay(day) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) {
    throw new RangeError(`not a day (YYYY-MM-DD): ${day}`);
  }
}

/** `day` moved by `count` calendar days (integer date arithmetic in UTC, no zone involved). */
export function addDays(day, count) {
  checkDay(day);
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + count)).toISOString().slice(0, 10);
}

/** Monday = 0 … Sunday = 6 of a "YYYY-MM-DD" day (a calendar date, no zone involved). */
export function weekday(day) {
  checkDay(day);
  return (new Date(`${day}T00:00:00Z`).getUTCDay() + 6) % 7;
}

/** Every day from `first` to `last`, both included. */
export function daysBetween(first, last) {
  const days = [];
  for (let day = first; day <= last; day = addDays(day, 1)) {
    days.push(day);
  }
  return days;
}

const PAID_STATUSES = new Set(['paid', 'partially_refunded', 'refunded']);

/**
 * Daily paid / refunded / net fen (bigints) of `orders` over the Shanghai days `first`..`last`.
 * Same rule as `/v1/reports/summary`: an order counts on the day it was paid, with what has been
 * refunded of it so far; unpaid orders do not count.
 */
export function dailyTotals(orders, first, last) {
  const totals = new Map();
  for (const day of daysBetween(first, last)) {
    totals.set(day, { paid: 0n, refunded: 0n, net: 0n, count: 0 });
  }
  for (const order of orders) {
    if (!PAID_STATUSES.has(order.status) || !order.paid_at) {
      continue;
    }
    const bucket = totals.get(shanghaiDay(order.paid_at));
    if (!bucket) {
      continue;
    }
    bucket.paid += BigInt(order.amount);
    bucket.refunded += BigInt(order.refunded_amount);
    bucket.net = bucket.paid - bucket.refunded;
    bucket.count += 1;
  }
  return totals;
}
