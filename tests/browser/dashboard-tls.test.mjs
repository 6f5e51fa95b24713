// dashboard-tls.test.mjs PORT TOKEN — the dashboard over https:// and wss:// in headless
// Chromium, against passerelled started with --tls-cert/--tls-key (a self-signed
// certificate, which this browser is told to accept).  Started by tests/test-dashboard.c.
//
// Over TLS, browsers speak HTTP/2 to the server (ALPN): this checks that every file of the
// page arrives whole that way (a body cut short is how a server's HTTP/2 writes go wrong),
// that the page signs in and goes live over wss://, and that its figures equal the API's.
// Exit status 0 when every check passed.

import { chromium } from 'playwright-core';

const [port, token] = process.argv.slice(2);
if (!port || !token) {
  console.error('usage: dashboard-tls.test.mjs PORT TOKEN');
  process.exit(2);
}
const BASE = `https://127.0.0.1:${port}`;
const t0 = Date.now();
const log = (...a) => console.log(`[tls ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
let checks = 0;
function ok(cond, what) {
  if (!cond) throw new Error('FAILED: ' + what);
  checks++;
}
setTimeout(() => { console.log('FAILED: the script took more than 60 s'); process.exit(1); }, 60_000).unref();

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--ignore-certificate-errors'],
});
let failed = null;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, ignoreHTTPSErrors: true,
                                         locale: 'fr-FR', timezoneId: 'Europe/Paris' });
  const page = await ctx.newPage();
  const files = [];
  page.on('response', async (r) => {
    try {
      const body = await r.body();
      files.push({ path: new URL(r.url()).pathname, len: body.length,
                   declared: Number(r.headers()['content-length'] ?? body.length) });
    } catch (e) { /* a response without a body */ }
  });
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));

  await page.goto(BASE + '/');
  await page.waitForLoadState('networkidle');
  const proto = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  ok(proto === 'h2', `the page came over HTTP/2 (ALPN), not ${proto}`);
  for (const p of ['/', '/app.css', '/app.js', '/favicon.svg']) {
    const f = files.find((x) => x.path === p);
    ok(f && f.len > 0 && f.len === f.declared, `${p} arrived whole over h2: ${f ? `${f.len} of ${f.declared} bytes` : 'missing'}`);
  }
  log(`page over ${proto}:`, files.map((f) => `${f.path} ${f.len}`).join(', '));

  await page.fill('#token', token);
  await page.click('#signin-btn');
  await page.waitForSelector('#view-tableau', { state: 'visible', timeout: 10_000 });
  await page.waitForFunction(() => /En direct/.test(document.querySelector('#live').textContent), null, { timeout: 10_000 });
  await page.selectOption('#f-terr', '93');
  await page.selectOption('#f-year', '2024');
  await page.selectOption('#f-month', '');
  await page.waitForFunction(() => document.body.dataset.shown === 'tableau|93|2024|0' && document.body.dataset.idle === '1',
                             null, { timeout: 10_000 });
  const api = await page.evaluate(async (tok) => {
    const r = await fetch('/api/v1/counters?terr=93&year=2024', { headers: { Authorization: 'Bearer ' + tok } });
    return r.json();
  }, token);
  for (const k of ['referred', 'followed', 'active', 'interviews', 'sessions']) {
    const shown = await page.textContent(`.card [data-k="${k}"]`);
    ok(Number(shown.replace(/[\s\u202f\u00a0]/g, '')) === api[k], `over TLS, ${k}: shows "${shown}", API ${api[k]}`);
  }
  ok(api.followed > 0, 'the demo data is there');
  log(`signed in over wss://, live; 93 in 2024: ${api.followed} followed — screen equals API`);
  ok(problems.length === 0, problems.join(' | '));
} catch (e) {
  failed = e;
} finally {
  await browser.close().catch(() => {});
}
if (failed) {
  console.log(failed.stack || String(failed));
  process.exit(1);
}
console.log(`dashboard over TLS: ${checks} checks passed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(0);
