// The hoodydb console: plain ES modules over the JavaScript client, no build step.
// State lives here and in the URL hash (the chosen database); the token in sessionStorage only.
import { createClient, HoodyError } from './hoodydb.js';

const TOKEN_KEY = 'hoodydb.token';
const POLL_MS = 1000; // the lock panel, while shown: waits and turns change without commits
const IDLE_POLL_MS = 10_000; // otherwise commits refresh the view; this only catches the rest
const COMMIT_SETTLE_MS = 100; // a burst of commits refreshes once
const HISTORY_S = 300; // the chart's window: the last five minutes
const QUERY_KEYWORDS = /^(select|with|pragma|explain|values)\b/i;

/** @type {ReturnType<typeof createClient> | null} */
let client = null;
/** @type {string | null} */
let selected = null;
let activeTab = 'sql';
let pollTimer = 0;
/** @type {any} */
let lastReport = null;
/** @type {string | null} */
let lockError = null;
/** Per database: samples of its counters, `{ t, transactions, waits, turn }`, oldest first. */
const samplesByDb = new Map();
/** @type {string | null} */
let kvCursor = null;
/** What the signed-in token may do (`GET /api/v1/sqlite/token`). */
let scope = { name: '', admin: true, readOnly: false, databases: null, kvOnly: false, expiresAt: null };
/** @type {{ close(): void } | null} */
let feed = null;
/** The SQL last run, when it only read: `{ db, text }`, run again when that database commits. */
let shownQuery = null;
let commitTimer = 0;
/** Databases that committed since the last refresh. */
const committed = new Set();

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** Build an element; strings become text nodes, so nothing from the server is parsed as HTML. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function seconds(s) {
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function describeError(err) {
  if (err instanceof HoodyError) {
    const where = err.reqIdx !== null && err.reqIdx !== undefined ? ` (statement ${err.reqIdx + 1})` : '';
    return h('span', {}, `${err.message}${where} `, err.code ? h('code', {}, err.code) : '');
  }
  return String(err);
}

// --- signing in -----------------------------------------------------------------------------

function showSignIn(message = '') {
  stopPolling();
  feed?.close();
  feed = null;
  client = null;
  $('workspace').hidden = true;
  $('sign-out').hidden = true;
  $('mount-info').textContent = '';
  $('sign-in').hidden = false;
  $('token-error').textContent = message;
  /** @type {HTMLInputElement} */ ($('token')).focus();
}

/** The token's scope; also the first check that the server accepts it. */
async function fetchScope(token) {
  const response = await fetch(`${location.origin}/api/v1/sqlite/token`, { headers: { Authorization: `Bearer ${token}` } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new HoodyError(body.error ?? response.statusText, { status: response.status, code: body.code });
  return body;
}

function describeScope() {
  if (scope.admin) return '';
  const parts = [`token ${scope.name}`, scope.readOnly ? 'read-only' : 'read-write', scope.kvOnly ? 'key-value only' : null];
  if (scope.databases) parts.push(`databases ${scope.databases.join(', ')}`);
  if (scope.expiresAt) parts.push(`expires ${new Date(scope.expiresAt * 1000).toLocaleString()}`);
  return parts.filter(Boolean).join(' · ');
}

/** Show what the token may do and hide what it may not (the server refuses it anyway). */
function applyScope() {
  $('token-scope').textContent = describeScope();
  $('create-form').hidden = scope.readOnly || scope.kvOnly;
  $('sql-read-only').hidden = !scope.readOnly;
  // A KV-only token can neither list databases nor see SQL or locks: it opens a database by name.
  $('db-list').hidden = scope.kvOnly;
  $('refresh-dbs').hidden = scope.kvOnly;
  $('open-form').hidden = !scope.kvOnly;
  $('tab-sql').hidden = scope.kvOnly;
  $('tab-locks').hidden = scope.kvOnly;
  if (scope.kvOnly) activeTab = 'kv';
}

async function connect(token) {
  client = createClient({ url: location.origin, token });
  try {
    scope = await fetchScope(token);
    applyScope();
    if (!scope.kvOnly) await loadDatabases();
  } catch (err) {
    sessionStorage.removeItem(TOKEN_KEY);
    const unauthorized = err instanceof HoodyError && err.status === 401;
    showSignIn(unauthorized ? 'That token is not accepted by this server.' : `Cannot connect: ${err.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('sign-in').hidden = true;
  $('workspace').hidden = false;
  $('sign-out').hidden = false;
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('db');
  if (fromHash) selectDatabase(fromHash);
  else /** @type {HTMLElement | null} */ (document.querySelector(scope.kvOnly ? '#open-db' : '.db-list button'))?.focus();
  if (!scope.kvOnly) {
    startPolling();
    followCommits();
  }
}

// --- commits --------------------------------------------------------------------------------

/** Refresh on every commit (any writer, HTTP or native) instead of polling for changes. */
function followCommits() {
  feed?.close();
  if (!client) return;
  feed = client.sqlite.events.subscribe({ onError: (err) => void handleAuthFailure(err) }, (event) => {
    committed.add(event.db);
    window.clearTimeout(commitTimer);
    commitTimer = window.setTimeout(onCommits, COMMIT_SETTLE_MS);
  });
}

function onCommits() {
  const dbs = new Set(committed);
  committed.clear();
  startPolling(); // the lock report now, and the poll's clock from here
  const sql = /** @type {HTMLTextAreaElement} */ ($('sql')).value;
  if (shownQuery && dbs.has(shownQuery.db) && shownQuery.db === selected && shownQuery.text === sql) runSql();
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = /** @type {HTMLInputElement} */ ($('token')).value.trim();
  if (token) connect(token);
});

$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  /** @type {HTMLInputElement} */ ($('token')).value = '';
  showSignIn();
});

/** A request failed with 401: the token went stale (server restarted with another). */
function handleAuthFailure(err) {
  if (err instanceof HoodyError && err.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn('The server no longer accepts this token.');
    return true;
  }
  return false;
}

// --- databases ------------------------------------------------------------------------------

async function loadDatabases() {
  if (!client) return;
  const { data, truncated } = await client.sqlite.databases.list();
  const list = $('db-list');
  list.replaceChildren(
    ...data.map((db) =>
      h(
        'li',
        {},
        h(
          'button',
          { type: 'button', 'data-db': db.path, 'aria-current': db.path === selected ? 'true' : null, onclick: () => selectDatabase(db.path) },
          h('span', { class: 'db-path' }, db.path),
          h('span', { class: 'db-meta' }, h('span', { class: 'badge', 'data-badge': db.path }), bytes(db.size)),
        ),
      ),
    ),
  );
  if (truncated) list.append(h('li', { class: 'muted small' }, 'Only the first databases found are listed.'));
  $('db-empty').hidden = data.length > 0;
  renderBadges();
}

$('refresh-dbs').addEventListener('click', () => loadDatabases().catch(handleAuthFailure));

$('open-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const path = /** @type {HTMLInputElement} */ ($('open-db')).value.trim();
  if (path) selectDatabase(path);
});

$('create-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('new-db'));
  const path = input.value.trim();
  if (!path || !client) return;
  $('create-error').textContent = '';
  try {
    const { data } = await client.sqlite.databases.create({ path });
    input.value = '';
    await loadDatabases();
    selectDatabase(data.path);
  } catch (err) {
    if (!handleAuthFailure(err)) $('create-error').replaceChildren(describeError(err));
  }
});

function selectDatabase(path) {
  selected = path;
  samplesByDb.set(path, samplesByDb.get(path) ?? []);
  for (const button of document.querySelectorAll('.db-list button')) {
    if (button.getAttribute('data-db') === path) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
  }
  $('no-db').hidden = true;
  $('db-view').hidden = false;
  $('db-name').textContent = path;
  $('sql-results').replaceChildren();
  $('sql-time').textContent = '';
  $('kv-results').replaceChildren();
  history.replaceState(null, '', `#${new URLSearchParams({ db: path })}`);
  showTab(activeTab);
  renderStatus();
}

// --- tabs -----------------------------------------------------------------------------------

const ALL_TABS = ['sql', 'kv', 'locks', 'backup'];
/** The tabs the token may use (a KV-only token has only one). */
const tabs = () => ALL_TABS.filter((tab) => !$(`tab-${tab}`).hidden);

function showTab(name, focus = false) {
  activeTab = name;
  for (const tab of ALL_TABS) {
    const button = $(`tab-${tab}`);
    const on = tab === name;
    button.setAttribute('aria-selected', String(on));
    button.tabIndex = on ? 0 : -1;
    $(`panel-${tab}`).hidden = !on;
    if (on && focus) button.focus();
  }
  if (name === 'kv') loadKv(false);
  if (name === 'locks') {
    renderLocks();
    if (client) startPolling(); // now, then at the panel's pace
  }
  if (name === 'backup') renderBackup();
  if (name === 'sql' && focus) $('sql').focus();
}

for (const tab of ALL_TABS) {
  $(`tab-${tab}`).addEventListener('click', () => showTab(tab));
  // Arrow keys move between tabs, as in every tab list.
  $(`tab-${tab}`).addEventListener('keydown', (event) => {
    const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
    if (!step) return;
    event.preventDefault();
    const shown = tabs();
    showTab(shown[(shown.indexOf(tab) + step + shown.length) % shown.length], true);
  });
}

// --- SQL ------------------------------------------------------------------------------------

/** Split SQL text into statements at semicolons outside quotes and comments. */
function splitSql(text) {
  const parts = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      i = text.indexOf(close, i + 1);
      if (i < 0) break;
    } else if (c === '-' && text[i + 1] === '-') {
      i = text.indexOf('\n', i);
      if (i < 0) break;
    } else if (c === '/' && text[i + 1] === '*') {
      i = text.indexOf('*/', i + 2);
      if (i < 0) break;
      i++;
    } else if (c === ';') {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((s) => s.trim()).filter((s) => s.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, '').trim());
}

function firstKeyword(sql) {
  return sql.replace(/^(\s|--[^\n]*\n|\/\*[\s\S]*?\*\/)*/, '');
}

function resultTable(headers, rows) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      h('thead', {}, h('tr', {}, headers.map((name) => h('th', { scope: 'col' }, name)))),
      h(
        'tbody',
        {},
        rows.map((row) =>
          h(
            'tr',
            {},
            row.map((cell) =>
              cell === null ? h('td', { class: 'null' }, 'NULL') : h('td', { class: typeof cell === 'number' ? 'num' : null }, typeof cell === 'object' ? JSON.stringify(cell) : String(cell)),
            ),
          ),
        ),
      ),
    ),
  );
}

async function runSql() {
  if (!client || !selected) return;
  const statements = splitSql(/** @type {HTMLTextAreaElement} */ ($('sql')).value);
  const out = $('sql-results');
  if (statements.length === 0) {
    out.replaceChildren(h('p', { class: 'muted' }, 'Nothing to run.'));
    return;
  }
  const transaction = statements.map((sql) => (QUERY_KEYWORDS.test(firstKeyword(sql)) ? { query: sql } : { statement: sql }));
  const text = /** @type {HTMLTextAreaElement} */ ($('sql')).value;
  shownQuery = transaction.every((item) => 'query' in item) ? { db: selected, text } : null;
  const button = /** @type {HTMLButtonElement} */ ($('run-sql'));
  button.disabled = true;
  const started = performance.now();
  try {
    const { data } = await client.sqlite.database.executeTransaction({ transaction, resultFormat: 'list' }, { db: selected });
    $('sql-time').textContent = `committed in ${Math.round(performance.now() - started)} ms`;
    out.replaceChildren(
      ...data.map((result, i) => {
        const title = h('h3', { class: 'stmt' }, h('span', { class: 'idx' }, String(i + 1)), statements[i].split('\n')[0].slice(0, 120));
        if (result.resultSet) {
          const rows = /** @type {any[][]} */ (result.resultSet);
          const count = h('p', { class: 'muted small' }, `${rows.length} row${rows.length === 1 ? '' : 's'}`);
          return h('div', { class: 'result' }, title, resultTable(result.resultHeaders ?? [], rows), count);
        }
        const changed = result.rowsUpdatedBatch ? result.rowsUpdatedBatch.reduce((a, b) => a + b, 0) : (result.rowsUpdated ?? 0);
        return h('div', { class: 'result' }, title, h('p', { class: 'muted small' }, `${changed} row${changed === 1 ? '' : 's'} changed`));
      }),
    );
  } catch (err) {
    if (handleAuthFailure(err)) return;
    $('sql-time').textContent = 'rolled back';
    out.replaceChildren(h('div', { class: 'result failed', role: 'alert' }, describeError(err)));
  } finally {
    button.disabled = false;
  }
}

$('sql-form').addEventListener('submit', (event) => {
  event.preventDefault();
  runSql();
});
$('sql').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    runSql();
  }
});

