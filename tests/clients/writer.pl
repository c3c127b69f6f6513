#!/usr/bin/perl
# Stock DBD::SQLite writer: N read-then-write transactions on one connection. DBD::SQLite's own
# default busy timeout is 30 s; we set 0 (SQLite's default) so any lock conflict would be a failure.
# Usage: perl writer.pl DB W N
use strict;
use warnings;
use DBI;

my ($path, $w, $n) = @ARGV;
my $dbh = DBI->connect("dbi:SQLite:dbname=$path", "", "", { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
$dbh->sqlite_busy_timeout(0);
my $errors = 0;
for my $i (1 .. $n) {
    eval {
        $dbh->begin_work;
        my ($v) = $dbh->selectrow_array('SELECT COALESCE(MAX(v), 0) FROM t');
        $dbh->do('INSERT INTO t(w, v) VALUES (?, ?)', undef, $w, $v + 1);
        $dbh->commit;
        1;
    } or do {
        $errors++;
        print STDERR "perl: $@";
        eval { $dbh->rollback };
    };
}
$dbh->disconnect;
exit($errors ? 1 : 0);
