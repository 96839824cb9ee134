// Package testdb gives a test stores of its own: a Redis key prefix (so
// tests run in parallel on one Redis) and a MySQL database created with the
// schema and dropped after. It imports no role, so every package's tests
// may use it (testenv, which runs whole nodes, builds on it). The stores
// are the local ones deploy/services.sh starts; FLASHSALE_TEST_REDIS and
// FLASHSALE_TEST_MYSQL point elsewhere.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/migrations"
	"github.com/flashsale/flashsale/sale"
)

// RedisURL is the Redis tests use.
func RedisURL() string {
	if v := os.Getenv("FLASHSALE_TEST_REDIS"); v != "" {
		return v
	}
	return "redis://127.0.0.1:6379/0"
}

// MySQLDSN is the server tests create their databases on (no database).
func MySQLDSN() string {
	if v := os.Getenv("FLASHSALE_TEST_MYSQL"); v != "" {
		return v
	}
	return "flashsale:flashsale@tcp(127.0.0.1:3306)/?parseTime=true"
}

// RandomID is a short random hex id.
func RandomID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RedisClusterURL is the local Redis Cluster deploy/redis-cluster.sh starts
// (FLASHSALE_TEST_REDIS_CLUSTER overrides it), as --redis-url reads it with
// --redis-cluster.
func RedisClusterURL() string {
	if u := os.Getenv("FLASHSALE_TEST_REDIS_CLUSTER"); u != "" {
		return u
	}
	return "redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002"
}

// RedisCluster is Redis on the local Redis Cluster: a client and a key
// prefix of the test's own, whose keys are deleted on every master when
// the test ends.
func RedisCluster(t testing.TB) (*redis.ClusterClient, sale.Keyspace) {
	t.Helper()
	return RedisClusterOn(t, RedisClusterURL())
}

// RedisClusterOn is Redis on the cluster at url (e.g. a private one a
// fault test started).
func RedisClusterOn(t testing.TB, url string) (*redis.ClusterClient, sale.Keyspace) {
	t.Helper()
	opt, err := redis.ParseClusterURL(url)
	require.NoError(t, err)
	rdb := redis.NewClusterClient(opt)
	require.NoError(t, rdb.Ping(context.Background()).Err(),
		"the Redis Cluster must run: make test starts it with deploy/services.sh (deploy/redis-cluster.sh)")
	ks := sale.Keyspace{Prefix: "t" + RandomID()}
	t.Cleanup(func() {
		_, _ = DeletePrefix(context.Background(), rdb, ks.Prefix)
		rdb.Close()
	})
	return rdb, ks
}

// Redis returns a client and a key prefix of the test's own; the prefix's
// keys are deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, sale.Keyspace) {
	t.Helper()
	return RedisOn(t, RedisURL())
}

// RedisOn is Redis on the server at url (e.g. a private one a fault test
// started).
func RedisOn(t testing.TB, url string) (*redis.Client, sale.Keyspace) {
	t.Helper()
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	require.NoError(t, rdb.Ping(context.Background()).Err(), "Redis must run: make test starts it with deploy/services.sh")
	ks := sale.Keyspace{Prefix: "t" + RandomID()}
	t.Cleanup(func() {
		_, _ = DeletePrefix(context.Background(), rdb, ks.Prefix)
		rdb.Close()
	})
	return rdb, ks
}

// MySQL creates a database of the test's own with the schema and returns
// its DSN and a handle; the database is dropped when the test ends.
func MySQL(t testing.TB) (string, *sql.DB) {
	t.Helper()
	return MySQLOn(t, MySQLDSN())
}

// MySQLOn is MySQL on the server of serverDSN (a DSN without a database;
// e.g. a private server a fault test started).
func MySQLOn(t testing.TB, serverDSN string) (string, *sql.DB) {
	t.Helper()
	cfg, err := mysql.ParseDSN(serverDSN)
	require.NoError(t, err)
	cfg.DBName = "fs_test_" + RandomID()
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	dsn := cfg.FormatDSN()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = migrations.Apply(ctx, dsn)
	require.NoError(t, err, "MySQL must run: make test starts it with deploy/services.sh")
	db, err := sql.Open("mysql", dsn)
	require.NoError(t, err)
	db.SetMaxOpenConns(64)
	t.Cleanup(func() {
		db.Close()
		cfg2 := *cfg
		cfg2.DBName = ""
		admin, err := sql.Open("mysql", cfg2.FormatDSN())
		if err == nil {
			// Bounded: a fault test's server may be down by now.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+cfg.DBName+"`")
			cancel()
			admin.Close()
		}
	})
	return dsn, db
}
