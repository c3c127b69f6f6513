<?php
// Stock php-sqlite3 writer: N read-then-write transactions, a fresh connection for each (like a
// web request). Busy timeout 0, SQLite's default: any "database is locked" is a failure.
// Usage: php writer.php DB W N
[$_, $path, $w, $n] = $argv;
$errors = 0;
for ($i = 0; $i < (int)$n; $i++) {
    try {
        $db = new SQLite3($path);
        $db->enableExceptions(true);
        $db->busyTimeout(0);
        $db->exec('BEGIN');
        $v = $db->querySingle('SELECT COALESCE(MAX(v), 0) FROM t');
        $st = $db->prepare('INSERT INTO t(w, v) VALUES (:w, :v)');
        $st->bindValue(':w', (int)$w, SQLITE3_INTEGER);
        $st->bindValue(':v', $v + 1, SQLITE3_INTEGER);
        $st->execute();
        $db->exec('COMMIT');
        $db->close();
    } catch (Exception $e) {
        $errors++;
        fwrite(STDERR, "php: " . $e->getMessage() . "\n");
    }
}
exit($errors ? 1 : 0);
