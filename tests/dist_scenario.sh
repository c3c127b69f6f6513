#!/usr/bin/env bash
# The README's walk-through, done by one artifact (dist/hoodydb.pyz or dist/hoodydb) that has been
# copied into an empty directory. tests/test_dist.py runs it from there under
# `env -i PATH=/usr/bin:/bin`:   bash dist_scenario.sh ./ARTIFACT PORT
# It stops at the first thing that is not as the README says, and prints "scenario ok" at the end.
set -euo pipefail
hoodydb="$(realpath "$1")"
port="$2"
fail() { echo "FAIL: $*" >&2; exit 1; }
mounted() {  # is hoodydb's FUSE filesystem on top at $1?
  awk -v p="$(realpath "$1")" '$5 == p { t = $0 } END { exit !(t ~ / - fuse\.hoodydb /) }' /proc/self/mountinfo
}
ours_running() { pgrep -f "$hoodydb" > /dev/null; }  # every process of ours names the artifact
leave_nothing() {  # on any exit, pass or fail: no process of ours and no mount left behind
  pgrep -f "$hoodydb" | grep -vx "$$" | xargs -r kill -KILL 2> /dev/null || true
  for m in mnt db; do if [ -d "$m" ] && mounted "$m"; then fusermount3 -u -z "$m" || true; fi; done
}
trap leave_nothing EXIT

# --- hoodydb serve: the mount and the API together --------------------------------------------
TOKEN="tok-$RANDOM$RANDOM"
"$hoodydb" serve --data data --mount mnt --port "$port" --token "$TOKEN" > serve.out 2> serve.err &
serve_pid=$!
URL="http://127.0.0.1:$port"; AUTH="Authorization: Bearer $TOKEN"
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] && break
  kill -0 "$serve_pid" 2> /dev/null || fail "serve exited: $(cat serve.err)"
  sleep 0.1
done
grep -q "hoodydb API on $URL" serve.out || fail "serve did not come up: $(cat serve.out serve.err)"
mounted mnt || fail "serve did not mount mnt"

# The README's curl examples, with the answers it shows.
out=$(curl -s -X POST "$URL/api/v1/sqlite/databases" -H "$AUTH" -d '{"path": "app.db"}')
[ "$out" = '{"path":"app.db","created":true}' ] || fail "create: $out"
out=$(curl -s -X POST "$URL/api/v1/sqlite/db?db=app.db" -H "$AUTH" -d '{"transaction": [
    {"statement": "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)"},
    {"statement": "INSERT INTO people (name) VALUES (:name)", "values": {"name": "Ada"}},
    {"query": "SELECT * FROM people"}]}')
expected='{"results":[{"success":true,"rowsUpdated":0},{"success":true,"rowsUpdated":1},{"success":true,"resultSet":[{"id":1,"name":"Ada"}]}]}'
[ "$out" = "$expected" ] || fail "transaction: $out"
curl -sf -X PUT "$URL/api/v1/sqlite/kv/settings?db=app.db" -H "$AUTH" -d '{"theme": "dark"}' > /dev/null
out=$(curl -s "$URL/api/v1/sqlite/kv/settings?db=app.db" -H "$AUTH")
[ "$out" = '{"theme":"dark"}' ] || fail "kv get: $out"

# The web console and its client ship inside the artifact.
# (Read whole before grep: with pipefail, grep -q quitting early fails curl with a broken pipe.)
page=$(curl -sf "$URL/") || fail "the console's page is not served"
grep -q '<title>' <<<"$page" || fail "the console's page is not served"
client=$(curl -sf "$URL/hoodydb.js") || fail "the console's client is not served"
grep -q 'export function createClient' <<<"$client" || fail "the console's client is not served"

# The README's CLI examples.
export HOODYDB_TOKEN="$TOKEN" HOODYDB_URL="$URL"
"$hoodydb" db create --path app2.db > /dev/null
"$hoodydb" db exec-transaction --db app2.db --transaction '[{"statement": "CREATE TABLE t(x)"}]' > /dev/null
"$hoodydb" kv set settings --db app.db --body '{"theme": "light"}' > /dev/null
out=$("$hoodydb" kv get settings --db app.db)
[[ "$out" == *'"theme": "light"'* || "$out" == *'"theme":"light"'* ]] || fail "hoodydb kv get: $out"
[ -f data/app2.db ] || fail "app2.db is not in the backing directory"

