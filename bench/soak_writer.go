// The soak's Go writer: stock mattn/go-sqlite3, busy timeout 0, read-then-write transfers forever.
// Each transaction reads the source balance, moves up to 50 of it to another account, records the
// transfer in the ledger under a unique id and bumps the counter. Only after COMMIT returned
// success is "ack ID" appended to the log; a failure appends "err UNIXTIME OPENEDAT MESSAGE" and
// the connection is reopened. Usage: soak_writer DB LOG PREFIX ACCOUNTS.
package main

import (
	"database/sql"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func transfer(db *sql.DB, id string, src, dst int) error {
	tx, err := db.Begin() // deferred: a read lock first, the write lock at the first UPDATE
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after a successful Commit
	var balance int
	if err := tx.QueryRow("SELECT balance FROM accounts WHERE id = ?", src).Scan(&balance); err != nil {
		return err
	}
	most := balance
	if most > 50 {
		most = 50
	}
	amount := rand.Intn(most + 1)
	for _, s := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO ledger(id, src, dst, amount) VALUES (?, ?, ?, ?)", []any{id, src, dst, amount}},
		{"UPDATE accounts SET balance = balance - ? WHERE id = ?", []any{amount, src}},
		{"UPDATE accounts SET balance = balance + ? WHERE id = ?", []any{amount, dst}},
		{"UPDATE counter SET n = n + 1", nil},
	} {
		if _, err := tx.Exec(s.sql, s.args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func main() {
	path, logPath, prefix := os.Args[1], os.Args[2], os.Args[3]
	accounts, _ := strconv.Atoi(os.Args[4])
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		panic(err)
	}
	var db *sql.DB
	var opened float64
	for seq := 0; ; seq++ {
		if db == nil {
			// mode=rw: never create a database (the bare mountpoint while the mount is down).
			db, _ = sql.Open("sqlite3", "file:"+path+"?mode=rw&_busy_timeout=0")
			db.SetMaxOpenConns(1) // one connection: SQLite's locks, not the pool, are under test
			opened = now()
		}
		src := rand.Intn(accounts)
		dst := (src + 1 + rand.Intn(accounts-1)) % accounts
		id := fmt.Sprintf("%s.%d", prefix, seq)
		if err := transfer(db, id, src, dst); err != nil {
			msg := strings.ReplaceAll(err.Error(), "\n", " ")
			fmt.Fprintf(log, "err %.3f %.3f %s\n", now(), opened, msg)
			db.Close()
			db = nil
			time.Sleep(100 * time.Millisecond)
			continue
		}
		fmt.Fprintf(log, "ack %s\n", id) // one write(2): survives the SIGKILL that may follow
	}
}
