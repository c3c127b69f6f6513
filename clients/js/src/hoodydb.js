// The hoodydb HTTP API from JavaScript: Node 18+ and browsers, no dependencies (it uses fetch).
//
//   const client = createClient({ url: 'http://127.0.0.1:8080', token });
//   const { data } = await client.sqlite.database.executeTransaction(
//     { transaction: [{ query: 'SELECT 1 AS one' }] }, { db: 'app.db' });
//
// Types come from the JSDoc below: `tsc` checks this file and writes its .d.ts when packing.

const API = '/api/v1/sqlite';
const DEFAULT_URL = 'http://127.0.0.1:8080';

/**
 * @typedef {null | boolean | number | string | object} JsonValue any JSON value
 * @typedef {null | boolean | number | string} SqlValue
 * @typedef {{ query: string, values?: SqlValue[] | Record<string, SqlValue>, noFail?: boolean }} QueryItem
 * @typedef {{ statement: string, values?: SqlValue[] | Record<string, SqlValue>,
 *             valuesBatch?: (SqlValue[] | Record<string, SqlValue>)[], noFail?: boolean }} StatementItem
 * @typedef {QueryItem | StatementItem} TransactionItem
 * @typedef {{ transaction: TransactionItem[], resultFormat?: 'map' | 'list' }} TransactionRequest
 * @typedef {{ success: boolean, error?: string, rowsUpdated?: number, rowsUpdatedBatch?: number[],
 *             resultSet?: (Record<string, JsonValue> | JsonValue[])[], resultHeaders?: string[] }} ItemResult
 * @typedef {{ key: string, value: JsonValue, version: number, expiresAt: number | null }} KvItem
 * @typedef {{ key: string, version: number, expiresAt: number | null }} KvVersion
 * @typedef {{ path: string, size: number }} DatabaseInfo
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} [url] API base URL. Node: defaults to $HOODYDB_URL; a browser page: its own origin.
 * @property {string} [token] bearer token. Node: defaults to $HOODYDB_TOKEN.
 * @property {typeof fetch} [fetch] the fetch to use (default: the global one).
 */

/** @typedef {{ db: string }} DbOption */

/**
 * @typedef {{ type: 'commit', db: string, seq: number, time: number, pid: number, command: string,
 *             pages: number, journal: 'wal' | 'rollback', token: string | null }} CommitEvent
 * @typedef {{ type: 'missed', db: string, first: number, last: number, count: number }} MissedEvent
 * @typedef {object} SubscribeOptions
 * @property {string} [db] a glob on the database paths (default: every database)
 * @property {number | Record<string, number>} [since] resume after this sequence number, or from a
 *   position (`subscription.position`); default: from the next commit
 * @property {(event: MissedEvent) => void} [onMissed] commits that left the server's history unseen
 * @property {(error: HoodyError) => void} [onError] a failed (re)connection; it is retried
 * @property {number} [retryMs] wait before reconnecting (default: the server's `retry`, 1 s)
 * @property {number} [heartbeat] seconds between the server's keep-alive comments
 * @typedef {{ close(): void, readonly position: Record<string, number> }} Subscription
 */

/**
 * Server-sent events from a byte stream: each complete event as { event, id, data }.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<{ event: string, id: string | null, data: string, retry: number | null }>}
 */
async function* readEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  /** @type {{ event: string, id: string | null, data: string[], retry: number | null }} */
  let current = { event: 'message', id: null, data: [], retry: null };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, '');
        buffer = buffer.slice(end + 1);
        if (line === '') {
          if (current.data.length || current.retry !== null) {
            yield { event: current.event, id: current.id, data: current.data.join('\n'), retry: current.retry };
          }
          current = { event: 'message', id: null, data: [], retry: null };
          continue;
        }
        if (line.startsWith(':')) continue; // a heartbeat
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') current.event = value;
        else if (field === 'data') current.data.push(value);
        else if (field === 'id') current.id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) current.retry = Number(value);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/** The server answered with an error, or could not be reached (`status` 0, `code` 'network_error'). */
export class HoodyError extends Error {
  /**
   * @param {string} message the server's message
   * @param {{ status: number, code: string | null, reqIdx?: number | null }} details
   */
  constructor(message, { status, code, reqIdx = null }) {
    super(message);
    this.name = 'HoodyError';
    /** HTTP status; 0 when no answer came. */
    this.status = status;
    /** The server's machine-readable code (`sql_error`, `precondition_failed`, …). */
    this.code = code;
    /** Index of the transaction item that failed, when one did. */
    this.reqIdx = reqIdx;
  }
}

/**
 * The URL path of a KV key: everything percent-encoded, dots too, so nothing on the way collapses
 * "." or ".." segments before the server sees them.
 * @param {string} key
 */