# 20 HTTP writers and 20 native sqlite3 writers on one database, all at once.
curl -sf -X POST "$URL/api/v1/sqlite/db?db=app.db" -H "$AUTH" \
  -d '{"transaction": [{"statement": "CREATE TABLE w (src TEXT, i INTEGER)"}]}' > /dev/null
pids=()
for i in $(seq 20); do
  curl -s -o "http.$i" -w '%{http_code}' -X POST "$URL/api/v1/sqlite/db?db=app.db" -H "$AUTH" \
    -d "{\"transaction\": [{\"statement\": \"INSERT INTO w VALUES ('http', $i)\"}]}" > "code.$i" &
  pids+=($!)
  sqlite3 mnt/app.db "INSERT INTO w VALUES ('native', $i)" 2> "sqlite.$i" &
  pids+=($!)
done
errors=0
for pid in "${pids[@]}"; do wait "$pid" || errors=$((errors + 1)); done
for i in $(seq 20); do
  if [ "$(cat "code.$i")" != 200 ] || ! grep -q '"success":true' "http.$i"; then
    errors=$((errors + 1)); cat "http.$i" >&2
  fi
  if [ -s "sqlite.$i" ]; then errors=$((errors + 1)); cat "sqlite.$i" >&2; fi
done
echo "writer errors: $errors"
echo "rows: $(sqlite3 mnt/app.db 'SELECT count(*) FROM w')"
echo "integrity: $(sqlite3 mnt/app.db 'PRAGMA integrity_check')"

out=$("$hoodydb" locks mnt)
[[ "$out" == *"/app.db"* && "$out" == *"transactions="* ]] || fail "hoodydb locks mnt: $out"

kill -TERM "$serve_pid"
wait "$serve_pid" || fail "serve exited with status $? on SIGTERM: $(cat serve.err)"
! mounted mnt || fail "mnt is still mounted after serve stopped"
! ours_running || fail "left running after serve stopped: $(pgrep -af "$hoodydb")"

# --- hoodydb mount: detaches once mounted; backs up with the Litestream inside the artifact -------
mkdir backing
replica="file://$(pwd)/replica"
out=$("$hoodydb" mount backing db --replica "$replica")
mounted db || fail "hoodydb mount returned but db is not mounted: $out"
daemon=$(sed -n 's/.*(pid \([0-9]*\),.*/\1/p' <<< "$out")
[ -n "$daemon" ] || fail "no daemon pid in: $out"
sqlite3 db/app.db "PRAGMA journal_mode=WAL; CREATE TABLE t(x)" > /dev/null
pids=()
for i in $(seq 40); do sqlite3 db/app.db "INSERT INTO t VALUES ($i)" 2> "mount-sqlite.$i" & pids+=($!); done
errors=0
for pid in "${pids[@]}"; do wait "$pid" || errors=$((errors + 1)); done
for i in $(seq 40); do
  if [ -s "mount-sqlite.$i" ]; then errors=$((errors + 1)); cat "mount-sqlite.$i" >&2; fi
done
echo "mount writer errors: $errors"
echo "mount rows: $(sqlite3 db/app.db 'SELECT count(*) FROM t')"
out=$("$hoodydb" locks db)
[[ "$out" == *"$(realpath db)"*"/app.db"* ]] || fail "hoodydb locks db: $out"
for _ in $(seq 300); do
  rm -f restored.db
  "$hoodydb" restore --replica "$replica" --db app.db restored.db > /dev/null 2>&1 \
    && [ "$(sqlite3 restored.db 'SELECT count(*) FROM t')" = 40 ] && break
  sleep 0.2
done
echo "restored rows: $(sqlite3 restored.db 'SELECT count(*) FROM t' 2> /dev/null)"
out=$("$hoodydb" backup status db)
[[ "$out" == *"app.db  txid"* ]] || fail "hoodydb backup status db: $out"
litestream=$("$hoodydb" backup status db --json | sed -n 's/.*"pid": \([0-9]*\).*/\1/p' | head -1)
[ -n "$litestream" ] || fail "no Litestream pid in the status"
kill -TERM "$daemon"
for _ in $(seq 200); do mounted db || ours_running || break; sleep 0.05; done
! mounted db || fail "db is still mounted after SIGTERM to the daemon"
! ours_running || fail "left running after SIGTERM: $(pgrep -af "$hoodydb")"
! kill -0 "$litestream" 2> /dev/null || fail "Litestream (pid $litestream) left running after the daemon"
echo "scenario ok"
