// The web console in a real headless Chromium against a real `hoodydb serve` with its mount:
// sign in, list databases, run SQL, read the KV store, and watch the lock panel follow a
// transaction that a native sqlite3 process holds open, then lets go; the backup panel (the
// server backs up to a file replica) shows a WAL database replicated and why another is not.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';
import { createClient } from '@hoodydb/client';
import { PYTHON, startServe } from './serve.js';

const CHROMIUM = process.env.HOODYDB_CHROMIUM ?? '/usr/bin/chromium';
// Flags for a closed network: no background traffic, no first-run work.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const TIMEOUT = 15_000;

/** @type {Awaited<ReturnType<typeof startServe>>} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;
/** @type {import('playwright-core').Page} */
let page;
/** Where screenshots go: docs/ when HOODYDB_SCREENSHOT_DIR says so (make screenshots). */
let shots;
/** @type {import('node:child_process').ChildProcess[]} */
const holders = [];
const replica = mkdtempSync(join(tmpdir(), 'hoodydb-js-replica-'));

before(async () => {
  server = await startServe({ args: ['--replica', `file://${replica}`] });
  shots = process.env.HOODYDB_SCREENSHOT_DIR ?? join(server.data, '..', 'screenshots');
  mkdirSync(shots, { recursive: true });
  const client = createClient({ url: server.url, token: server.token });
  await client.sqlite.databases.create({ path: 'app.db' });
  await client.sqlite.databases.create({ path: 'team/analytics.db' }).catch(async () => {
    mkdirSync(join(server.mnt, 'team'), { recursive: true });
    await client.sqlite.databases.create({ path: 'team/analytics.db' });
  });
  await client.sqlite.database.executeTransaction(
    {
      transaction: [
        { statement: 'CREATE TABLE logs (id INTEGER PRIMARY KEY, timestamp TEXT, level TEXT, message TEXT)' },
        {
          statement: 'INSERT INTO logs (timestamp, level, message) VALUES (?, ?, ?)',
          valuesBatch: [
            ['2026-12-04 09:00:01', 'info', 'worker started'],
            ['2026-12-04 09:00:03', 'info', 'connected to the queue'],
            ['2026-12-04 09:01:17', 'warn', 'slow upstream: 812 ms'],
            ['2026-12-04 09:02:40', 'error', 'payment 4411 declined'],
            ['2026-12-04 09:02:41', 'info', 'retry scheduled'],
          ],
        },
      ],
    },
    { db: 'app.db' },
  );
  await client.sqlite.kvStore.set('user:1', JSON.stringify({ name: 'Alice', plan: 'pro' }), { db: 'app.db' });
  await client.sqlite.kvStore.set('user:2', { name: 'Brian', plan: 'free' }, { db: 'app.db' });
  await client.sqlite.kvStore.set('feature:dark-mode', true, { db: 'app.db', ttl: 3600 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
  page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
  page.setDefaultTimeout(TIMEOUT);
});

after(async () => {
  for (const p of holders) if (p.exitCode === null) p.kill('SIGKILL');
  await browser?.close();
  await server?.stop();
  rmSync(replica, { recursive: true, force: true });
});

/** A sqlite3 CLI on a database through the mount, fed statements one line at a time. */
function sqliteShell(db) {
  const proc = spawn('sqlite3', [join(server.mnt, db)], { stdio: ['pipe', 'pipe', 'pipe'] });
  holders.push(proc);
  let out = '';
  proc.stdout.on('data', (c) => (out += c));
  proc.stderr.on('data', (c) => (out += c));
  const exited = new Promise((ok) => proc.on('exit', (code) => ok(code)));
  return { proc, send: (/** @type {string} */ line) => proc.stdin.write(`${line}\n`), exited, output: () => out };
}

test('the console signs in, lists databases, runs SQL and shows the KV store', async () => {
  await page.goto(server.url);
  await page.getByLabel('API token').fill('wrong-token');
  await page.keyboard.press('Enter');
  await page.getByText('That token is not accepted by this server.').waitFor();

  await page.getByLabel('API token').fill(server.token);
  await page.keyboard.press('Enter');
  const list = page.locator('#db-list');
  await list.getByText('app.db', { exact: true }).waitFor();
  await list.getByText('team/analytics.db', { exact: true }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('hoodydb.token')), server.token);

  await list.getByText('app.db', { exact: true }).click();
  const editor = page.locator('#sql');
  await editor.fill("SELECT timestamp, level, message FROM logs WHERE level <> 'debug' ORDER BY timestamp DESC LIMIT 100;");
  await editor.press('Control+Enter');
  const table = page.locator('#sql-results table');
  await table.waitFor();
  assert.deepEqual(await table.locator('th').allTextContents(), ['timestamp', 'level', 'message']);
  assert.equal(await table.locator('tbody tr').count(), 5);
  assert.equal(await table.locator('tbody tr').first().locator('td').nth(2).textContent(), 'retry scheduled');
  await page.screenshot({ path: join(shots, 'console-sql.png') });

  // A failing statement rolls the whole transaction back and says which one failed.
  await editor.fill("INSERT INTO logs (level) VALUES ('x');\nSELECT * FROM nope;");
  await page.getByRole('button', { name: 'Run' }).click();
  await page.locator('#sql-results [role=alert]').getByText('no such table: nope (statement 2)').waitFor();
  await editor.fill("SELECT count(*) AS n FROM logs WHERE level = 'x'");
  await editor.press('Control+Enter');
  await page.locator('#sql-results td').getByText('0', { exact: true }).waitFor();

  // The keyboard moves between tabs.
  await page.locator('#tab-sql').focus();
  await page.keyboard.press('ArrowRight');
  const kv = page.locator('#kv-results table');
  await kv.waitFor();
  assert.deepEqual(await kv.locator('td.key').allTextContents(), ['feature:dark-mode', 'user:1', 'user:2']);
  assert.equal(await kv.locator('tbody tr').nth(1).locator('td.json').textContent(), '{"name":"Alice","plan":"pro"}');
  await page.getByLabel('Key prefix').fill('user:');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('#kv-results td.key').length === 2);
});

