# Stock ruby-sqlite3 writer: N read-then-write transactions on one connection, busy timeout 0
# (the gem's default): any "database is locked" is a failure.
# Usage: ruby writer.rb DB W N
require 'sqlite3'

path, w, n = ARGV[0], ARGV[1].to_i, ARGV[2].to_i
db = SQLite3::Database.new(path)
errors = 0
n.times do
  begin
    db.transaction(:deferred) do
      v = db.get_first_value('SELECT COALESCE(MAX(v), 0) FROM t')
      db.execute('INSERT INTO t(w, v) VALUES (?, ?)', [w, v + 1])
    end
  rescue SQLite3::Exception => e
    errors += 1
    warn "ruby: #{e.message}"
  end
end
db.close
exit(errors.zero? ? 0 : 1)
