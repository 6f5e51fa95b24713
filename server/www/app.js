/*
 * app.js — the passerelle dashboard: sign-in, territory figures, a chart of the months, tables
 * per programme and per site, the yearly report with its ESF+ indicators, live updates.
 * Plain JavaScript, no library and no build step: passerelled embeds this file
 * (server/www/gen-assets.sh) and the page loads nothing from anywhere else.
 *
 * Where the figures come from: the HTTP API of PROTOCOL-v1 with the bearer token —
 * GET /api/v1/counters (one query per figure set) and GET /api/v1/report (JSON on screen, CSV
 * and Markdown as downloads).  The page computes nothing but sums of a breakdown and the
 * formatting: every figure is the server's.
 *
 * Sign-in and live updates: the WebSocket /sync (subprotocol passerelle.v1, MessagePack).
 *   open ──hello{token}──▶ welcome{role, terr}  signed in: the territories this token may read
 *                    └──▶ error{unauthorized}   "jeton refusé", the token is forgotten
 *   welcome ──sub{from: head, live}──▶ events…  each chunk is acked at once and schedules a
 *                                               refresh (debounced: REFRESH_DELAY_MS after the
 *                                               first event, then at most one per
 *                                               REFRESH_MIN_MS while events keep coming)
 *   close (server restart, network) ──▶ retry with backoff (BACKOFF_*), full jitter; once
 *                                       welcomed again the figures are refreshed, since
 *                                       events may have committed while we were away
 * The events a subscription delivers may hold personal data (`pii`) for tokens allowed to
 * read it: the page never keeps, shows or logs an event; it only learns that one committed.
 *
 * The token is kept in sessionStorage only: this tab, until it is closed.
 * Every string from the server goes into the page through textContent, never as HTML.
 */
