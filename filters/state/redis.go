package state

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of the Redis store. The timeouts are short on purpose: every call
// happens inside an SMTP session, and a Redis that does not answer within
// half a second is, for the filters, a Redis that is down.
const (
	DefaultRedisAddr         = "127.0.0.1:6379"
	DefaultRedisPrefix       = "postern:"
	DefaultRedisDialTimeout  = time.Second
	DefaultRedisReadTimeout  = 500 * time.Millisecond
	DefaultRedisWriteTimeout = 500 * time.Millisecond
	// DefaultRedisRetryAfter is how long the store answers ErrUnavailable
	// at once, without touching the network, after a connection failure:
	// with Redis down, SMTP sessions should not each wait a dial timeout.
	DefaultRedisRetryAfter = time.Second
)

// RedisOptions configure OpenRedis. Zero values take the defaults above.
type RedisOptions struct {
	Addr     string // host:port
	Username string // Redis 6 ACL user; "" for the default user
	Password string
	DB       int
	// Prefix is put before every key, so several installations (or test
	// runs) can share one Redis without seeing each other's keys.
	Prefix string
	TLS    *tls.Config // non-nil: connect with TLS

	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	PoolSize     int           // connections; 0 = go-redis default (10 per CPU)
	RetryAfter   time.Duration // see DefaultRedisRetryAfter; negative disables
	ReportEvery  time.Duration // how often an outage is logged; see DefaultReportEvery
	Logger       *slog.Logger
}

// Redis is the shared Store: several gateways pointed at one Redis see the
// same greylist and the same counters. Every failure to talk to Redis wraps
// ErrUnavailable.
type Redis struct {
	client     *redis.Client
	prefix     string
	addr       string
	retryAfter time.Duration
	rep        *unavailableReporter
	downUntil  atomic.Int64 // UnixNano; fail fast until then
	lastErr    atomic.Pointer[string]
}

var _ Store = (*Redis)(nil)

// incrScript adds to a counter and, only when this call created it, sets
// its expiry: the fixed window of Store.Incr. A Lua script runs atomically in
// Redis, so no other client sees a new counter without its expiry (a crash
// between a plain INCRBY and EXPIRE would leave a counter that never
// expires).
var incrScript = redis.NewScript(`
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
`)

// OpenRedis returns a Store on the Redis at opt.Addr. It does not connect
// yet: a gateway must start (and degrade) even when Redis is down; call Ping
// to check the connection.
func OpenRedis(opt RedisOptions) (*Redis, error) {
	if opt.Addr == "" {
		opt.Addr = DefaultRedisAddr
	}
	if opt.Prefix == "" {
		opt.Prefix = DefaultRedisPrefix
	}
	if len(opt.Prefix) > 128 || strings.ContainsAny(opt.Prefix, " \t\r\n\x00") {
		return nil, fmt.Errorf("state: redis key prefix %q: want up to 128 printable characters without spaces: %w", opt.Prefix, ErrInvalid)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	orDur := func(v, def time.Duration) time.Duration {
		if v <= 0 {
			return def
		}
		return v
	}
	retryAfter := opt.RetryAfter
	if retryAfter == 0 {
		retryAfter = DefaultRedisRetryAfter
	}
	client := redis.NewClient(&redis.Options{
		Addr:                  opt.Addr,
		Username:              opt.Username,
		Password:              opt.Password,
		DB:                    opt.DB,
		TLSConfig:             opt.TLS,
		Protocol:              2, // RESP2: works with every Redis (and Valkey, KeyDB)
		DisableIdentity:       true,
		DialTimeout:           orDur(opt.DialTimeout, DefaultRedisDialTimeout),
		DialerRetries:         1,
		ReadTimeout:           orDur(opt.ReadTimeout, DefaultRedisReadTimeout),
		WriteTimeout:          orDur(opt.WriteTimeout, DefaultRedisWriteTimeout),
		ContextTimeoutEnabled: true, // the SMTP stage's deadline bounds every call
		MaxRetries:            1,
		PoolSize:              opt.PoolSize,
		PoolTimeout:           orDur(opt.ReadTimeout, DefaultRedisReadTimeout) * 2,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	return &Redis{
		client:     client,
		prefix:     opt.Prefix,
		addr:       opt.Addr,
		retryAfter: retryAfter,
		rep:        newUnavailableReporter(opt.Logger, "redis "+opt.Addr, opt.ReportEvery, time.Now),
	}, nil
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.fail("ping", "", err)
	}
	r.rep.ok()
	return nil
}

func (r *Redis) key(k string) string { return r.prefix + k }

// begin refuses bad input and, while Redis is marked down, answers at once.
func (r *Redis) begin(op, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("state redis %s: %s %q: %w", r.addr, op, key, err)
	}
	if until := r.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		last := ""
		if p := r.lastErr.Load(); p != nil {
			last = *p
		}
		return fmt.Errorf("state redis %s: %s %q: %w (marked down after: %s)", r.addr, op, key, ErrUnavailable, last)
	}
	return nil
}

