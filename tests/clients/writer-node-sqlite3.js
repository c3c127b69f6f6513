// Stock node-sqlite3 writer: N single-statement INSERTs on one connection, one after another,
// busy timeout 0 (SQLite's default), so any lock conflict the mount failed to absorb is an error.
// Usage: node writer-node-sqlite3.js DB W N; prints "commits errors", exits 1 on any error.
'use strict';
const sqlite3 = require('sqlite3');

const [path, w, n] = process.argv.slice(2);
const db = new sqlite3.Database(path);
db.configure('busyTimeout', 0);

function run(sql, params) {
  return new Promise((resolve, reject) => db.run(sql, params, (err) => (err ? reject(err) : resolve())));
}

(async () => {
  let commits = 0;
  let errors = 0;
  for (let i = 0; i < Number(n); i++) {
    try {
      await run('INSERT INTO t(w, v) VALUES (?, ?)', [Number(w), i]);
      commits++;
    } catch (e) {
      errors++;
      console.error(`node-sqlite3: ${e.message}`);
    }
  }
  await new Promise((resolve) => db.close(resolve));
  console.log(commits, errors);
  process.exitCode = errors ? 1 : 0;
})();
