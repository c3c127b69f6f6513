// The client against a real `hoodydb serve` with its mount: the seed's calls, the KV store, errors,
// and HTTP writers beside native sqlite3 writers on one database.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { createClient, HoodyError } from '@hoodydb/client';
import { startServe } from './serve.js';

/** @type {Awaited<ReturnType<typeof startServe>>} */
let server;
/** @type {ReturnType<typeof createClient>} */
let client;

before(async () => {
  server = await startServe();
  client = createClient({ url: server.url, token: server.token });
});
after(async () => server?.stop());

/** @returns {Promise<HoodyError>} */
async function rejection(promise) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof HoodyError, `not a HoodyError: ${err}`);
    return err;
  }
  assert.fail('expected a rejection');
}

test("the seed's example works as written", async () => {
  const db = `${server.mnt}/app.db`; // an absolute path under the mount, like the seed's
  await client.sqlite.databases.create({ path: 'app.db' });
  await client.sqlite.database.executeTransaction(
    {
      transaction: [
        { statement: 'CREATE TABLE logs (id INTEGER PRIMARY KEY, timestamp REAL, message TEXT)' },
        { statement: 'INSERT INTO logs (timestamp, message) VALUES (?, ?)', valuesBatch: [[1, 'first'], [2, 'second']] },
      ],
    },
    { db },
  );
  const result = await client.sqlite.database.executeTransaction(
    { transaction: [{ query: 'SELECT * FROM logs ORDER BY timestamp DESC LIMIT 100' }] },
    { db },
  );
  assert.deepEqual(result.data, [
    { success: true, resultSet: [{ id: 2, timestamp: 2, message: 'second' }, { id: 1, timestamp: 1, message: 'first' }] },
  ]);
  await client.sqlite.kvStore.set('user:1', JSON.stringify({ name: 'Alice' }), { db });
  const value = await client.sqlite.kvStore.get('user:1', { db });
  assert.deepEqual(value.data, { name: 'Alice' });
});

describe('databases', () => {
  test('create answers the path; creating again is db_exists', async () => {
    const { data } = await client.sqlite.databases.create({ path: 'made.db' });
    assert.deepEqual(data, { path: 'made.db', created: true });
    const err = await rejection(client.sqlite.databases.create({ path: 'made.db' }));
    assert.equal(err.status, 409);
    assert.equal(err.code, 'db_exists');
  });

  test('list names the databases under the mount', async () => {
    await client.sqlite.databases.create({ path: 'listed.db' });
    const { data, truncated } = await client.sqlite.databases.list();
    assert.equal(truncated, false);
    assert.ok(data.some((d) => d.path === 'listed.db'), JSON.stringify(data));
  });
});

describe('transactions', () => {
  const db = 'tx.db';
  before(async () => {
    await client.sqlite.databases.create({ path: db });
    await client.sqlite.database.executeTransaction(
      { transaction: [{ statement: 'CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)' }] },
      { db },
    );
  });

  test('named values, the list format, rowsUpdated', async () => {
    const { data } = await client.sqlite.database.executeTransaction(
      {
        transaction: [
          { statement: 'INSERT INTO people (name) VALUES (:name)', values: { name: 'Ada' } },
          { query: 'SELECT id, name FROM people WHERE name = ?', values: ['Ada'] },
        ],
        resultFormat: 'list',
      },
      { db },
    );
    assert.equal(data[0].rowsUpdated, 1);
    assert.deepEqual(data[1].resultHeaders, ['id', 'name']);
    assert.deepEqual(data[1].resultSet, [[1, 'Ada']]);
  });

  test('a failing item rejects with its reqIdx, and nothing of the transaction is committed', async () => {
    const err = await rejection(
      client.sqlite.database.executeTransaction(
        { transaction: [{ statement: "INSERT INTO people (name) VALUES ('Brian')" }, { query: 'SELECT * FROM nope' }] },
        { db },
      ),
    );
    assert.equal(err.status, 400);
    assert.equal(err.code, 'sql_error');
    assert.equal(err.reqIdx, 1);
    assert.match(err.message, /no such table: nope/);
    const { data } = await client.sqlite.database.executeTransaction(
      { transaction: [{ query: "SELECT count(*) AS n FROM people WHERE name = 'Brian'" }] },
      { db },
    );
    assert.deepEqual(data[0].resultSet, [{ n: 0 }]);
  });

  test('a constraint violation is 409 constraint_violation', async () => {
    const err = await rejection(
      client.sqlite.database.executeTransaction({ transaction: [{ statement: 'INSERT INTO people (name) VALUES (NULL)' }] }, { db }),
    );
    assert.equal(err.status, 409);
    assert.equal(err.code, 'constraint_violation');
    assert.equal(err.reqIdx, 0);
  });

  test('a missing database is 404 db_not_found', async () => {
    const err = await rejection(client.sqlite.database.executeTransaction({ transaction: [{ query: 'SELECT 1' }] }, { db: 'absent.db' }));
    assert.equal(err.status, 404);
    assert.equal(err.code, 'db_not_found');
  });
});

