// dashboard.test.mjs PORT TOKEN OUTDIR [CASEWORKER_TOKEN] — the dashboard in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core), against a running
// passerelled loaded with data.  Started by tests/test-dashboard.c, which answers the
// "@ctl ..." lines this script prints (push an event, restart the server) on its stdin.
//
// Checks, in order:
//   0. the first load (page, style, script, icon) weighs under 150 KB
//   1. a wrong token is refused with a clear message, and nothing else is shown
//   2. sign-in; territory 93, year 2024: every figure, breakdown, month of the chart and row
//      of the programme and site tables equals what GET /api/v1/counters answers
//   3. every control has an accessible name; text contrast >= 4.5:1 (computed styles)
//   4. the page fetches nothing from any other origin, and logs no error (CSP included)
//   5. 1280 and 360 pixels wide: no horizontal overflow of the page; screenshots to OUTDIR
//   6. the yearly report: ESF+ indicators on screen equal /api/v1/report; the CSV and
//      Markdown downloads equal the API's
//   7. live: an event pushed changes the figure on screen without a reload
//   8. the server restarts: the page reconnects by itself and live updates go on
//   9. a caseworker's token sees its territory only, and no yearly report
// Exit status 0 when every check passed; the first failure is printed and exits 1.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';

const [port, token, outdir, cwToken] = process.argv.slice(2);
if (!port || !token || !outdir) {
  console.error('usage: dashboard.test.mjs PORT TOKEN OUTDIR [CASEWORKER_TOKEN]');
  process.exit(2);
}
const BASE = `http://127.0.0.1:${port}`;
const CHROMIUM = '/usr/bin/chromium';
const DEADLINE_MS = 90_000;     // the whole script; the C test allows more
const LIVE_WAIT_MS = 10_000;    // "within a few seconds": the page needs ~0.3 s
const RECONNECT_WAIT_MS = 20_000; // the page's backoff tops at 10 s
const YEAR = '2024', TERR = '93';
const PAGE_BUDGET = 150 * 1024; // the limit for the first load
const SCREENSHOT_TIME = new Date('2025-01-15T10:30:00+01:00');

const t0 = Date.now();
let checks = 0;
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
function ok(cond, what) {
  if (!cond) throw new Error('FAILED: ' + what);
  checks++;
}
setTimeout(() => { console.log('FAILED: the script took more than', DEADLINE_MS, 'ms'); process.exit(1); },
           DEADLINE_MS).unref();

// ---- The C test's control channel.
const lines = createInterface({ input: process.stdin });
const waiting = [];
lines.on('line', (l) => { const w = waiting.shift(); if (w) w(l); });
function ctl(req) {
  return new Promise((resolve, reject) => {
    waiting.push((answer) => (answer === 'ok' ? resolve() : reject(new Error(`@ctl ${req}: ${answer}`))));
    console.log('@ctl ' + req);
  });
}

// ---- The API, as the page sees it.
async function api(path, as = 'json') {
  const res = await fetch(BASE + path, { headers: { Authorization: 'Bearer ' + token } });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return as === 'json' ? res.json() : res.text();
}
function counters(terr, year, month, extra = {}) {
  const q = new URLSearchParams();
  if (terr) q.set('terr', terr);
  q.set('year', year);
  if (month) q.set('month', String(month));
  for (const k in extra) q.set(k, extra[k]);
  return api('/api/v1/counters?' + q);
}

// ---- Reading numbers back from the screen (fr-FR: "1 234", "34,5", "30,0 %", "—").
const parseNum = (s) => {
  s = s.replace(/[\s\u00a0\u202f]/g, '').replace('%', '').replace(',', '.');
  return s === '—' ? null : Number(s);
};
function same(shown, want, kind, what) {
  const v = parseNum(shown);
  if (want === null || want === undefined) return ok(v === null, `${what}: shows "${shown}", API says nothing`);
  if (kind === 'pct') return ok(v !== null && Math.abs(v - want * 100) < 0.051, `${what}: shows "${shown}", API ${want}`);
  if (kind === 'dec') return ok(v !== null && Math.abs(v - want) < 0.051, `${what}: shows "${shown}", API ${want}`);
  ok(v === want, `${what}: shows "${shown}", API ${want}`);
}
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);

