// Package sqltest gives a test this machine's PostgreSQL (127.0.0.1:5432,
// database "test", as .ci/run leaves it) with a table of the test's own.
package sqltest

import (
	"database/sql"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// Conn is the connection string of the tests' PostgreSQL.
const Conn = "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable"

// PostgresTable connects to the tests' PostgreSQL and creates a table
// named after prefix with the given column definitions, dropped when the
// test ends. It skips the test when PostgreSQL is not running, and fails
// it under CI, where .ci/run should have started it.
func PostgresTable(t testing.TB, prefix, columns string) (*sql.DB, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no PostgreSQL on 127.0.0.1:5432; .ci/run should have started it")
		}
		t.Skip("no PostgreSQL on 127.0.0.1:5432")
	}
	c.Close()
	db, err := sql.Open("pgx", Conn)
	if err != nil {
		t.Fatal(err)
	}
	table := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if _, err := db.Exec("CREATE TABLE " + table + " (" + columns + ")"); err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec("DROP TABLE " + table)
		db.Close()
	})
	return db, table
}
