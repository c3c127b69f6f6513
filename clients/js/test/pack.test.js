// `npm pack` gives a tarball that installs into an empty project without the network (the
// package has no dependencies), imports there, and type-checks the seed's example there.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';

const PACKAGE = resolve(fileURLToPath(import.meta.url), '../..');
const work = mkdtempSync(join(tmpdir(), 'hoodydb-pack-'));
after(() => rmSync(work, { recursive: true, force: true }));

const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('the packed tarball installs offline into an empty project, imports, and type-checks', () => {
  const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', work], PACKAGE));
  const files = packed.files.map((f) => f.path).sort();
  assert.deepEqual(files, ['README.md', 'package.json', 'src/hoodydb.js', 'types/hoodydb.d.ts']);

  const project = join(work, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'empty-project', private: true, type: 'module' }));
  npm(['install', '--offline', '--no-audit', '--no-fund', join(work, packed.filename)], project);
  assert.ok(existsSync(join(project, 'node_modules/@hoodydb/client/types/hoodydb.d.ts')));

  const imported = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', "import * as m from '@hoodydb/client'; console.log(Object.keys(m).sort().join(','), typeof m.createClient({ url: 'http://x', token: 't' }).sqlite.kvStore.get)"],
    { cwd: project, encoding: 'utf8' },
  );
  assert.equal(imported.trim(), 'HoodyError,createClient,keyPath function');

  copyFileSync(join(PACKAGE, 'test/types.ts'), join(project, 'types.ts'));
  copyFileSync(join(PACKAGE, 'test/tsconfig.json'), join(project, 'tsconfig.json'));
  execFileSync(process.execPath, [join(PACKAGE, 'node_modules/typescript/bin/tsc'), '-p', join(project, 'tsconfig.json')], { encoding: 'utf8' });
});