// ---- The browser.
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
async function newPage(width, height) {
  // A new context is a fresh profile (playwright makes a temporary user-data-dir), so
  // sessionStorage starts empty: each page signs in.
  const ctx = await browser.newContext({ viewport: { width, height }, locale: 'fr-FR',
                                         timezoneId: 'Europe/Paris', acceptDownloads: true });
  const page = await ctx.newPage();
  // The page's wall clock is fixed (timers still run), so that "Mis à jour à ..." and hence
  // the screenshots are the same from one run to the next.
  await page.clock.setFixedTime(SCREENSHOT_TIME);
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (!['http:', 'ws:', 'blob:', 'data:'].includes(u.protocol) || (u.protocol !== 'blob:' && u.host !== `127.0.0.1:${port}`))
      problems.push(`request to another origin: ${r.url()}`);
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // A failed fetch or WebSocket while the server restarts is expected; nothing else is.
    if (m.type() === 'error' && !/ERR_CONNECTION_REFUSED|WebSocket connection|Failed to load resource: net::ERR_/.test(m.text()))
      problems.push('console error: ' + m.text());
  });
  return page;
}

async function signIn(page, tok) {
  await page.goto(BASE + '/');
  await page.fill('#token', tok);
  await page.click('#signin-btn');
}

async function waitShown(page, key) {
  await page.waitForFunction((k) => document.body.dataset.shown === k, key, { timeout: 10_000 });
  await settle(page);
}

// Wait until the page has no refresh running or pending, twice 300 ms apart: an event that
// commits while a refresh is in flight may reach part of its queries only; the page then
// refreshes again, and the figures are compared once it is done.
async function settle(page) {
  for (let i = 0; i < 2; i++) {
    await page.waitForTimeout(300);
    await page.waitForFunction(() => document.body.dataset.idle === '1', null, { timeout: 10_000 });
  }
}

async function pickFigures(page, terr, year, month) {
  await page.selectOption('#f-terr', terr);
  await page.selectOption('#f-year', year);
  await page.selectOption('#f-month', month ? String(month) : '');
  await waitShown(page, ['tableau', terr, year, month || 0].join('|'));
}

async function figure(page, key) {
  return page.textContent(`#view-tableau .card [data-k="${key}"]`);
}

// Every figure on the figures page against the API.
async function checkFigures(page, terr, year, month) {
  const c = await counters(terr, year, month);
  for (const k of ['referred', 'followed', 'active', 'rsa', 'interviews', 'interview_minutes',
                   'missed', 'sessions', 'session_attendance'])
    same(await figure(page, k), c[k], 'int', `figure ${k}`);
  same(await figure(page, 'exited_total'), sum(c.exited), 'int', 'figure exits');
  same(await figure(page, 'mean_age'), c.mean_age, 'dec', 'figure mean_age');
  same(await figure(page, 'mean_months_followed'), c.mean_months_followed, 'dec', 'figure mean_months_followed');
  for (const k of ['housing_barrier_share', 'homeless_share', 'care_obligation_share'])
    same(await figure(page, k), c[k], 'pct', `figure ${k}`);
  for (const b of ['partner_referrals', 'outcomes_by_class', 'outcomes', 'exited', 'gender', 'education']) {
    for (const [code, n] of Object.entries(c[b])) {
      const cell = await page.textContent(`table[data-b="${b}"] tr[data-code="${code}"] td.n`);
      same(cell, n, 'int', `${b}.${code}`);
    }
  }
  // The chart: one bar label per month, the followed people of that month by default.
  const metric = await page.inputValue('#f-metric');
  for (let m = 1; m <= 12; m++) {
    const cm = await counters(terr, year, m);
    const label = await page.textContent(`#chart text[data-month="${m}"]`);
    same(label, metric === 'exited_total' ? sum(cm.exited) : cm[metric], 'int', `chart ${metric} month ${m}`);
  }
  // The tables: each row shown equals the API for that programme or site.
  for (const [table, key] of [['#t-prog', 'programme'], ['#t-site', 'site']]) {
    const codes = await page.$$eval(`${table} tbody tr[data-code]`, (trs) => trs.map((tr) => tr.dataset.code));
    ok(codes.length > 0, `${table} has rows`);
    for (const code of codes) {
      const r = await counters(terr, year, month, { [key]: code });
      for (const k of ['referred', 'followed', 'active', 'interviews', 'sessions'])
        same(await page.textContent(`${table} tr[data-code="${code}"] td[data-k="${k}"]`), r[k], 'int', `${table} ${code} ${k}`);
      same(await page.textContent(`${table} tr[data-code="${code}"] td[data-k="exited_total"]`), sum(r.exited), 'int', `${table} ${code} exits`);
    }
  }
  return c;
}