// --- key-value ------------------------------------------------------------------------------

async function loadKv(more) {
  if (!client || !selected) return;
  const out = $('kv-results');
  const prefix = /** @type {HTMLInputElement} */ ($('kv-prefix')).value;
  try {
    const { data, nextCursor } = await client.sqlite.kvStore.list({ db: selected, prefix, limit: 100, cursor: more ? (kvCursor ?? undefined) : undefined });
    kvCursor = nextCursor;
    $('kv-more').hidden = nextCursor === null;
    const rows = data.map((item) =>
      h(
        'tr',
        {},
        h('td', { class: 'key' }, item.key),
        h('td', { class: 'json' }, JSON.stringify(item.value)),
        h('td', { class: 'num' }, String(item.version)),
        h('td', {}, item.expiresAt === null ? '—' : new Date(item.expiresAt * 1000).toLocaleString()),
      ),
    );
    let body = out.querySelector('tbody');
    if (!more || !body) {
      if (data.length === 0) {
        out.replaceChildren(h('p', { class: 'muted' }, prefix ? `No key starts with “${prefix}”.` : 'No keys in this database yet.'));
        return;
      }
      body = h('tbody', {});
      const head = h('thead', {}, h('tr', {}, ['Key', 'Value', 'Version', 'Expires'].map((t) => h('th', { scope: 'col' }, t))));
      out.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {}, head, body)));
    }
    body.append(...rows);
  } catch (err) {
    if (!handleAuthFailure(err)) out.replaceChildren(h('p', { class: 'error', role: 'alert' }, describeError(err)));
  }
}