'use strict';
(function () {
  const TOKEN_KEY = 'passerelle.token';
  const REFRESH_DELAY_MS = 250;   /* let a burst of commits land before asking */
  const REFRESH_MIN_MS = 1000;    /* at most one refresh (~30 queries) a second per page */
  const BACKOFF_FIRST_MS = 500;   /* a restart takes about a second */
  const BACKOFF_MAX_MS = 10000;   /* the page is back within 10 s of the server */
  const HELLO_TIMEOUT_MS = 8000;  /* the server answers hello at once; 8 s means it is gone */
  const RETRY_MS = 2000;          /* a server that is starting answers 503 for ~1 s */
  const FIRST_YEAR = 2023;        /* the programmes started at the end of 2023 */

  /* ---- Words of the interface (French: its users'). */
  const L = {
    terr: { '75': 'Paris (75)', '93': 'Seine-Saint-Denis (93)', '94': 'Val-de-Marne (94)',
            '77': 'Seine-et-Marne (77)' },
    programme: { 'rsa93': 'RSA 93', 'dynamiques-emploi': 'Dynamiques Emploi (Paris)',
                 'en-route-idf': "En route vers l'emploi (Région)",
                 'o2r': 'O2R — repérage et remobilisation' },
    site: { 'ma-villepinte': "Maison d'arrêt de Villepinte", 'csl-gagny': 'CSL de Gagny',
            'sas-noisy': 'SAS de Noisy-le-Grand', 'qsl-sante': 'QSL de la Santé',
            'chrs-chemin-vert': 'CHRS Chemin Vert', 'qsl-villejuif': 'QSL de Villejuif',
            'spip-creteil': 'SPIP de Créteil', 'qsl-meaux': 'QSL de Meaux',
            'ma-fresnes': "Maison d'arrêt de Fresnes", 'ma-meaux': "Maison d'arrêt de Meaux",
            'office': "Locaux de l'association" },
    partner_referrals: { pmsmp: 'PMSMP (immersion)', training: 'Formation', job: 'Emploi',
                         care: 'Soins', housing: 'Logement', rights: 'Accès aux droits',
                         other: 'Autre' },
    outcomes_by_class: { durable: 'Emploi durable', transitional: 'Emploi de transition',
                         positive: 'Sortie positive' },
    outcomes: { 'cdi': 'CDI', 'cdd-6m': 'CDD de 6 mois ou plus', 'business': "Création d'entreprise",
                'cdd-short': 'CDD de moins de 6 mois', 'interim': 'Intérim', 'cddi': 'CDDI (insertion)',
                'training': 'Formation qualifiante', 'other-siae': 'Autre contrat en SIAE' },
    exited: { 'completed': 'Fin de parcours', 'job': 'Emploi', 'training': 'Formation',
              'reincarcerated': 'Réincarcération', 'moved': 'Déménagement',
              'lost-contact': 'Perte de contact', 'declined': 'Abandon', 'deceased': 'Décès',
              'other': 'Autre motif' },
    gender: { f: 'Femmes', m: 'Hommes', x: 'Autre ou non précisé' },
    education: { '0-2': 'CITE 0–2 (sans diplôme, infra CAP)', '3-4': 'CITE 3–4 (CAP, BEP, bac)',
                 '5-8': 'CITE 5–8 (supérieur)' },
    months: ['janvier', 'février', 'mars', 'avril', 'mai', 'juin', 'juillet', 'août',
             'septembre', 'octobre', 'novembre', 'décembre'],
    monthsShort: ['janv.', 'févr.', 'mars', 'avr.', 'mai', 'juin', 'juil.', 'août', 'sept.',
                  'oct.', 'nov.', 'déc.'],
    metrics: { followed: 'Personnes suivies', referred: 'Personnes orientées',
               active: 'Personnes actives', interviews: 'Entretiens',
               interview_minutes: "Minutes d'entretien", sessions: 'Séances collectives',
               session_attendance: 'Participations aux séances', exited_total: 'Sorties' },
    roles: { caseworker: 'chargé·e de mission', coordinator: 'coordination',
             auditor: 'audit', admin: 'administration' },
  };
  const REPORT_ROLES = ['coordinator', 'auditor', 'admin'];
  const ALL_TERR = ['75', '93', '94', '77'];

  /* ---- Small helpers. */
  const $ = (sel) => document.querySelector(sel);
  const nf0 = new Intl.NumberFormat('fr-FR', { maximumFractionDigits: 0 });
  const nf1 = new Intl.NumberFormat('fr-FR', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const fmtInt = (v) => (v === null || v === undefined ? '—' : nf0.format(v));
  const fmtDec = (v) => (v === null || v === undefined ? '—' : nf1.format(v));
  const fmtPct = (v) => (v === null || v === undefined ? '—' : nf1.format(v * 100) + ' %');
  const label = (table, code) => (L[table] && L[table][code]) || code;
  const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function option(sel, value, text) { sel.appendChild(el('option', { value }, text)); }

  /* ---- MessagePack: what PROTOCOL-v1 frames hold (maps, arrays, str, bin, ints, bool, nil,
   * floats; ext is skipped).  Integers above 2^53 lose precision as Numbers: seqs stay far
   * below that. */
  const utf8e = new TextEncoder(), utf8d = new TextDecoder();
  function mpEncode(value) {
    const out = [];
    const u8 = (b) => out.push(b & 255);
    const be = (v, n) => { for (let i = n - 1; i >= 0; i--) u8(Math.floor(v / 2 ** (8 * i))); };
    function enc(v) {
      if (v === null || v === undefined) u8(0xc0);
      else if (v === true) u8(0xc3);
      else if (v === false) u8(0xc2);
      else if (typeof v === 'number' && Number.isInteger(v) && v >= 0) {
        if (v < 128) u8(v);
        else if (v < 256) { u8(0xcc); u8(v); }
        else if (v < 65536) { u8(0xcd); be(v, 2); }
        else if (v < 4294967296) { u8(0xce); be(v, 4); }
        else { u8(0xcf); be(v, 8); }
      } else if (typeof v === 'number' && Number.isInteger(v) && v >= -32) u8(v);
      else if (typeof v === 'string') {
        const b = utf8e.encode(v);
        if (b.length < 32) u8(0xa0 | b.length);
        else if (b.length < 256) { u8(0xd9); u8(b.length); }
        else { u8(0xda); be(b.length, 2); }
        for (const x of b) u8(x);
      } else if (Array.isArray(v)) {
        if (v.length < 16) u8(0x90 | v.length); else { u8(0xdc); be(v.length, 2); }
        v.forEach(enc);
      } else if (typeof v === 'object') {
        const keys = Object.keys(v).filter((k) => v[k] !== undefined);
        if (keys.length < 16) u8(0x80 | keys.length); else { u8(0xde); be(keys.length, 2); }
        for (const k of keys) { enc(k); enc(v[k]); }
      } else throw new Error('mpEncode: unsupported value');
    }
    enc(value);
    return new Uint8Array(out);
  }

  function mpDecode(buf) {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let p = 0;
    const need = (n) => { if (p + n > buf.length) throw new Error('truncated frame'); };
    const u = (n) => {
      need(n);
      let v = 0;
      for (let i = 0; i < n; i++) v = v * 256 + buf[p + i];
      p += n;
      return v;
    };
    const signed = (n) => {
      need(n);
      let v;
      if (n === 1) v = dv.getInt8(p);
      else if (n === 2) v = dv.getInt16(p);
      else if (n === 4) v = dv.getInt32(p);
      else v = Number(dv.getBigInt64(p));
      p += n;
      return v;
    };
    const bytes = (n) => { need(n); const b = buf.subarray(p, p + n); p += n; return b; };
    const str = (n) => utf8d.decode(bytes(n));
    const arr = (n) => { const a = []; for (let i = 0; i < n; i++) a.push(dec()); return a; };
    const map = (n) => {
      const m = {};
      for (let i = 0; i < n; i++) { const k = dec(); m[String(k)] = dec(); }
      return m;
    };
    function dec() {
      need(1);
      const b = buf[p++];
      if (b < 0x80) return b;
      if (b < 0x90) return map(b & 15);
      if (b < 0xa0) return arr(b & 15);
      if (b < 0xc0) return str(b & 31);
      if (b >= 0xe0) return b - 256;
      switch (b) {
        case 0xc0: return null;
        case 0xc2: return false;
        case 0xc3: return true;
        case 0xc4: return bytes(u(1));
        case 0xc5: return bytes(u(2));
        case 0xc6: return bytes(u(4));
        case 0xc7: { const n = u(1); u(1); bytes(n); return null; }
        case 0xc8: { const n = u(2); u(1); bytes(n); return null; }
        case 0xc9: { const n = u(4); u(1); bytes(n); return null; }
        case 0xca: { need(4); const v = dv.getFloat32(p); p += 4; return v; }
        case 0xcb: { need(8); const v = dv.getFloat64(p); p += 8; return v; }
        case 0xcc: return u(1);
        case 0xcd: return u(2);
        case 0xce: return u(4);
        case 0xcf: return u(8);
        case 0xd0: return signed(1);
        case 0xd1: return signed(2);
        case 0xd2: return signed(4);
        case 0xd3: return signed(8);
        case 0xd4: u(1); bytes(1); return null;
        case 0xd5: u(1); bytes(2); return null;
        case 0xd6: u(1); bytes(4); return null;
        case 0xd7: u(1); bytes(8); return null;
        case 0xd8: u(1); bytes(16); return null;
        case 0xd9: return str(u(1));
        case 0xda: return str(u(2));
        case 0xdb: return str(u(4));
        case 0xdc: return arr(u(2));
        case 0xdd: return arr(u(4));
        case 0xde: return map(u(2));
        case 0xdf: return map(u(4));
        default: throw new Error('bad MessagePack byte 0x' + b.toString(16));
      }
    }
    return dec();
  }

  /* ---- State. */
  const state = {
    token: null,
    role: null,
    terr: [],          /* territories this token may read (welcome) */
    signedIn: false,
    userAttempt: false, /* the sign-in form is waiting for the first welcome */
    view: 'tableau',
    gen: 0,            /* refresh generation: a late answer of an older refresh is dropped */
    refreshTimer: null,
    refreshing: false,
    dirty: false,
    lastRefresh: 0,
    urgent: false,     /* a person asked: refresh without waiting */
    months: null,      /* the last counters of each month, for the chart */
    retryTimer: null,
  };

  /* ---- Live connection. */
  const live = { ws: null, tries: 0, timer: null, helloTimer: null, welcomed: false };

  function setLive(text, cls) {
    const e = $('#live');
    e.textContent = text;
    e.className = 'live ' + (cls || '');
  }

  function liveConnect() {
    clearTimeout(live.timer);
    live.timer = null;
    live.welcomed = false;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/sync';
    let ws;
    try {
      ws = new WebSocket(url, 'passerelle.v1');
    } catch (e) {
      liveLost();
      return;
    }
    live.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      ws.send(mpEncode({ t: 'hello', v: 1, token: state.token, device: 'tableau-de-bord',
                         agent: 'passerelle-dashboard/1' }));
      live.helloTimer = setTimeout(() => ws.close(), HELLO_TIMEOUT_MS);
    };
    ws.onmessage = (e) => {
      if (live.ws !== ws) return;
      let m;
      try { m = mpDecode(new Uint8Array(e.data)); } catch (err) { ws.close(); return; }
      if (m && typeof m === 'object') onMessage(ws, m);
    };
    ws.onclose = () => {
      clearTimeout(live.helloTimer);
      if (live.ws !== ws) return;
      live.ws = null;
      liveLost();
    };
  }

  function onMessage(ws, m) {
    if (m.t === 'welcome') {
      clearTimeout(live.helloTimer);
      live.welcomed = true;
      live.tries = 0;
      document.body.dataset.welcomes = String(Number(document.body.dataset.welcomes || 0) + 1);
      ws.send(mpEncode({ t: 'sub', id: 1, from: m.head, live: true, window: 4 }));
      setLive('En direct', 'ok');
      const first = !state.signedIn;
      state.role = m.role;
      state.terr = (Array.isArray(m.terr) ? m.terr : []).filter((t) => ALL_TERR.includes(t));
      if (first) {
        enterDashboard();
      } else {
        fillFilters(); /* the token's territories may have changed */
        scheduleRefresh(true); /* commits may have landed while we were away */
      }
    } else if (m.t === 'events') {
      if (typeof m.last === 'number') ws.send(mpEncode({ t: 'ack', sub: m.sub, upto: m.last }));
      scheduleRefresh(false);
    } else if (m.t === 'error') {
      if (!live.welcomed && (m.code === 'unauthorized' || m.code === 'forbidden')) {
        live.ws = null;
        ws.close();
        signOut('Jeton refusé : ce jeton n\u2019est pas reconnu ou a été révoqué. ' +
                'Vérifiez-le ou demandez-en un nouveau à l\u2019administrateur.');
      }
    }
  }

  function liveLost() {
    if (!state.token) return;
    if (!state.signedIn && state.userAttempt) {
      state.userAttempt = false;
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      signinBusy(false);
      $('#signin-error').textContent = 'Le serveur ne répond pas. Réessayez dans un instant.';
      return;
    }
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** live.tries);
    const delay = Math.round(cap / 2 + Math.random() * cap / 2);
    live.tries++;
    setLive('Reconnexion…', 'wait');
    live.timer = setTimeout(liveConnect, delay);
  }

  function liveStop() {
    clearTimeout(live.timer);
    clearTimeout(live.helloTimer);
    live.timer = null;
    const ws = live.ws;
    live.ws = null;
    if (ws) ws.close();
  }

  /* ---- Sign-in. */
  function signinBusy(busy) {
    $('#signin-btn').disabled = busy;
    $('#signin-btn').textContent = busy ? 'Connexion…' : 'Se connecter';
  }

  function signIn(token, fromForm) {
    state.token = token;
    state.userAttempt = fromForm;
    sessionStorage.setItem(TOKEN_KEY, token);
    if (fromForm) signinBusy(true);
    liveConnect();
  }

  function signOut(message) {
    liveStop();
    state.token = null;
    state.signedIn = false;
    state.userAttempt = false;
    state.gen++;
    sessionStorage.removeItem(TOKEN_KEY);
    $('#nav').hidden = true;
    $('#who').hidden = true;
    $('#view-tableau').hidden = true;
    $('#view-rapport').hidden = true;
    $('#signin').hidden = false;
    signinBusy(false);
    $('#token').value = '';
    $('#signin-error').textContent = message || '';
    document.title = 'Passerelle — connexion';
    if (message) $('#token').focus();
  }

  function enterDashboard() {
    state.signedIn = true;
    state.userAttempt = false;
    signinBusy(false);
    $('#signin-error').textContent = '';
    $('#signin').hidden = true;
    $('#nav').hidden = false;
    $('#who').hidden = false;
    $('#nav-rapport').hidden = !REPORT_ROLES.includes(state.role);
    fillFilters();
    route();
  }

  /* ---- API. */
  class ApiError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  async function api(path, as) {
    let res;
    try {
      res = await fetch(path, { headers: { Authorization: 'Bearer ' + state.token },
                                cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'Le serveur ne répond pas (reconnexion en cours).');
    }
    if (res.status === 401) {
      signOut('Jeton refusé : ce jeton n\u2019est plus valable. Reconnectez-vous avec un jeton valide.');
      throw new ApiError(401, 'jeton refusé');
    }
    if (!res.ok) {
      /* The API answers {"error": code, "msg": why}: the reason, in English, goes in brackets. */
      let why = '';
      try { why = String((await res.json()).msg || '').slice(0, 200); } catch (e) { /* none */ }
      const detail = why ? ' (' + why + ')' : '';
      if (res.status === 403) throw new ApiError(403, 'Accès refusé pour ce jeton' + detail + '.');
      if (res.status === 503) throw new ApiError(503, 'Le serveur démarre, nouvel essai dans un instant' + detail + '.');
      throw new ApiError(res.status, 'Erreur du serveur, code ' + res.status + detail + '.');
    }
    return as === 'text' ? res.text() : res.json();
  }

  function countersPath(f, extra) {
    const q = new URLSearchParams();
    if (f.terr) q.set('terr', f.terr);
    q.set('year', String(f.year));
    if (f.month) q.set('month', String(f.month));
    for (const k in extra || {}) q.set(k, extra[k]);
    return '/api/v1/counters?' + q.toString();
  }

  /* ---- Filters. */
  function fillSelect(sel, items, keep) {
    const prev = sel.value;
    sel.textContent = '';
    for (const [v, t] of items) option(sel, v, t);
    if (keep && items.some(([v]) => v === prev)) sel.value = prev;
  }

  function terrItems() {
    const items = [];
    const all = ALL_TERR.every((t) => state.terr.includes(t));
    if (all) items.push(['', 'Tous les territoires']);
    for (const t of ALL_TERR) if (state.terr.includes(t)) items.push([t, L.terr[t]]);
    return items;
  }

  function yearItems() {
    const items = [];
    for (let y = new Date().getFullYear(); y >= FIRST_YEAR; y--) items.push([String(y), String(y)]);
    return items;
  }

  function fillFilters() {
    fillSelect($('#f-terr'), terrItems(), true);
    fillSelect($('#r-terr'), terrItems(), true);
    if (!$('#f-year').options.length) {
      fillSelect($('#f-year'), yearItems());
      fillSelect($('#r-year'), yearItems());
      const months = [['', "Toute l'année"]];
      L.months.forEach((m, i) => months.push([String(i + 1), m.charAt(0).toUpperCase() + m.slice(1)]));
      fillSelect($('#f-month'), months);
      fillSelect($('#f-metric'), Object.entries(L.metrics));
    }
  }

  function filters() {
    return { terr: $('#f-terr').value, year: Number($('#f-year').value),
             month: Number($('#f-month').value) || 0 };
  }

  /* ---- Routing: #/tableau (figures) and #/rapport (yearly report). */
  function route() {
    if (!state.signedIn) return;
    let view = location.hash === '#/rapport' ? 'rapport' : 'tableau';
    if (view === 'rapport' && !REPORT_ROLES.includes(state.role)) view = 'tableau';
    state.view = view;
    $('#view-tableau').hidden = view !== 'tableau';
    $('#view-rapport').hidden = view !== 'rapport';
    for (const v of ['tableau', 'rapport']) {
      const a = $('#nav-' + v);
      if (v === view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    document.title = (view === 'rapport' ? 'Rapport annuel' : 'Chiffres des territoires') +
                     ' — Passerelle';
    scheduleRefresh(true);
  }

  /* ---- Refresh: one at a time.  A person's change (filters, page, reconnect) runs at once
   * and drops the answers of a refresh still in flight; commits seen live are gathered
   * (REFRESH_DELAY_MS) and paced (REFRESH_MIN_MS). */
  function scheduleRefresh(byUser) {
    if (!state.signedIn) return;
    document.body.dataset.idle = '0'; /* "1" once nothing is pending: the tests wait for it */
    if (byUser) { state.gen++; state.urgent = true; }
    if (state.refreshing) { state.dirty = true; return; }
    if (state.refreshTimer && !state.urgent) return;
    clearTimeout(state.refreshTimer);
    const wait = state.urgent ? 0
      : Math.max(REFRESH_DELAY_MS, state.lastRefresh + REFRESH_MIN_MS - Date.now());
    state.refreshTimer = setTimeout(runRefresh, wait);
  }

  async function runRefresh() {
    state.refreshTimer = null;
    if (!state.signedIn) return;
    state.refreshing = true;
    state.dirty = false;
    state.urgent = false;
    state.lastRefresh = Date.now();
    const gen = ++state.gen;
    try {
      if (state.view === 'rapport') await refreshReport(gen);
      else await refreshFigures(gen);
    } finally {
      state.refreshing = false;
      if (state.dirty) scheduleRefresh(false);
      else if (!state.refreshTimer) document.body.dataset.idle = '1';
    }
  }

  /* The server is away (0) or starting (503): ask again shortly, the figures stay as they
   * were meanwhile.  Other errors wait for the next change. */
  function retryLater(e) {
    if (e.status !== 0 && e.status !== 503) return;
    clearTimeout(state.retryTimer);
    state.retryTimer = setTimeout(() => scheduleRefresh(false), RETRY_MS);
  }

  function stamp(sel) {
    const t = new Date().toLocaleTimeString('fr-FR');
    $(sel).textContent = 'Mis à jour à ' + t + '.';
  }

  /* ---- The figures view. */
  async function refreshFigures(gen) {
    const f = filters();
    const monthQs = [];
    for (let m = 1; m <= 12; m++) monthQs.push(api(countersPath({ ...f, month: m })));
    const progs = Object.keys(L.programme);
    const sites = Object.keys(L.site);
    try {
      const [main, months, byProg, bySite] = await Promise.all([
        api(countersPath(f)),
        Promise.all(monthQs),
        Promise.all(progs.map((p) => api(countersPath(f, { programme: p })))),
        Promise.all(sites.map((s) => api(countersPath(f, { site: s })))),
      ]);
      if (gen !== state.gen) return;
      renderFigures(main);
      state.months = months;
      renderChart(months, f.month);
      renderTable($('#t-prog'), 'Programme', progs.map((p, i) => [label('programme', p), byProg[i]]));
      renderTable($('#t-site'), 'Site', sites.map((s, i) => [label('site', s), bySite[i]]));
      $('#data-error').textContent = '';
      document.body.dataset.shown = ['tableau', f.terr, f.year, f.month].join('|');
      document.body.dataset.refreshed = String(gen);
      stamp('#updated');
    } catch (e) {
      if (gen !== state.gen || e.status === 401) return;
      $('#data-error').textContent = e.message;
      retryLater(e);
    }
  }

  function renderFigures(c) {
    const v = { ...c, exited_total: sum(c.exited) };
    for (const e of document.querySelectorAll('#view-tableau [data-k]')) {
      const k = e.dataset.k;
      let text;
      if (k.endsWith('_share')) text = fmtPct(v[k]);
      else if (k === 'mean_age' || k === 'mean_months_followed') text = fmtDec(v[k]);
      else text = fmtInt(v[k]);
      e.textContent = text;
    }
    for (const t of document.querySelectorAll('#view-tableau table.bars')) renderBars(t, c[t.dataset.b] || {});
  }

  /* A breakdown: one row per code, its count and a bar scaled to the largest. */
  function renderBars(table, counts) {
    const name = table.dataset.b;
    const max = Math.max(1, ...Object.values(counts));
    const rows = [];
    for (const code of Object.keys(L[name] || counts)) {
      const n = counts[code] || 0;
      const tr = el('tr', { 'data-code': code });
      if (!n) tr.className = 'zero';
      tr.appendChild(el('th', { scope: 'row' }, label(name, code)));
      tr.appendChild(el('td', { class: 'n' }, fmtInt(n)));
      const td = el('td', { class: 'b', 'aria-hidden': 'true' });
      const bar = el('span', { class: 'bar' });
      bar.style.width = (100 * n / max).toFixed(1) + '%';
      if (!n) bar.style.visibility = 'hidden';
      td.appendChild(bar);
      tr.appendChild(td);
      rows.push(tr);
    }
    table.replaceChildren(...rows);
  }

  /* The chart: the chosen figure for each month of the year, the chosen month highlighted.
   * Drawn at the width of its box (one SVG unit = one CSS pixel), so that text keeps its size
   * from a phone to a desktop; drawn again when the window is resized. */
  function renderChart(months, chosen) {
    const key = $('#f-metric').value || 'followed';
    const vals = months.map((c) => (key === 'exited_total' ? sum(c.exited) : c[key] || 0));
    const W = Math.max(280, Math.floor($('#chart').clientWidth || 640));
    const H = W < 500 ? 190 : 230, top = 22, bottom = 26, left = 4, right = 4;
    const max = Math.max(1, ...vals);
    const slot = (W - left - right) / 12, bw = Math.min(slot * 0.64, 56);
    const monthNames = slot < 40 ? L.months.map((m) => m.charAt(0).toUpperCase()) : L.monthsShort;
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('role', 'img');
    const title = L.metrics[key] + ' par mois, ' + $('#f-year').value;
    svg.setAttribute('aria-label', title + ' : ' +
      vals.map((v, i) => L.months[i] + ' ' + fmtInt(v)).join(', '));
    const mk = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const k in attrs) e.setAttribute(k, attrs[k]);
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    const base = H - bottom;
    mk('line', { x1: left, x2: W - right, y1: base + 0.5, y2: base + 0.5, class: 'axis' });
    vals.forEach((v, i) => {
      const h = Math.round((base - top) * v / max);
      const x = left + slot * i + (slot - bw) / 2;
      const r = mk('rect', { x: x.toFixed(1), y: base - h, width: bw.toFixed(1), height: h,
                             class: 'b' + (chosen === i + 1 ? ' on' : ''), 'data-month': i + 1 });
      const tt = document.createElementNS(NS, 'title');
      tt.textContent = L.months[i] + ' : ' + fmtInt(v);
      r.appendChild(tt);
      const label = fmtInt(v);
      const t = mk('text', { x: (x + bw / 2).toFixed(1), y: base - h - 5, 'text-anchor': 'middle',
                             'data-month': i + 1 }, label);
      /* a wide number in a narrow slot gets a smaller font (~0.6 em per digit) */
      const fs = Math.min(12, (slot - 2) / (0.6 * label.length));
      if (fs < 12) t.style.fontSize = Math.max(8, fs).toFixed(1) + 'px';
      mk('text', { x: (x + bw / 2).toFixed(1), y: H - 8, 'text-anchor': 'middle', 'aria-hidden': 'true' },
         monthNames[i]);
    });
    $('#chart').replaceChildren(svg);
  }

  /* A table of counters per programme or per site; rows with no activity are left out. */
  const TABLE_COLS = [
    ['referred', 'Orientées'], ['followed', 'Suivies'], ['active', 'Actives'],
    ['exited_total', 'Sorties'], ['interviews', 'Entretiens'], ['interview_minutes', 'Minutes'],
    ['sessions', 'Séances'], ['session_attendance', 'Participations'], ['mean_age', 'Âge moyen'],
  ];
  function cellText(c, k) {
    if (k === 'exited_total') return fmtInt(sum(c.exited));
    if (k === 'mean_age') return fmtDec(c.mean_age);
    return fmtInt(c[k]);
  }
  function renderTable(table, first, rows) {
    const head = el('thead');
    const hr = el('tr');
    hr.appendChild(el('th', { scope: 'col' }, first));
    for (const [, t] of TABLE_COLS) hr.appendChild(el('th', { scope: 'col' }, t));
    head.appendChild(hr);
    const body = el('tbody');
    const active = rows.filter(([, c]) => TABLE_COLS.some(([k]) => k !== 'mean_age' &&
      (k === 'exited_total' ? sum(c.exited) : c[k])));
    for (const [name, c] of active) {
      const tr = el('tr', { 'data-code': c.programme || c.site || '' });
      tr.appendChild(el('th', { scope: 'row' }, name));
      for (const [k] of TABLE_COLS) tr.appendChild(el('td', { 'data-k': k }, cellText(c, k)));
      body.appendChild(tr);
    }
    if (!active.length) {
      const tr = el('tr');
      tr.appendChild(el('td', { colspan: TABLE_COLS.length + 1, class: 'empty' }, 'Aucune activité sur la période.'));
      body.appendChild(tr);
    }
    table.replaceChildren(head, body);
  }

  /* ---- The yearly report view. */
  function reportPath(format) {
    const q = new URLSearchParams({ year: $('#r-year').value });
    if ($('#r-terr').value) q.set('terr', $('#r-terr').value);
    q.set('format', format);
    return '/api/v1/report?' + q.toString();
  }

  function rowName(r) {
    if (r.dimension === 'total') return $('#r-terr').value ? 'Ensemble du territoire' : 'Ensemble';
    if (r.dimension === 'terr') return label('terr', r.code);
    if (r.dimension === 'programme') return label('programme', r.code);
    return label('site', r.code);
  }
  const DIM_TITLES = { terr: 'Par territoire', programme: 'Par programme', site: 'Par site' };

  function reportTable(table, rep, cols) {
    const head = el('thead');
    const hr = el('tr');
    hr.appendChild(el('th', { scope: 'col' }, 'Périmètre'));
    for (const [, t] of cols) hr.appendChild(el('th', { scope: 'col' }, t));
    head.appendChild(hr);
    const body = el('tbody');
    let dim = null;
    for (const r of rep.rows) {
      if (r.dimension !== 'total' && r.dimension !== dim) {
        dim = r.dimension;
        const sep = el('tr', { class: 'sep' });
        sep.appendChild(el('th', { colspan: cols.length + 1, scope: 'colgroup' }, DIM_TITLES[dim] || dim));
        body.appendChild(sep);
      }
      const tr = el('tr', { 'data-dim': r.dimension, 'data-code': r.code || '' });
      if (r.dimension === 'total') tr.className = 'total';
      tr.appendChild(el('th', { scope: 'row' }, rowName(r)));
      for (const [k, , f] of cols) tr.appendChild(el('td', { 'data-k': k }, f(r)));
      body.appendChild(tr);
    }
    table.replaceChildren(head, body);
  }

  const ESF_COLS = [
    ['participants', 'Participants'], ['under_18', 'Moins de 18 ans'], ['age_18_29', '18–29 ans'],
    ['age_55_plus', '55 ans et plus'], ['isced_0_2', 'CITE 0–2'], ['isced_3_4', 'CITE 3–4'],
    ['isced_5_8', 'CITE 5–8'], ['homeless_or_housing_exclusion', 'Sans domicile ou exclus du logement'],
    ['exit_in_education_or_training', 'À la sortie : en études ou formation'],
    ['exit_in_employment', 'À la sortie : en emploi'],
  ].map(([k, t]) => [k, t, (r) => fmtInt(r.esf ? r.esf[k] : null)]);

  const REP_COLS = [
    ['referred', 'Orientées'], ['followed', 'Suivies'], ['active', 'Actives'],
    ['exited_total', 'Sorties'], ['interviews', 'Entretiens'], ['interview_minutes', 'Minutes'],
    ['missed', 'Absences'], ['sessions', 'Séances'], ['session_attendance', 'Participations'],
    ['mean_age', 'Âge moyen'], ['mean_months_followed', 'Mois de suivi'],
    ['housing_barrier_share', 'Frein logement'], ['homeless_share', 'Sans domicile'],
    ['care_obligation_share', 'Obligation de soins'], ['rsa', 'RSA'],
  ].map(([k, t]) => [k, t, (r) => {
    if (k === 'exited_total') return fmtInt(sum(r.exited));
    if (k.endsWith('_share')) return fmtPct(r[k]);
    if (k.startsWith('mean_')) return fmtDec(r[k]);
    return fmtInt(r[k]);
  }]);

  const RES_COLS = [
    ...Object.keys(L.outcomes_by_class).map((k) => ['class_' + k, L.outcomes_by_class[k],
      (r) => fmtInt((r.outcomes_by_class || {})[k])]),
    ...Object.keys(L.exited).map((k) => ['exit_' + k, 'Sortie : ' + L.exited[k].toLowerCase(),
      (r) => fmtInt((r.exited || {})[k])]),
  ];

  async function refreshReport(gen) {
    const shown = ['rapport', $('#r-terr').value, $('#r-year').value].join('|');
    try {
      const rep = await api(reportPath('json'));
      if (gen !== state.gen) return;
      reportTable($('#t-esf'), rep, ESF_COLS);
      reportTable($('#t-rep'), rep, REP_COLS);
      reportTable($('#t-res'), rep, RES_COLS);
      $('#r-error').textContent = '';
      document.body.dataset.shown = shown;
      document.body.dataset.refreshed = String(gen);
      stamp('#r-updated');
    } catch (e) {
      if (gen !== state.gen || e.status === 401) return;
      $('#r-error').textContent = e.message;
      retryLater(e);
    }
  }

  async function download(format, ext, type) {
    try {
      const text = await api(reportPath(format), 'text');
      const blob = new Blob([text], { type });
      const a = el('a', { download: `rapport-${$('#r-year').value}-${$('#r-terr').value || 'tous'}.${ext}` });
      a.href = URL.createObjectURL(blob);
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) {
      if (e.status !== 401) $('#r-error').textContent = e.message;
    }
  }

  /* ---- Wiring. */
  function start() {
    $('#signin-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const token = $('#token').value.trim();
      if (!token) {
        $('#signin-error').textContent = 'Saisissez votre jeton d\u2019accès.';
        return;
      }
      $('#signin-error').textContent = '';
      signIn(token, true);
    });
    $('#signout').addEventListener('click', () => signOut(''));
    for (const id of ['#f-terr', '#f-year', '#f-month', '#r-year', '#r-terr']) {
      $(id).addEventListener('change', () => scheduleRefresh(true));
    }
    $('#f-metric').addEventListener('change', () => {
      if (state.months) renderChart(state.months, filters().month);
    });
    for (const f of ['#filters', '#r-filters']) $(f).addEventListener('submit', (e) => e.preventDefault());
    $('#dl-csv').addEventListener('click', () => download('csv', 'csv', 'text/csv;charset=utf-8'));
    $('#dl-md').addEventListener('click', () => download('md', 'md', 'text/markdown;charset=utf-8'));
    window.addEventListener('hashchange', route);
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (state.months && state.view === 'tableau') renderChart(state.months, filters().month);
      }, 150);
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      /* A reload: sign in again with the tab's token, showing the connection state. */
      $('#signin').hidden = true;
      $('#who').hidden = false;
      signIn(saved, false);
    } else {
      document.title = 'Passerelle — connexion';
    }
  }

  start();
})();