// Accessibility: names of controls, contrast of text, in the page as it is now.
async function checkAccessibility(page, where, minTexts = 20) {
  const res = await page.evaluate(() => {
    const out = { unnamed: [], lowContrast: [], texts: 0 };
    const visible = (e) => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
      return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
    const name = (e) => {
      if (e.getAttribute('aria-label')) return e.getAttribute('aria-label');
      const by = e.getAttribute('aria-labelledby');
      if (by) return by.split(/\s+/).map((id) => document.getElementById(id)?.textContent || '').join(' ');
      if (e.labels && e.labels.length) return [...e.labels].map((l) => l.textContent).join(' ');
      if (e.tagName === 'BUTTON' || e.tagName === 'A') return e.textContent;
      return e.getAttribute('title') || '';
    };
    for (const e of document.querySelectorAll('input, select, button, textarea, a[href], [role="region"]')) {
      if (!visible(e) && e.tagName !== 'A') continue;
      if (e.classList.contains('skip')) continue;
      if (!name(e).trim()) out.unnamed.push(e.outerHTML.slice(0, 80));
    }
    const rgb = (s) => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null;
      const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
    const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
    const blend = (fg, bg) => ({ r: fg.r * fg.a + bg.r * (1 - fg.a), g: fg.g * fg.a + bg.g * (1 - fg.a), b: fg.b * fg.a + bg.b * (1 - fg.a), a: 1 });
    const background = (e) => {
      // The first opaque background up the tree (semi-transparent ones blended over it).
      const layers = [];
      for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
      }
      let bg = { r: 255, g: 255, b: 255, a: 1 };
      for (const c of layers.reverse()) bg = blend(c, bg);
      return bg;
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      if (!t.textContent.trim()) continue;
      const e = t.parentElement;
      if (!e || !visible(e) || e.closest('svg, .skip, [hidden]')) continue;
      const s = getComputedStyle(e);
      const fg = rgb(s.color);
      const bg = background(e);
      const op = Number(s.opacity);
      const L1 = lum(blend(fg, bg)), L2 = lum(bg);
      const ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
      out.texts++;
      if (ratio < 4.5 || op < 1 && !e.closest('button:disabled'))
        out.lowContrast.push(`${ratio.toFixed(2)}:1 "${t.textContent.trim().slice(0, 30)}" (${s.color} on rgb(${bg.r},${bg.g},${bg.b}))`);
    }
    // SVG text of the chart: its fill against the panel.
    for (const e of document.querySelectorAll('svg text')) {
      const fg = rgb(getComputedStyle(e).fill);
      const bg = background(e.closest('svg').parentElement);
      if (!fg) continue;
      const L1 = lum(fg), L2 = lum(bg);
      const ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
      out.texts++;
      if (ratio < 4.5) out.lowContrast.push(`svg ${ratio.toFixed(2)}:1 "${e.textContent}"`);
    }
    return out;
  });
  ok(res.unnamed.length === 0, `${where}: controls without an accessible name: ${res.unnamed.join(' | ')}`);
  ok(res.texts >= minTexts, `${where}: text found to measure (${res.texts})`);
  ok(res.lowContrast.length === 0, `${where}: text contrast under 4.5:1: ${res.lowContrast.slice(0, 5).join(' | ')}`);
  log(`${where}: ${res.texts} texts at 4.5:1 or more, every control named`);
}