$('kv-form').addEventListener('submit', (event) => {
  event.preventDefault();
  loadKv(false);
});
$('kv-more').addEventListener('click', () => loadKv(true));

// --- locks ----------------------------------------------------------------------------------

function startPolling() {
  stopPolling();
  const tick = async () => {
    if (!client) return;
    try {
      const { data } = await client.sqlite.locks.get();
      lastReport = data;
      lockError = null;
      record(data);
    } catch (err) {
      if (handleAuthFailure(err)) return;
      lockError = err instanceof Error ? err.message : String(err);
    }
    renderMountInfo();
    renderBadges();
    renderStatus();
    if (activeTab === 'locks') renderLocks();
    if (activeTab === 'backup') renderBackup();
    pollTimer = window.setTimeout(tick, activeTab === 'locks' ? POLL_MS : IDLE_POLL_MS);
  };
  tick();
}

function stopPolling() {
  window.clearTimeout(pollTimer);
}

function record(report) {
  const now = Date.now() / 1000;
  for (const db of report.databases) {
    const samples = samplesByDb.get(db.database) ?? [];
    samples.push({ t: now, transactions: db.counters.transactions, waits: db.counters.waits, turn: db.counters.turn_seconds });
    while (samples.length && samples[0].t < now - HISTORY_S) samples.shift();
    samplesByDb.set(db.database, samples);
  }
}

