// A tiny test harness: named checks, a running tally, and the closing "N passed, N failed" line.
let passed = 0;
let failed = 0;

/** Runs one named check; a thrown error fails it and the run goes on to the next. */
export async function check(name, body) {
  try {
    await body();
    passed += 1;
    process.stdout.write(`ok   ${name}\n`);
  } catch (error) {
    failed += 1;
    process.stdout.write(`FAIL ${name}\n     ${String(error?.stack ?? error).split('\n').join('\n     ')}\n`);
  }
}

/** Throws unless `actual` and `expected` are the same (strings compared exactly). */
export function equal(actual, expected, what = 'value') {
  if (actual !== expected) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

/** Throws with `message` unless `condition`. */
export function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** Prints the closing line and returns the process exit code. */
export function finish() {
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  return failed === 0 && passed > 0 ? 0 : 1;
}
