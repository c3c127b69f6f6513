// Start a real `hoodydb serve` (with its FUSE mount) for the tests, and always take it down.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(import.meta.url), '../../../..');
// The Python that has hoodydb installed: the repo's venv unless told otherwise.
export const PYTHON = process.env.HOODYDB_PYTHON ?? join(REPO, '.venv/bin/python');

async function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => ok(port));
    });
  });
}

function isMounted(path) {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === path);
}

/**
 * `hoodydb serve --data D --mount M` on a free loopback port, in a fresh temporary directory.
 * @param {{ args?: string[], mount?: boolean }} [options]
 */
export async function startServe({ args = [], mount = true } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'hoodydb-js-'));
  const data = join(dir, 'data');
  const mnt = join(dir, 'mnt');
  const port = await freePort();
  const token = randomBytes(16).toString('hex');
  const where = mount ? ['--data', data, '--mount', mnt] : ['--no-mount', '--root', data];
  const proc = spawn(PYTHON, ['-m', 'hoodydb', 'serve', ...where, '--port', String(port), '--token', token, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The mount's control socket goes beside the data, not to /run.
    env: { ...process.env, HOODYDB_RUNTIME_DIR: join(dir, 'run') },
  });
  let output = '';
  proc.stdout.on('data', (chunk) => (output += chunk));
  proc.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise((ok) => proc.on('exit', (code) => ok(code)));
  const url = `http://127.0.0.1:${port}`;

  async function stop() {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    // Only matters if serve died before it could unmount.
    if (mount && isMounted(mnt)) spawnSync('fusermount3', ['-u', '-z', mnt]);
    rmSync(dir, { recursive: true, force: true });
  }

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`hoodydb serve exited with ${proc.exitCode}: ${output}`);
    }
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`hoodydb serve did not answer within 30 s: ${output}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  return { url, token, data, mnt, stop, output: () => output };
}