function lockState(path) {
  return lastReport?.databases?.find((/** @type {any} */ db) => db.database === path) ?? null;
}

function renderMountInfo() {
  const r = lastReport;
  $('mount-info').textContent = !r ? '' : r.mounted ? `${r.mountpoint} · daemon pid ${r.pid} · policy ${r.policy}` : 'served without a mount';
}

function renderBadges() {
  for (const badge of document.querySelectorAll('[data-badge]')) {
    const db = lockState(badge.getAttribute('data-badge'));
    const busy = db?.admitted ? 1 + db.waiting.length : 0;
    badge.textContent = busy ? `${busy} active` : '';
    badge.className = busy ? (db.waiting.length ? 'badge waiting' : 'badge busy') : 'badge';
  }
}

function renderStatus() {
  const status = $('db-status');
  const db = selected ? lockState(selected) : null;
  if (!db?.admitted) {
    status.textContent = lastReport?.mounted ? 'idle' : '';
    status.className = 'status';
    return;
  }
  status.textContent = db.waiting.length ? `busy, ${db.waiting.length} waiting` : 'busy';
  status.className = db.waiting.length ? 'status waiting' : 'status busy';
}

/** Rates between consecutive samples: `[t, transactions/s, waits/s, share of the time the turn was held]`. */
function rates(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = b.t - a.t;
    if (dt <= 0) continue;
    // (The turn's seconds are the daemon's clock and `t` the page's: clamp the jitter between them.)
    const held = Math.min(1, Math.max(0, (b.turn ?? 0) - (a.turn ?? 0)) / dt);
    out.push([b.t, Math.max(0, b.transactions - a.transactions) / dt, Math.max(0, b.waits - a.waits) / dt, held]);
  }
  return out;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

/** The chart's time span: from the first sample (at least a minute), at most the last five minutes. */
function chartSpan(samples, now) {
  const since = samples.length ? now - samples[0].t : 0;
  return Math.min(HISTORY_S, Math.max(60, Math.ceil(since / 60) * 60));
}