// fail classifies a go-redis error. An error reply from Redis about a
// counter is ErrNotCounter; anything else (network, timeout, LOADING,
// READONLY, auth) means Redis cannot answer: ErrUnavailable.
func (r *Redis) fail(op, key string, err error) error {
	var reply redis.Error
	if errors.As(err, &reply) {
		msg := reply.Error()
		if strings.Contains(msg, "not an integer") || strings.Contains(msg, "overflow") {
			return fmt.Errorf("state redis %s: %s %q: %w: %w", r.addr, op, key, ErrNotCounter, err)
		}
	}
	wrapped := fmt.Errorf("state redis %s: %s %q: %w: %w", r.addr, op, key, ErrUnavailable, err)
	// A context that ended is the caller's deadline, not evidence that
	// Redis is down for everyone; do not trip the fail-fast window for it.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return wrapped
	}
	if r.retryAfter > 0 {
		msg := err.Error()
		r.lastErr.Store(&msg)
		r.downUntil.Store(time.Now().Add(r.retryAfter).UnixNano())
	}
	r.rep.report(wrapped)
	return wrapped
}

func (r *Redis) succeeded() {
	if r.downUntil.Load() != 0 {
		r.downUntil.Store(0)
	}
	r.rep.ok()
}

// Get reads key.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := r.begin("get", key); err != nil {
		return nil, false, err
	}
	v, err := r.client.Get(ctx, r.key(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		r.succeeded()
		return nil, false, nil
	}
	if err != nil {
		return nil, false, r.fail("get", key, err)
	}
	r.succeeded()
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// Set stores value under key with SET ... PX.
func (r *Redis) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := errors.Join(checkValue(value), checkTTL(ttl)); err != nil {
		return fmt.Errorf("state redis %s: set %q: %w", r.addr, key, err)
	}
	if err := r.begin("set", key); err != nil {
		return err
	}
	if err := r.client.Set(ctx, r.key(key), value, roundTTL(ttl)).Err(); err != nil {
		return r.fail("set", key, err)
	}
	r.succeeded()
	return nil
}

// SetNX stores value only if key is absent, with SET ... NX PX: one command,
// atomic in Redis.
func (r *Redis) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := errors.Join(checkValue(value), checkTTL(ttl)); err != nil {
		return false, fmt.Errorf("state redis %s: setnx %q: %w", r.addr, key, err)
	}
	if err := r.begin("setnx", key); err != nil {
		return false, err
	}
	ok, err := r.client.SetNX(ctx, r.key(key), value, roundTTL(ttl)).Result()
	if err != nil {
		return false, r.fail("setnx", key, err)
	}
	r.succeeded()
	return ok, nil
}

// Incr adds delta to the counter under key (INCRBY, with the window's
// expiry set atomically when the counter is created).
func (r *Redis) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := checkTTL(ttl); err != nil {
		return 0, fmt.Errorf("state redis %s: incr %q: %w", r.addr, key, err)
	}
	if err := r.begin("incr", key); err != nil {
		return 0, err
	}
	ms := roundTTL(ttl).Milliseconds()
	n, err := incrScript.Run(ctx, r.client, []string{r.key(key)}, delta, ms).Int64()
	if err != nil {
		return 0, r.fail("incr", key, err)
	}
	r.succeeded()
	return n, nil
}

// Delete removes key.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := r.begin("delete", key); err != nil {
		return err
	}
	if err := r.client.Del(ctx, r.key(key)).Err(); err != nil {
		return r.fail("delete", key, err)
	}
	r.succeeded()
	return nil
}

// Close closes the connection pool.
func (r *Redis) Close() error {
	if err := r.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("state redis %s: close: %w", r.addr, err)
	}
	return nil
}

// roundTTL rounds a positive ttl below Redis's millisecond resolution up to
// one millisecond, so that "expire soon" never becomes "never expire".
func roundTTL(ttl time.Duration) time.Duration {
	if ttl > 0 && ttl < time.Millisecond {
		return time.Millisecond
	}
	return ttl.Round(time.Millisecond)
}