describe('kvStore', () => {
  const db = 'kv.db';
  before(() => client.sqlite.databases.create({ path: db }));

  test('any JSON value round-trips, and keys with / and . in them too', async () => {
    for (const [key, value] of [
      ['n', 42],
      ['list', [1, 'two', null, { three: 3 }]],
      ['a/b/../c.d', { nested: { ok: true } }],
      ['s', 'plain string'],
      ['t', true],
    ]) {
      // A string is JSON text: a plain string value goes through JSON.stringify.
      const sent = typeof value === 'string' ? JSON.stringify(value) : value;
      const set = await client.sqlite.kvStore.set(key, sent, { db });
      assert.equal(set.created, true);
      assert.equal(set.data.key, key);
      const got = await client.sqlite.kvStore.get(key, { db });
      assert.deepEqual(got.data, value);
      assert.equal(got.version, set.data.version);
      assert.equal(got.etag, `"${set.data.version}"`);
    }
  });

  test('a string that is not JSON is refused with bad_json, and nothing is stored', async () => {
    const err = await rejection(client.sqlite.kvStore.set('bad', '{not json', { db }));
    assert.equal(err.status, 400);
    assert.equal(err.code, 'bad_json');
    assert.equal((await rejection(client.sqlite.kvStore.get('bad', { db }))).code, 'not_found');
  });

  test('ifMatch guards a write; ifNoneMatch * creates only', async () => {
    const first = await client.sqlite.kvStore.set('guarded', { v: 1 }, { db });
    const stale = await rejection(client.sqlite.kvStore.set('guarded', { v: 2 }, { db, ifMatch: first.data.version + 1000 }));
    assert.equal(stale.status, 412);
    assert.equal(stale.code, 'precondition_failed');
    assert.deepEqual((await client.sqlite.kvStore.get('guarded', { db })).data, { v: 1 });
    const second = await client.sqlite.kvStore.set('guarded', { v: 2 }, { db, ifMatch: first.etag });
    assert.equal(second.created, false);
    assert.ok(second.data.version > first.data.version);
    const exists = await rejection(client.sqlite.kvStore.set('guarded', { v: 3 }, { db, ifNoneMatch: '*' }));
    assert.equal(exists.code, 'precondition_failed');
  });

  test('ttl sets expiresAt', async () => {
    const before = Date.now() / 1000;
    const { data } = await client.sqlite.kvStore.set('session', { user: 1 }, { db, ttl: 60 });
    assert.ok(data.expiresAt !== null && data.expiresAt >= before + 59 && data.expiresAt <= Date.now() / 1000 + 61, String(data.expiresAt));
  });

  test('delete removes the key; deleting with a stale ifMatch does not', async () => {
    const { data } = await client.sqlite.kvStore.set('doomed', 1, { db });
    const stale = await rejection(client.sqlite.kvStore.delete('doomed', { db, ifMatch: data.version + 1000 }));
    assert.equal(stale.status, 412);
    const deleted = await client.sqlite.kvStore.delete('doomed', { db, ifMatch: data.version });
    assert.equal(deleted.data.deleted, true);
    const gone = await rejection(client.sqlite.kvStore.get('doomed', { db }));
    assert.equal(gone.status, 404);
    assert.equal(gone.code, 'not_found');
  });

  test('list filters by prefix and pages with nextCursor', async () => {
    for (let i = 0; i < 5; i++) await client.sqlite.kvStore.set(`page/${i}`, { i }, { db });
    await client.sqlite.kvStore.set('pagex', { outside: true }, { db });
    const keys = [];
    let cursor;
    do {
      const page = await client.sqlite.kvStore.list({ db, prefix: 'page/', limit: 2, cursor });
      assert.ok(page.data.length <= 2);
      keys.push(...page.data.map((item) => item.key));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    assert.deepEqual(keys, ['page/0', 'page/1', 'page/2', 'page/3', 'page/4']);
  });
});

describe('errors and configuration', () => {
  test('a wrong token is 401 unauthorized', async () => {
    const wrong = createClient({ url: server.url, token: 'not-the-token' });
    const err = await rejection(wrong.sqlite.databases.list());
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthorized');
  });

  test('no server at the URL: status 0, network_error', async () => {
    const nowhere = createClient({ url: 'http://127.0.0.1:9', token: 't' });
    const err = await rejection(nowhere.sqlite.databases.list());
    assert.equal(err.status, 0);
    assert.equal(err.code, 'network_error');
  });

  test('in Node, url and token fall back to HOODYDB_URL and HOODYDB_TOKEN', async () => {
    process.env.HOODYDB_URL = server.url;
    process.env.HOODYDB_TOKEN = server.token;
    try {
      const fromEnv = createClient();
      assert.equal(fromEnv.url, server.url);
      assert.ok(Array.isArray((await fromEnv.sqlite.databases.list()).data));
    } finally {
      delete process.env.HOODYDB_URL;
      delete process.env.HOODYDB_TOKEN;
    }
  });
});

/** Run the sqlite3 CLI on a file through the mount; resolves to its exit code, stdout and stderr. */
function sqlite3(path, sql) {
  return new Promise((ok) => {
    const proc = spawn('sqlite3', [path, sql]);
    let out = '';
    let err = '';
    proc.stdout.on('data', (c) => (out += c));
    proc.stderr.on('data', (c) => (err += c));
    proc.on('exit', (code) => ok({ code, out, err }));
  });
}

test('HTTP writers and native sqlite3 writers on one database: every write lands, no "database is locked"', async () => {
  const WRITERS = 12;
  const db = 'shared.db';
  await client.sqlite.databases.create({ path: db });
  await client.sqlite.database.executeTransaction(
    { transaction: [{ statement: 'CREATE TABLE t (id INTEGER PRIMARY KEY, src TEXT, n INTEGER)' }] },
    { db },
  );
  const path = `${server.mnt}/${db}`;
  // Read, then write, in one transaction on both sides: the pattern SQLite cannot retry by itself
  // (and the sqlite3 CLI's busy timeout is 0).
  const http = Array.from({ length: WRITERS }, (_, n) =>
    client.sqlite.database.executeTransaction(
      { transaction: [{ query: 'SELECT count(*) FROM t' }, { statement: "INSERT INTO t (src, n) VALUES ('http', ?)", values: [n] }] },
      { db },
    ),
  );
  const native = Array.from({ length: WRITERS }, (_, n) =>
    sqlite3(path, `BEGIN; SELECT count(*) FROM t; INSERT INTO t (src, n) VALUES ('cli', ${n}); COMMIT;`),
  );
  const [httpResults, nativeResults] = await Promise.all([Promise.allSettled(http), Promise.all(native)]);
  for (const r of httpResults) assert.equal(r.status, 'fulfilled', String(r.status === 'rejected' && r.reason));
  for (const r of nativeResults) assert.deepEqual([r.code, r.err], [0, '']);

  const { data } = await client.sqlite.database.executeTransaction(
    {
      transaction: [
        { query: "SELECT src, count(*) AS n, count(DISTINCT n) AS distinct_n FROM t GROUP BY src ORDER BY src" },
        { query: 'PRAGMA integrity_check' },
      ],
    },
    { db },
  );
  assert.deepEqual(data[0].resultSet, [
    { src: 'cli', n: WRITERS, distinct_n: WRITERS },
    { src: 'http', n: WRITERS, distinct_n: WRITERS },
  ]);
  assert.deepEqual(data[1].resultSet, [{ integrity_check: 'ok' }]);

  // The mount counted them: the lock route reports this database with its transactions.
  const { data: locks } = await client.sqlite.locks.get();
  assert.equal(locks.mounted, true);
  const shared = locks.databases.find((d) => d.database === db);
  assert.ok(shared, JSON.stringify(locks.databases.map((d) => d.database)));
  assert.ok(shared.counters.transactions >= 2 * WRITERS, JSON.stringify(shared.counters));
});

/** Resolves once `check()` holds, polling every 20 ms (fails after 20 s). */
async function until(check, what) {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 20));
  }
}