function chart(samples) {
  const points = rates(samples);
  const width = 640;
  const height = 140;
  const pad = { left: 36, right: 24, top: 10, bottom: 20 };
  const now = Date.now() / 1000;
  const span = chartSpan(samples, now);
  const top = Math.max(1, ...points.map((p) => Math.max(p[1], p[2])));
  const x = (t) => pad.left + ((t - (now - span)) / span) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  const line = (i, cls) => svg('polyline', { class: cls, points: points.map((p) => `${x(p[0]).toFixed(1)},${y(p[i]).toFixed(1)}`).join(' ') });
  const grid = [0, 0.5, 1].map((f) =>
    svg(
      'g',
      {},
      svg('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(top * f), y2: y(top * f) }),
      svg('text', { x: pad.left - 6, y: y(top * f) + 4, 'text-anchor': 'end' }, (top * f).toFixed(top * f < 10 && f ? 1 : 0)),
    ),
  );
  const step = span / 60 <= 2 ? 15 : 60;
  const ticks = [];
  for (let ago = span; ago >= 0; ago -= step) {
    const label = ago === 0 ? 'now' : ago % 60 === 0 ? `-${ago / 60} min` : `-${ago} s`;
    ticks.push(svg('text', { x: x(now - ago), y: height - 4, 'text-anchor': 'middle' }, label));
  }
  const last = points.at(-1) ?? [now, 0, 0, 0];
  const minutes = span / 60;
  return h(
    'figure',
    { class: 'chart' },
    h('h3', {}, 'Transactions and waits per second'),
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `Transactions and waits per second over the last ${minutes} minutes` }, ...grid, ...ticks, line(1, 'tx'), line(2, 'waits')),
    h(
      'figcaption',
      {},
      h('span', { class: 'key-tx' }, `transactions/s ${last[1].toFixed(1)}`),
      h('span', { class: 'key-waits' }, `waits/s ${last[2].toFixed(1)}`),
      h('span', { class: 'turn-held', title: 'how much of the last second some transaction held the write turn: near 100 %, transactions wait for each other one at a time' }, `turn held ${Math.round(last[3] * 100)} %`),
      h('span', { class: 'muted' }, `last ${minutes === 1 ? 'minute' : `${minutes} minutes`}, sampled every second while this page is open`),
    ),
  );
}

function processRow(entry, extra = []) {
  return h('tr', {}, h('td', { class: 'num' }, String(entry.pid)), h('td', { class: 'num' }, seconds(entry.seconds)), h('td', { class: 'cmd' }, entry.command || '?', ...extra));
}

function renderLocks() {
  const out = $('locks');
  if (!selected) return;
  if (lockError) {
    out.replaceChildren(h('p', { class: 'error', role: 'alert' }, `Lock state unavailable: ${lockError}`));
    return;
  }
  if (!lastReport) {
    out.replaceChildren(h('p', { class: 'muted' }, 'Asking the mount…'));
    return;
  }
  if (!lastReport.mounted) {
    out.replaceChildren(h('p', { class: 'muted' }, 'This server runs without a mount (--no-mount): there is no lock manager to show.'));
    return;
  }
  const db = lockState(selected);
  const samples = samplesByDb.get(selected) ?? [];
  if (!db) {
    out.replaceChildren(
      h('div', { id: 'lock-running', class: 'lock-card idle' }, h('strong', {}, 'Nobody holds the write turn.'), h('span', { class: 'muted' }, ' No process has this database open through the mount.')),
      chart(samples),
    );
    return;
  }
  const a = db.admitted;
  const running = a
    ? h(
        'div',
        { id: 'lock-running', class: 'lock-card busy' },
        h('div', { class: 'lock-head' }, h('strong', {}, `Running: pid ${a.pid}`), h('span', {}, ` for ${seconds(a.seconds)}`), a.reserved ? h('span', { class: 'tag' }, 'reserved') : '', a.exclusive_first ? h('span', { class: 'tag warn' }, 'waiting for EXCLUSIVE: new readers wait behind it') : '', h('span', { class: 'tag' }, a.why), a.window ? h('span', { class: 'tag' }, 'has not asked to write') : ''),
        h('code', { class: 'cmd' }, a.command || '?'),
      )
    : h('div', { id: 'lock-running', class: 'lock-card idle' }, h('strong', {}, 'Nobody holds the write turn.'));
  const waiting = db.waiting.length
    ? h('div', { class: 'table-wrap' }, h('table', { id: 'lock-waiting' }, h('thead', {}, h('tr', {}, h('th', {}, 'pid'), h('th', {}, 'waiting for'), h('th', {}, 'command'))), h('tbody', {}, db.waiting.map((w) => processRow(w, [h('span', { class: 'tag' }, w.why)])))))
    : h('p', { id: 'lock-waiting', class: 'muted' }, 'Nobody waits.');
  const b = db.beside;
  const readers = h(
    'p',
    { id: 'lock-beside', class: 'muted' },
    b ? `Reading beside: ${b.count}, the oldest pid ${b.oldest_pid} for ${seconds(b.oldest_seconds)}${b.oldest_command ? ` (${b.oldest_command})` : ''}` : 'No reader beside it.',
  );
  const writers = h('p', { id: 'lock-writers', class: 'muted' }, db.writers && db.writers.length ? `Writers, who take turns: pid ${db.writers.join(', ')}` : 'No known writer holds it open.');
  const counters = h(
    'dl',
    { class: 'counters' },
    Object.entries(db.counters).flatMap(([name, value]) => [h('div', {}, h('dt', {}, name.replaceAll('_', ' ')), h('dd', {}, typeof value === 'number' && !Number.isInteger(value) ? value.toFixed(3) : String(value)))]),
  );
  out.replaceChildren(
    h('div', { class: 'lock-grid' }, h('div', {}, running, h('h3', {}, `Waiting (${db.waiting.length})`), waiting, readers, writers), h('div', {}, h('h3', {}, `Counters · ${db.mode} mode`), counters)),
    chart(samples),
  );
}