test('the lock panel shows a transaction held open by sqlite3 and who waits behind it, then shows it gone', async () => {
  // Some traffic first, so the chart has something to draw.
  const client = createClient({ url: server.url, token: server.token });
  for (let i = 0; i < 12; i++) {
    await client.sqlite.database.executeTransaction({ transaction: [{ statement: "INSERT INTO logs (level, message) VALUES ('debug', 'tick')" }] }, { db: 'app.db' });
    await new Promise((ok) => setTimeout(ok, 250));
  }
  await page.locator('#tab-locks').click();
  const running = page.locator('#lock-running');
  await running.getByText('Nobody holds the write turn.').waitFor();

  const holder = sqliteShell('app.db');
  holder.send('BEGIN IMMEDIATE;');
  holder.send("INSERT INTO logs (level, message) VALUES ('info', 'held by sqlite3');");
  await running.getByText(`Running: pid ${holder.proc.pid}`).waitFor();
  await running.getByText('sqlite3').waitFor();
  // A second writer queues in the mount's gate behind it.
  const waiter = sqliteShell('app.db');
  waiter.send("INSERT INTO logs (level, message) VALUES ('info', 'waited its turn');");
  await page.locator('#lock-waiting td').getByText(String(waiter.proc.pid), { exact: true }).waitFor();
  await page.locator('.db-list .badge.waiting').waitFor();
  await page.waitForTimeout(1500); // let the durations grow to something readable
  // The turn was held all through the last sample: the chart's caption says so.
  const held = page.locator('.chart .turn-held');
  await held.getByText(/^turn held (9\d|100) %$/).waitFor();
  await page.screenshot({ path: join(shots, 'console-locks.png') });

  holder.send('COMMIT;');
  holder.proc.stdin.end();
  waiter.proc.stdin.end();
  assert.equal(await holder.exited, 0, holder.output());
  assert.equal(await waiter.exited, 0, waiter.output());
  await running.getByText('Nobody holds the write turn.').waitFor();
  await page.locator('#lock-waiting').getByText('Nobody waits.').waitFor();
  await held.getByText(/^turn held \d %$/).waitFor(); // and once a second has gone by idle, that it is not
  const { data } = await client.sqlite.database.executeTransaction(
    { transaction: [{ query: "SELECT count(*) AS n FROM logs WHERE message IN ('held by sqlite3', 'waited its turn')" }] },
    { db: 'app.db' },
  );
  assert.deepEqual(data[0].resultSet, [{ n: 2 }]);
});

