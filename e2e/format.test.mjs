// Unit checks of the console's pure helpers, imported from the very file the gateway serves.
// Expected values are worked out by hand here, not produced by the code under test.
import {
  addDays, dailyTotals, fenToYuan, formatShanghai, shanghaiDay, shanghaiMidnight, weekday, yuanToFen,
} from '../crates/gateway/src/console/assets/format.js';
import { assert, check, equal } from './harness.mjs';

function throws(body, what) {
  try {
    body();
  } catch {
    return;
  }
  throw new Error(`${what} should have been refused`);
}

export async function formatChecks() {
  await check('fen become yuan with exactly two decimals, by moving the point', () => {
    equal(fenToYuan(1999), '19.99');
    equal(fenToYuan(1), '0.01');
    equal(fenToYuan(10), '0.10');
    equal(fenToYuan(100), '1.00');
    equal(fenToYuan(0), '0.00');
    equal(fenToYuan(-5), '-0.05');
    equal(fenToYuan(-0), '0.00');
    equal(fenToYuan('007'), '0.07');
    equal(fenToYuan(Number.MAX_SAFE_INTEGER), '90071992547409.91');
    equal(fenToYuan(123456789012345678901n), '1234567890123456789.01');
  });
  await check('amounts that are not whole fen are refused rather than rounded', () => {
    throws(() => fenToYuan(0.5), 'half a fen');
    throws(() => fenToYuan(2 ** 60), 'an unsafe float');
    throws(() => fenToYuan('1.5'), 'a decimal string');
    throws(() => fenToYuan(null), 'null');
  });
  await check('yuan typed by people become fen without floating point', () => {
    equal(yuanToFen('12'), 1200n);
    equal(yuanToFen('0.1'), 10n);
    equal(yuanToFen('0.29'), 29n); // 0.29 * 100 is 28.999999999999996 in floating point
    equal(yuanToFen(' 1.05 '), 105n);
    throws(() => yuanToFen('1.005'), 'three decimals');
    throws(() => yuanToFen('-1'), 'a negative amount');
    throws(() => yuanToFen('1e3'), 'an exponent');
    throws(() => yuanToFen(''), 'nothing');
  });
  await check('times are shown in Asia/Shanghai with the offset named', () => {
    equal(formatShanghai('2026-11-22T16:30:05Z'), '2026-11-23 00:30:05 GMT+8');
    equal(formatShanghai('2026-11-23T08:00:00+08:00'), '2026-11-23 08:00:00 GMT+8');
    equal(formatShanghai(null), '');
    equal(shanghaiDay('2026-11-22T15:59:59Z'), '2026-11-22');
    equal(shanghaiDay('2026-11-22T16:00:00Z'), '2026-11-23');
  });
  await check('day arithmetic crosses months, leap days and years', () => {
    equal(addDays('2024-02-28', 1), '2024-02-29');
    equal(addDays('2023-02-28', 1), '2023-03-01');
    equal(addDays('2026-12-31', 1), '2027-01-01');
    equal(addDays('2026-03-01', -1), '2026-02-28');
    equal(shanghaiMidnight('2026-11-23'), '2026-11-23T00:00:00+08:00');
    throws(() => shanghaiMidnight('23/11/2026'), 'a non-ISO day');
    equal(weekday('2026-11-23'), 0, '23 November 2026 is a Monday');
    equal(weekday('2026-11-29'), 6, '29 November 2026 is a Sunday');
    equal(weekday('2024-02-29'), 3, '29 February 2024 is a Thursday');
  });
  await check('daily totals count paid orders on their Shanghai paid day with their refunds', () => {
    const orders = [
      { status: 'paid', amount: 1999, refunded_amount: 0, paid_at: '2026-11-22T16:00:00Z' },
      { status: 'partially_refunded', amount: 12345, refunded_amount: 345, paid_at: '2026-11-23T01:00:00Z' },
      { status: 'refunded', amount: 5, refunded_amount: 5, paid_at: '2026-11-22T15:59:59Z' },
      { status: 'pending', amount: 777, refunded_amount: 0, paid_at: null },
      { status: 'paid', amount: 1, refunded_amount: 0, paid_at: '2026-11-30T00:00:00Z' },
    ];
    const days = dailyTotals(orders, '2026-11-22', '2026-11-23');
    equal([...days.keys()].join(','), '2026-11-22,2026-11-23');
    const first = days.get('2026-11-22');
    const second = days.get('2026-11-23');
    equal(first.paid, 5n, '22nd paid');
    equal(first.net, 0n, '22nd net');
    equal(second.paid, 14344n, '23rd paid');
    equal(second.refunded, 345n, '23rd refunded');
    equal(second.net, 13999n, '23rd net');
    assert(second.count === 2 && first.count === 1, 'order counts per day');
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { finish } = await import('./harness.mjs');
  await formatChecks();
  process.exit(finish());
}