// --- backup ---------------------------------------------------------------------------------

// The mount's report (polled for the locks) carries the backup's too: `backup`, per database.
function renderBackup() {
  const out = $('backup');
  if (!selected) return;
  if (lockError) {
    out.replaceChildren(h('p', { class: 'error', role: 'alert' }, `Backup state unavailable: ${lockError}`));
    return;
  }
  if (!lastReport) {
    out.replaceChildren(h('p', { class: 'muted' }, 'Asking the mount…'));
    return;
  }
  const backup = lastReport.backup;
  if (!lastReport.mounted || !backup || !backup.replica) {
    out.replaceChildren(h('p', { id: 'backup-state', class: 'muted' }, 'No replica configured (--replica): nothing is backed up.'));
    return;
  }
  const db = backup.databases.find((d) => d.database === selected);
  const ls = backup.litestream;
  const head = h('p', { class: 'muted' }, `Replica ${backup.replica} · Litestream ${ls.running ? `running (pid ${ls.pid})` : 'not running'} · restarts ${ls.restarts}`);
  if (!db) {
    out.replaceChildren(head, h('p', { id: 'backup-state', class: 'muted' }, 'Not seen by the backup yet (it looks once a second).'));
    return;
  }
  if (!db.replicated) {
    out.replaceChildren(head, h('p', { id: 'backup-state', class: 'error' }, `Not replicated: ${db.reason}`));
    return;
  }
  const where = h('p', { class: 'muted' }, 'Replicated to ', h('code', {}, db.replica_url));
  if (!db.txid) {
    const first = h('div', { id: 'backup-state', class: 'lock-card idle' }, h('strong', {}, 'Not replicated yet:'), h('span', { class: 'muted' }, ' Litestream has not read it yet (its first sync comes within seconds).'));
    out.replaceChildren(head, first, where);
    return;
  }
  const state = h(
    'div',
    { id: 'backup-state', class: `lock-card ${db.stale ? 'busy' : 'idle'}` },
    h('strong', {}, db.stale ? `Behind by ${seconds(db.lag_seconds)}` : `${db.replicated_txid < db.txid ? 'Replicating' : 'Replicated'}, lag ${seconds(db.lag_seconds)}`),
    h('span', { class: 'muted' }, ` · transaction ${db.replicated_txid} of ${db.txid}${db.replicated_at ? `, caught up at ${db.replicated_at}` : ''}`),
    db.stale ? h('span', { class: 'tag warn' }, 'stale') : '',
  );
  const errors = h('p', { class: db.errors ? 'error' : 'muted' }, db.errors ? `${db.errors} errors; the last: ${db.last_error}` : 'No errors.');
  out.replaceChildren(head, state, where, errors);
}

// --- start ----------------------------------------------------------------------------------

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) connect(saved);
else showSignIn();