export function keyPath(key) {
  return `${API}/kv/${encodeURIComponent(key).replace(/[.!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}

/** @param {string | number} tag a version (7) or an entity tag ('"7"', '*') */
function entityTag(tag) {
  return typeof tag === 'number' ? `"${tag}"` : tag;
}

/** @param {string | null} etag */
function versionOf(etag) {
  return etag === null ? null : Number(etag.replace(/^W\//, '').replace(/"/g, ''));
}

/** @param {string} name */
function fromEnv(name) {
  /** @type {{ process?: { env?: Record<string, string | undefined> } }} */
  const g = /** @type {any} */ (globalThis);
  return g.process?.env?.[name] || undefined;
}

function defaultUrl() {
  /** @type {{ location?: { origin?: string } }} */
  const g = /** @type {any} */ (globalThis);
  const origin = g.location?.origin;
  return fromEnv('HOODYDB_URL') ?? (origin && origin !== 'null' ? origin : DEFAULT_URL);
}

/**
 * Reject with a HoodyError built from an error response.
 * @param {Response} response
 * @returns {Promise<never>}
 */
async function fail(response) {
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: a proxy's page, say
  }
  if (body && typeof body === 'object' && typeof body.error === 'string') {
    throw new HoodyError(body.error, { status: response.status, code: body.code ?? null, reqIdx: body.reqIdx ?? null });
  }
  throw new HoodyError(text.trim() || response.statusText || `HTTP ${response.status}`, { status: response.status, code: null });
}

/**
 * A client for one hoodydb server.
 * @param {ClientOptions} [options]
 */
export function createClient(options = {}) {
  const base = (options.url ?? defaultUrl()).replace(/\/+$/, '');
  const token = options.token ?? fromEnv('HOODYDB_TOKEN');
  const fetchImpl = options.fetch ?? globalThis.fetch;

  /**
   * @param {string} method
   * @param {string} path
   * @param {{ query?: Record<string, string | number | undefined>, body?: string, headers?: Record<string, string> }} [init]
   */
  async function request(method, path, init = {}) {
    const url = new URL(base + path);
    for (const [name, value] of Object.entries(init.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    /** @type {Record<string, string>} */
    const headers = { ...init.headers };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (init.body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetchImpl(url, { method, headers, body: init.body });
    } catch (err) {
      throw new HoodyError(`cannot reach ${base}: ${err instanceof Error ? err.message : String(err)}`, {
        status: 0,
        code: 'network_error',
      });
    }
    if (!response.ok) return fail(response);
    return response;
  }

  /** @param {string} method @param {string} path @param {Parameters<typeof request>[2]} [init] */
  async function json(method, path, init) {
    return /** @type {Promise<any>} */ ((await request(method, path, init)).json());
  }

  return {
    url: base,
    sqlite: {
      database: {
        /**
         * Run the items as one SQLite transaction; `data` holds one result per item.
         * @param {TransactionRequest} request
         * @param {DbOption} options
         * @returns {Promise<{ data: ItemResult[] }>}
         */
        async executeTransaction(request, { db }) {
          const body = await json('POST', `${API}/db`, { query: { db }, body: JSON.stringify(request) });
          return { data: body.results };
        },
      },
      databases: {
        /**
         * Create an empty database (`db_exists` if something is there).
         * @param {{ path: string }} options
         * @returns {Promise<{ data: { path: string, created: boolean } }>}
         */
        async create({ path }) {
          return { data: await json('POST', `${API}/databases`, { body: JSON.stringify({ path }) }) };
        },
        /**
         * The SQLite databases under the served root; `truncated` when the search stopped at its bound.
         * @returns {Promise<{ data: DatabaseInfo[], truncated: boolean }>}
         */
        async list() {
          const body = await json('GET', `${API}/databases`);
          return { data: body.databases, truncated: body.truncated };
        },
      },
      kvStore: {
        /**
         * Store a value. A string is JSON text (as `JSON.stringify(...)` gives); anything else is
         * stored as JSON. `ifMatch`: a version or `'*'`; `ifNoneMatch: '*'`: create only.
         * @param {string} key
         * @param {JsonValue} value
         * @param {DbOption & { ifMatch?: string | number, ifNoneMatch?: string, ttl?: number }} options
         * @returns {Promise<{ data: KvVersion, etag: string, created: boolean }>}
         */
        async set(key, value, { db, ifMatch, ifNoneMatch, ttl }) {
          /** @type {Record<string, string>} */
          const headers = {};
          if (ifMatch !== undefined) headers['If-Match'] = entityTag(ifMatch);
          if (ifNoneMatch !== undefined) headers['If-None-Match'] = ifNoneMatch;
          const body = typeof value === 'string' ? value : JSON.stringify(value);
          const response = await request('PUT', keyPath(key), { query: { db, ttl }, body, headers });
          return { data: await response.json(), etag: response.headers.get('ETag') ?? '', created: response.status === 201 };
        },
        /**
         * A key's value (parsed JSON), its entity tag and version; rejects with `not_found` (404).
         * @param {string} key
         * @param {DbOption} options
         * @returns {Promise<{ data: any, etag: string, version: number }>}
         */
        async get(key, { db }) {
          const response = await request('GET', keyPath(key), { query: { db } });
          const etag = response.headers.get('ETag') ?? '';
          return { data: await response.json(), etag, version: Number(versionOf(etag)) };
        },
        /**
         * @param {string} key
         * @param {DbOption & { ifMatch?: string | number }} options
         * @returns {Promise<{ data: { key: string, deleted: boolean, version: number } }>}
         */
        async delete(key, { db, ifMatch }) {
          const headers = ifMatch === undefined ? undefined : { 'If-Match': entityTag(ifMatch) };
          return { data: await json('DELETE', keyPath(key), { query: { db }, headers }) };
        },
        /**
         * One page of keys in key order; pass `nextCursor` back as `cursor` for the next one.
         * @param {DbOption & { prefix?: string, limit?: number, cursor?: string }} options
         * @returns {Promise<{ data: KvItem[], nextCursor: string | null }>}
         */
        async list({ db, prefix, limit, cursor }) {
          const body = await json('GET', `${API}/kv`, { query: { db, prefix, limit, cursor } });
          return { data: body.items, nextCursor: body.nextCursor };
        },
      },
      events: {
        /**
         * Every commit to the databases matching `db`, from every writer (HTTP or native), in
         * order: `onCommit` runs once per commit. The stream reconnects by itself after an error
         * and resumes where it was (its position is the last event id), so nothing is missed;
         * commits that left the server's history meanwhile come to `onMissed`. `close()` stops it.
         * @param {SubscribeOptions} options
         * @param {(event: CommitEvent) => void} onCommit
         * @returns {Subscription}
         */
        subscribe(options, onCommit) {
          const abort = new AbortController();
          /** @type {number | Record<string, number> | undefined} */
          let since = options.since;
          /** @type {Record<string, number>} */
          let position = typeof since === 'object' ? { ...since } : {};
          let retryMs = options.retryMs ?? 1000;
          const sleep = (/** @type {number} */ ms) =>
            new Promise((resolve) => {
              const timer = setTimeout(resolve, ms);
              abort.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(undefined); }, { once: true });
            });
          const run = async () => {
            while (!abort.signal.aborted) {
              try {
                const url = new URL(base + `${API}/events`);
                if (options.db) url.searchParams.set('db', options.db);
                if (options.heartbeat) url.searchParams.set('heartbeat', String(options.heartbeat));
                if (since !== undefined) url.searchParams.set('since', typeof since === 'number' ? String(since) : JSON.stringify(since));
                /** @type {Record<string, string>} */
                const headers = { Accept: 'text/event-stream' };
                if (token) headers.Authorization = `Bearer ${token}`;
                const response = await fetchImpl(url, { headers, signal: abort.signal });
                if (!response.ok) await fail(response);
                if (!response.body) throw new HoodyError('the server sent no stream', { status: response.status, code: null });
                for await (const event of readEvents(response.body)) {
                  if (event.retry !== null && options.retryMs === undefined) retryMs = event.retry;
                  if (event.id) {
                    position = JSON.parse(event.id);
                    since = position; // a reconnection resumes here
                  }
                  if (event.event === 'commit') onCommit(JSON.parse(event.data));
                  else if (event.event === 'missed') options.onMissed?.(JSON.parse(event.data));
                }
              } catch (err) {
                if (abort.signal.aborted) return;
                const error = err instanceof HoodyError
                  ? err
                  : new HoodyError(`events: ${err instanceof Error ? err.message : String(err)}`, { status: 0, code: 'network_error' });
                options.onError?.(error);
              }
              await sleep(retryMs);
            }
          };
          run();
          return {
            close() {
              abort.abort();
            },
            get position() {
              return { ...position };
            },
          };
        },
      },
      locks: {
        /**
         * What the mount's lock manager sees, per database (`hoodydb locks --json`); `mounted` is
         * false when the server runs without a mount.
         * @returns {Promise<{ data: LockReport }>}
         */
        async get() {
          return { data: await json('GET', `${API}/locks`) };
        },
      },
    },
  };
}

/**
 * @typedef {{ pid: number, seconds: number, command: string, why: string }} LockWaiter
 * @typedef {LockWaiter & { reserved: boolean, exclusive_first: boolean, window: boolean }} LockHolder
 * @typedef {{ pid: number, seconds: number, command: string, state: 'turn' | 'beside' | 'waiting' | 'idle', why: string }} LockOwner
 * @typedef {{ count: number, oldest_pid: number, oldest_seconds: number, oldest_command?: string }} LockBeside
 * @typedef {{ transactions: number, waits: number, timeouts: number, interrupts: number } & Record<string, number>} LockCounters
 * @typedef {{ database: string, mode: string, admitted: LockHolder | null, waiting: LockWaiter[],
 *             readers: number[], beside: LockBeside | null, writers: number[], holders: number[],
 *             counters: LockCounters, still_seconds: number | null, owners: LockOwner[] }} DatabaseLocks
 * @typedef {{ now: number, peak: number, bound: number, refused: number }} LockParked
 * @typedef {{ mounted: boolean, databases: DatabaseLocks[], mountpoint?: string, pid?: number,
 *             policy?: string, lock_timeout?: number, pinned_to_cpu?: number | null,
 *             threads?: number, parked?: LockParked }} LockReport
 * @typedef {ReturnType<typeof createClient>} HoodyClient
 */