async function noOverflow(page, width, where) {
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  const wide = w <= width ? [] : await page.evaluate((W) => [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > W + 0.5 && !e.closest('.scroll'))
    .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className} right=${Math.round(e.getBoundingClientRect().right)}`), width);
  ok(w <= width, `${where}: the page is ${w} px wide in a ${width} px window: ${wide.join(' | ')}`);
}

let failed = null;
try {
  mkdirSync(outdir, { recursive: true });

  // 0. The first load: the page and its files, under the 150 KB budget.
  const page = await newPage(1280, 900);
  const loaded = [];
  const onResponse = async (r) => { try { loaded.push([r.url(), (await r.body()).length]); } catch (e) { /* no body */ } };
  page.on('response', onResponse);
  await page.goto(BASE + '/');
  await page.waitForLoadState('networkidle');
  page.off('response', onResponse);
  const weight = loaded.reduce((a, [, n]) => a + n, 0);
  ok(loaded.length >= 3 && weight < PAGE_BUDGET, `first load: ${weight} bytes in ${loaded.length} files (budget ${PAGE_BUDGET})`);
  log(`first load: ${weight} bytes in ${loaded.length} files:`, loaded.map(([u, n]) => `${new URL(u).pathname} ${n}`).join(', '));

  // 1. A wrong token.
  await signIn(page, 'ceci-n-est-pas-un-jeton');
  await page.waitForFunction(() => document.querySelector('#signin-error').textContent.length > 0, null, { timeout: 10_000 });
  const refused = await page.textContent('#signin-error');
  ok(/Jeton refusé/.test(refused), `wrong token: message "${refused}"`);
  ok(await page.isHidden('#view-tableau'), 'wrong token: the figures stay hidden');
  ok(await page.getAttribute('#signin-error', 'role') === 'alert', 'wrong token: the message is an alert');
  ok(await page.evaluate(() => sessionStorage.getItem('passerelle.token')) === null, 'wrong token: forgotten');
  log('wrong token refused:', refused);
  await checkAccessibility(page, 'sign-in page', 5);

  // 2. Sign in, pick a territory, compare with the API.
  await page.fill('#token', token);
  await page.click('#signin-btn');
  await page.waitForSelector('#view-tableau', { state: 'visible', timeout: 10_000 });
  ok(await page.textContent('#signin-error') === '', 'signed in: no error left');
  const terrs = await page.$$eval('#f-terr option', (o) => o.map((x) => x.value));
  ok(JSON.stringify(terrs) === JSON.stringify(['', '75', '93', '94', '77']), `coordinator territories: ${terrs}`);
  await pickFigures(page, TERR, YEAR, 0);
  const c93 = await checkFigures(page, TERR, YEAR, 0);
  ok(c93.followed > 0 && c93.interviews > 0 && c93.sessions > 0, 'the data set has activity in 93');
  log(`93 in ${YEAR}: ${c93.followed} followed, ${c93.interviews} interviews — screen equals API`);
  await pickFigures(page, '', YEAR, 6);
  await checkFigures(page, '', YEAR, 6);
  log(`all territories, June ${YEAR}: screen equals API`);
  await pickFigures(page, TERR, YEAR, 0);

  // 3 and 5. Accessibility and the wide screenshot.
  await checkAccessibility(page, 'figures, 1280 px');
  await noOverflow(page, 1280, 'figures, 1280 px');
  await page.screenshot({ path: `${outdir}/dashboard-1280.png`, fullPage: true });

  // 6. The yearly report.
  await page.click('#nav-rapport');
  await page.selectOption('#r-year', YEAR);
  await page.selectOption('#r-terr', '');
  await waitShown(page, ['rapport', '', YEAR].join('|'));
  const rep = await api(`/api/v1/report?year=${YEAR}&format=json`);
  const total = rep.rows.find((r) => r.dimension === 'total');
  for (const [k, v] of Object.entries(total.esf))
    same(await page.textContent(`#t-esf tr[data-dim="total"] td[data-k="${k}"]`), v, 'int', `ESF+ ${k}`);
  for (const r of rep.rows.filter((x) => x.dimension !== 'total')) {
    same(await page.textContent(`#t-esf tr[data-dim="${r.dimension}"][data-code="${r.code}"] td[data-k="participants"]`),
         r.esf.participants, 'int', `ESF+ participants ${r.dimension} ${r.code}`);
    same(await page.textContent(`#t-rep tr[data-dim="${r.dimension}"][data-code="${r.code}"] td[data-k="followed"]`),
         r.followed, 'int', `report followed ${r.dimension} ${r.code}`);
  }
  for (const [button, format] of [['#dl-csv', 'csv'], ['#dl-md', 'md']]) {
    const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.click(button)]);
    const path = await dl.path();
    const { readFileSync } = await import('node:fs');
    const got = readFileSync(path, 'utf8');
    const want = await api(`/api/v1/report?year=${YEAR}&format=${format}`, 'text');
    ok(got === want, `download ${format}: the file equals the API's (${got.length} vs ${want.length} bytes)`);
    ok(dl.suggestedFilename() === `rapport-${YEAR}-tous.${format}`, `download name ${dl.suggestedFilename()}`);
  }
  log(`yearly report ${YEAR}: ESF+ indicators equal the API; CSV and Markdown downloads equal the API`);
  await checkAccessibility(page, 'report, 1280 px');
  await noOverflow(page, 1280, 'report, 1280 px');
  await page.screenshot({ path: `${outdir}/report-1280.png`, fullPage: true });

  // 5. A 360-pixel phone.
  const phone = await newPage(360, 740);
  await signIn(phone, token);
  await phone.waitForSelector('#view-tableau', { state: 'visible', timeout: 10_000 });
  await pickFigures(phone, TERR, YEAR, 0);
  await checkFigures(phone, TERR, YEAR, 0);
  await checkAccessibility(phone, 'figures, 360 px');
  await noOverflow(phone, 360, 'figures, 360 px');
  await phone.screenshot({ path: `${outdir}/dashboard-360.png`, fullPage: true });
  log('360 px: figures equal the API, no horizontal overflow');

  // 7. Live: push an event, the figure changes without a reload.
  await page.click('#nav-tableau');
  await waitShown(page, ['tableau', TERR, YEAR, 0].join('|'));
  await page.evaluate(() => { window.__sameDocument = true; });
  const before = parseNum(await figure(page, 'referred'));
  await ctl(`push ${TERR} ${YEAR} 6`);
  const pushedAt = Date.now();
  await page.waitForFunction((n) => document.querySelector('.card [data-k="referred"]').textContent.replace(/\s/g, '') === String(n),
                             before + 1, { timeout: LIVE_WAIT_MS });
  const liveMs = Date.now() - pushedAt;
  await phone.waitForFunction((n) => document.querySelector('.card [data-k="referred"]').textContent.replace(/\s/g, '') === String(n),
                              before + 1, { timeout: LIVE_WAIT_MS });
  ok(await page.evaluate(() => window.__sameDocument === true), 'live: no reload');
  await settle(page);
  await checkFigures(page, TERR, YEAR, 0);
  log(`live: referred ${before} → ${before + 1} on both pages, ${liveMs} ms after the push, no reload`);

  // 8. The server restarts: the page reconnects and goes on.
  const welcomes = Number(await page.evaluate(() => document.body.dataset.welcomes));
  await ctl('restart');
  await page.waitForFunction((n) => Number(document.body.dataset.welcomes) > n &&
                             /En direct/.test(document.querySelector('#live').textContent),
                             welcomes, { timeout: RECONNECT_WAIT_MS });
  const t1 = Date.now();
  await ctl(`push ${TERR} ${YEAR} 7`);
  await page.waitForFunction((n) => document.querySelector('.card [data-k="referred"]').textContent.replace(/\s/g, '') === String(n),
                             before + 2, { timeout: RECONNECT_WAIT_MS });
  ok(await page.evaluate(() => window.__sameDocument === true), 'restart: no reload');
  await settle(page);
  await checkFigures(page, TERR, YEAR, 0);
  log(`restart: reconnected, referred → ${before + 2} ${Date.now() - t1} ms after the push`);

  // 9. A caseworker of 93.
  if (cwToken) {
    const cw = await newPage(1280, 900);
    await signIn(cw, cwToken);
    await cw.waitForSelector('#view-tableau', { state: 'visible', timeout: 10_000 });
    const opts = await cw.$$eval('#f-terr option', (o) => o.map((x) => x.value));
    ok(JSON.stringify(opts) === JSON.stringify(['93']), `caseworker 93 territories: ${opts}`);
    ok(await cw.isHidden('#nav-rapport'), 'caseworker: no yearly report link');
    await cw.selectOption('#f-year', YEAR);
    await waitShown(cw, ['tableau', '93', YEAR, 0].join('|'));
    same(await figure(cw, 'followed'), (await counters('93', YEAR, 0)).followed, 'int', 'caseworker followed');
    log('caseworker 93: sees 93 only, no report');
  }

  ok(problems.length === 0, 'page problems: ' + problems.join(' | '));
} catch (e) {
  failed = e;
} finally {
  await browser.close().catch(() => {});
}
if (failed) {
  console.log(failed.stack || String(failed));
  process.exit(1);
}
console.log(`dashboard: ${checks} checks passed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(0);
