// Stock mattn/go-sqlite3 writer: N single-statement INSERTs on one connection, busy timeout 0
// (the driver's default is 5 s), so any lock conflict the mount failed to absorb is an error.
// Go's runtime preempts goroutines with SIGURG, which reaches the thread waiting in fcntl.
// Usage: writer DB W N; prints "commits errors" and exits 1 if any insert failed.
package main

import (
	"database/sql"
	"fmt"
	"os"
	"strconv"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	path, w := os.Args[1], os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=0")
	if err != nil {
		panic(err)
	}
	db.SetMaxOpenConns(1) // one connection: SQLite's locks, not the pool, are under test
	commits, errors := 0, 0
	for i := 0; i < n; i++ {
		if _, err := db.Exec("INSERT INTO t(w, v) VALUES (?, ?)", w, i); err != nil {
			errors++
			fmt.Fprintln(os.Stderr, "go:", err)
		} else {
			commits++
		}
	}
	db.Close()
	fmt.Println(commits, errors)
	if errors > 0 {
		os.Exit(1)
	}
}