test('a query shown in the console runs again when its database commits, whoever commits', async () => {
  await page.locator('#tab-sql').click();
  await page.locator('#db-list').getByText('app.db', { exact: true }).click();
  const editor = page.locator('#sql');
  await editor.fill("SELECT count(*) AS n FROM logs WHERE level = 'native'");
  await editor.press('Control+Enter');
  const cell = page.locator('#sql-results table tbody td').first();
  await cell.waitFor();
  assert.equal(await cell.textContent(), '0');
  // A native writer, not the console: the commit feed tells the page, no click needed.
  const shell = sqliteShell('app.db');
  shell.send("INSERT INTO logs (level) VALUES ('native');");
  shell.send('.quit');
  assert.equal(await shell.exited, 0, shell.output());
  await page.waitForFunction(() => document.querySelector('#sql-results table tbody td')?.textContent === '1');
});

test('the backup panel shows a replicated WAL database and says why a rollback-journal one is not', async () => {
  // A WAL database made by a native client through the mount; app.db (made by the API) is not WAL.
  execFileSync('sqlite3', [join(server.mnt, 'wal.db'), 'PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);']);
  await page.reload(); // the list of databases is read at sign-in (the token is kept)
  const list = page.locator('#db-list');
  await list.getByText('wal.db', { exact: true }).click();
  await page.locator('#tab-backup').click();
  const state = page.locator('#backup-state');
  await state.getByText(/^Replicated, lag/).waitFor();
  await page.locator('#backup').getByText(`file://${replica}/wal.db`).waitFor();
  await page.screenshot({ path: join(shots, 'console-backup.png') });
  await list.getByText('app.db', { exact: true }).click();
  await state.getByText('Not replicated: rollback-journal mode').waitFor();
});

let tokenCount = 0;
/** A scoped token from `hoodydb token create`, as an operator would make it. */
function scopedToken(...args) {
  const name = `console-${++tokenCount}`;
  const done = spawnSync(PYTHON, ['-m', 'hoodydb', 'token', 'create', '--data', server.data, '--name', name, ...args], { encoding: 'utf8' });
  assert.equal(done.status, 0, done.stderr);
  return done.stdout.trim();
}

async function signInFresh(token) {
  if (await page.locator('#sign-out').isVisible()) await page.locator('#sign-out').click();
  await page.goto(server.url);
  await page.getByLabel('API token').fill(token);
  await page.keyboard.press('Enter');
}

test('the console shows what a scoped token may do and hides what it may not', async () => {
  // Read-only, confined to team/: only its database is listed, nothing offers to write.
  await signInFresh(scopedToken('--read-only', '--db', 'team/*'));
  const list = page.locator('#db-list');
  await list.getByText('team/analytics.db', { exact: true }).waitFor();
  assert.equal(await list.getByText('app.db', { exact: true }).count(), 0);
  await page.locator('#token-scope').getByText(/read-only · databases team\/\*/).waitFor();
  assert.equal(await page.locator('#create-form').isHidden(), true);
  await list.getByText('team/analytics.db', { exact: true }).click();
  assert.equal(await page.locator('#sql-read-only').isVisible(), true);
  const editor = page.locator('#sql');
  await editor.fill('CREATE TABLE sneaky (a)');
  await editor.press('Control+Enter');
  await page.locator('#sql-results [role=alert] code').getByText('forbidden').waitFor();
  await editor.fill('SELECT count(*) AS n FROM sqlite_schema');
  await editor.press('Control+Enter');
  await page.locator('#sql-results td').getByText('0', { exact: true }).waitFor();

  // KV-only: no database list, no SQL, no locks; a database is opened by name for its keys.
  await signInFresh(scopedToken('--kv-only'));
  await page.locator('#open-form').waitFor();
  assert.equal(await page.locator('#db-list').isHidden(), true);
  assert.equal(await page.locator('#tab-sql').isHidden(), true);
  assert.equal(await page.locator('#tab-locks').isHidden(), true);
  await page.getByLabel('Database (this token cannot list them)').fill('app.db');
  await page.keyboard.press('Enter');
  const kv = page.locator('#kv-results table');
  await kv.waitFor();
  assert.deepEqual(await kv.locator('td.key').allTextContents(), ['feature:dark-mode', 'user:1', 'user:2']);
  await page.locator('#sign-out').click();
});
