// Compiled by tsc (never run): the public types accept the seed's calls and refuse misuse.
// `npm run typecheck` compiles it against this package; test/pack.test.js against the packed tarball.
import { createClient, HoodyError } from '@hoodydb/client';

export async function seedExample(): Promise<string> {
  const client = createClient({ url: 'http://127.0.0.1:8080', token: 'token' });
  const result = await client.sqlite.database.executeTransaction(
    { transaction: [{ query: 'SELECT * FROM logs ORDER BY timestamp DESC LIMIT 100' }] },
    { db: '/hoody/databases/app.db' },
  );
  const rows: unknown[] | undefined = result.data[0].resultSet;
  await client.sqlite.kvStore.set('user:1', JSON.stringify({ name: 'Alice' }), { db: '/hoody/databases/app.db' });
  await client.sqlite.kvStore.set('user:2', { name: 'Brian', tags: ['a'] }, { db: 'app.db', ifMatch: 3, ttl: 60 });
  const value = await client.sqlite.kvStore.get('user:1', { db: '/hoody/databases/app.db' });
  const version: number = value.version;
  const page = await client.sqlite.kvStore.list({ db: 'app.db', prefix: 'user:' });
  const next: string | null = page.nextCursor;
  await client.sqlite.kvStore.delete('user:1', { db: 'app.db', ifMatch: value.etag });
  await client.sqlite.databases.create({ path: 'app.db' });
  const locks = await client.sqlite.locks.get();
  const running: number | undefined = locks.data.databases[0]?.admitted?.pid;

  // @ts-expect-error the db option is required
  await client.sqlite.database.executeTransaction({ transaction: [] }, {});
  // @ts-expect-error an item is a query or a statement
  await client.sqlite.database.executeTransaction({ transaction: [{ sql: 'SELECT 1' }] }, { db: 'app.db' });
  // @ts-expect-error resultFormat is 'map' or 'list'
  await client.sqlite.database.executeTransaction({ transaction: [], resultFormat: 'table' }, { db: 'app.db' });

  try {
    await client.sqlite.kvStore.get('missing', { db: 'app.db' });
  } catch (err) {
    if (err instanceof HoodyError) {
      const details: [number, string | null, number | null | undefined] = [err.status, err.code, err.reqIdx];
      return `${details} ${err.message}`;
    }
  }
  return `${rows} ${version} ${next} ${running}`;
}
