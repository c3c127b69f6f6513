// Stock better-sqlite3 writer: N single-statement INSERTs on one connection, busy timeout 0
// (the driver's default is 5 s), so any lock conflict the mount failed to absorb is an error.
// Usage: node writer-better-sqlite3.js DB W N; prints "commits errors", exits 1 on any error.
'use strict';
const Database = require('better-sqlite3');

const [path, w, n] = process.argv.slice(2);
const db = new Database(path, { timeout: 0 });
const insert = db.prepare('INSERT INTO t(w, v) VALUES (?, ?)');
let commits = 0;
let errors = 0;
for (let i = 0; i < Number(n); i++) {
  try {
    insert.run(Number(w), i);
    commits++;
  } catch (e) {
    errors++;
    console.error(`better-sqlite3: ${e.message}`);
  }
}
db.close();
console.log(commits, errors);
process.exitCode = errors ? 1 : 0;