test('events: every commit, HTTP and native, once and in order; a new subscription resumes from a position', async () => {
  const db = 'feed.db';
  await client.sqlite.databases.create({ path: db });
  const run = (sql) => client.sqlite.database.executeTransaction({ transaction: [{ statement: sql }] }, { db });
  await run('CREATE TABLE t (x)');
  /** @type {import('@hoodydb/client').CommitEvent[]} */
  const seen = [];
  const errors = [];
  const sub = client.sqlite.events.subscribe({ db, heartbeat: 1, onError: (e) => errors.push(e) }, (e) => seen.push(e));
  await until(() => 'feed.db' in sub.position, 'the ready event');
  await run('INSERT INTO t VALUES (1)');
  const native = await sqlite3(`${server.mnt}/${db}`, 'INSERT INTO t VALUES (2)');
  assert.equal(native.code, 0);
  // A transaction that fails rolls back: no event.
  await assert.rejects(run('INSERT INTO nowhere VALUES (1)'));
  await run('INSERT INTO t VALUES (3)');
  await until(() => seen.length >= 3, 'three commits');
  await new Promise((ok) => setTimeout(ok, 300));
  sub.close();
  assert.deepEqual(errors, []);
  assert.equal(seen.length, 3);
  const first = seen[0].seq;
  assert.deepEqual(seen.map((e) => e.seq), [first, first + 1, first + 2]);
  assert.ok(seen.every((e) => e.db === db && e.pages >= 1));
  assert.equal(seen[0].pid, seen[2].pid); // both through the server
  assert.notEqual(seen[1].pid, seen[0].pid); // the sqlite3 CLI
  assert.match(seen[1].command, /sqlite3/);

  // Commits while nobody listens; a subscription from the last position gets exactly them.
  const position = sub.position;
  await run('INSERT INTO t VALUES (4)');
  await run('INSERT INTO t VALUES (5)');
  const resumed = [];
  const again = client.sqlite.events.subscribe({ db, since: position }, (e) => resumed.push(e));
  await until(() => resumed.length >= 2, 'the two commits made meanwhile');
  again.close();
  assert.deepEqual(resumed.map((e) => e.seq), [first + 3, first + 4]);
});
