#!/usr/bin/env bash
# Compare Postern with Postfix on this machine, same load, same durability:
# each server acknowledges a message only once it is fsync'd (Postfix: its
# queue file; Postern: its delivery journal, or the recipient's Maildir for
# big messages), and both deliver into a Maildir. Reports accepted/s (the load generator's rate) and delivered/s
# (messages in the Maildir divided by the time until the last one arrived)
# and the server's CPU time per message (user+system; for Postfix, all of
# its processes).
#
# Installs Postfix from Debian and configures it for virtual Maildir delivery
# on 127.0.0.1:2526 (loopback only). Not part of CI. Run as root:
#   bench/compare-postfix.sh [MESSAGES] [SIZE] [CONCURRENCY...]
# e.g. bench/compare-postfix.sh 5000 4k 1 10 50
# The load comes from bench/smtpload (latency percentiles), or with
# CLIENT=smtp-source from Postfix's own smtp-source (a lighter client in C:
# one connection per message, HELO, no percentiles; SIZE in bytes or k).
# FLOOR=1 adds a third server, bench/smtpfloor: answers only, one journal
# record per message, the same durability; the most a Go server can do here.
# ROUNDS=N repeats the whole series N times, the servers interleaved, and
# ends with the median rate of each server and the median of the rounds'
# ratios to Postfix (single runs on these machines vary by a third).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}
CLIENT=${CLIENT:-smtpload}
SIZE=${2:-4k}
shift 2 2>/dev/null || true
CONCS=("${@:-1 10 50}")
[ ${#CONCS[@]} -eq 1 ] && read -r -a CONCS <<<"${CONCS[0]}"
PF_PORT=2526
PF_BASE=/var/lib/postern-bench/postfix-mail
WORK=$(mktemp -d /tmp/postern-bench.XXXXXX)

need_postfix() {
	if ! command -v postfix >/dev/null; then
		echo "installing postfix..."
		export DEBIAN_FRONTEND=noninteractive
		echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
		echo "postfix postfix/mailname string bench.local" | debconf-set-selections
		apt-get install -y -qq postfix >/dev/null
	fi
	id vmail >/dev/null 2>&1 || useradd -r -u 5000 -d "$PF_BASE" -s /usr/sbin/nologin vmail || true
	mkdir -p "$PF_BASE"
	chown -R vmail: "$PF_BASE"
	postconf -e "inet_interfaces = loopback-only" "inet_protocols = ipv4" \
		"mydestination = localhost" "myhostname = postfix.bench.local" \
		"virtual_mailbox_domains = bench.test" "virtual_mailbox_base = $PF_BASE" \
		"virtual_mailbox_maps = texthash:/etc/postfix/bench-vmailbox" \
		"virtual_uid_maps = static:5000" "virtual_gid_maps = static:5000" \
		"virtual_mailbox_limit = 0" "message_size_limit = 52428800" \
		"smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination" \
		"default_process_limit = 200" "smtpd_client_connection_count_limit = 0" \
		"smtpd_client_connection_rate_limit = 0" "smtpd_client_message_rate_limit = 0" \
		"anvil_rate_time_unit = 60s" "smtp_tls_security_level = none" "smtpd_tls_security_level = none"
	echo "alice@bench.test bench.test/alice/" > /etc/postfix/bench-vmailbox
	if ! grep -q "^127.0.0.1:$PF_PORT" /etc/postfix/master.cf; then
		echo "127.0.0.1:$PF_PORT inet n - n - 200 smtpd" >> /etc/postfix/master.cf
	fi
	postfix check
	postfix status >/dev/null 2>&1 && postfix reload >/dev/null 2>&1 || postfix start >/dev/null 2>&1
	sleep 2
}

# cpu_ticks NAME: CPU time (clock ticks, user+system) the server has used so
# far. Postfix: every process of the mail system, the exited ones counted
# in their parent's (master's) children times.
cpu_ticks() {
	if [ "$1" = postfix ]; then
		local pids
		pids=$(pgrep -d, -x 'master|smtpd|cleanup|qmgr|virtual|trivial-rewrite|pickup|anvil|proxymap|tlsmgr|scache|bounce|postdrop' || true)
		[ -n "$pids" ] || { echo 0; return; }
		for pid in ${pids//,/ }; do
			awk '{print $14+$15+$16+$17}' "/proc/$pid/stat" 2>/dev/null || echo 0
		done | awk '{s+=$1} END{print s+0}'
	elif [ "$1" = floor ]; then
		awk '{print $14+$15}' "/proc/$FLOOR_PID/stat"
	else
		awk '{print $14+$15}' "/proc/$PID/stat"
	fi
}

bytes() { # 4k -> 4096
	case "$1" in
	*k) echo $(( ${1%k} * 1024 )) ;;
	*m) echo $(( ${1%m} * 1048576 )) ;;
	*) echo "$1" ;;
	esac
}

count_maildir() { # DIR
	local n=0
	for d in "$1/new" "$1/cur"; do
		[ -d "$d" ] && n=$((n + $(find "$d" -type f | wc -l)))
	done
	echo "$n"
}

run_one() { # NAME ADDR RCPT MAILDIR CONC
	local name=$1 addr=$2 rcpt=$3 md=$4 c=$5
	# The previous run's messages are moved aside, not deleted: on ext4
	# without a journal (these machines' root file system) every inode
	# freed in the last minute is skipped, one by one, by each new file's
	# inode allocation (recently_deleted() in fs/ext4/ialloc.c), so
	# deleting thousands of files right before a run slows both servers'
	# file creation several-fold. They go when the script ends.
	mkdir -p "$WORK/trash"
	for d in new cur; do
		[ -d "$md/$d" ] && mv "$md/$d" "$(mktemp -u "$WORK/trash/$name.XXXXXX")"
	done
	mkdir -p "$md/new" "$md/cur" "$md/tmp"
	[ "$name" = postfix ] && chown -R vmail: "$md"
	# Start from a clean disk: the previous run's files (the other server's
	# Maildir, the removal above) are written back first, not during this
	# run.
	sync
	sleep 1
	local start end json accepted delivered last cpu0 cpu1
	cpu0=$(cpu_ticks "$name")
	start=$(date +%s.%N)
	if [ "$CLIENT" = smtp-source ]; then
		local t0 t1
		t0=$(date +%s.%N)
		smtp-source -s "$c" -m "$N" -l "$(bytes "$SIZE")" -f smtpload@localhost -t "$rcpt" "$addr" 2>/dev/null || true
		t1=$(date +%s.%N)
		json=$(printf '{"messages_per_s": %s, "failed": 0, "transaction_latency": {"p50_ms": -1, "p99_ms": -1}}' "$(echo "$N / ($t1 - $t0)" | bc -l)")
	else
		json=$(bin/smtpload -addr "$addr" -to "$rcpt" -n "$N" -c "$c" -size "$SIZE" -json 2>/dev/null) || true
	fi
	if [ "$name" = floor ]; then
		end=$(date +%s.%N)
		cpu1=$(cpu_ticks "$name")
		delivered=$N # nothing to count: it keeps no messages
	else
		# Wait for delivery to finish (Postfix delivers after the 250).
		local deadline=$(( $(date +%s) + 300 ))
		while [ "$(count_maildir "$md")" -lt "$N" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.05; done
		end=$(date +%s.%N)
		sleep 0.2 # the last delivery's process has finished its accounting
		cpu1=$(cpu_ticks "$name")
		delivered=$(count_maildir "$md")
	fi
	accepted=$(echo "$json" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f %d %.2f %.2f" % (r["messages_per_s"], r["failed"], r["transaction_latency"]["p50_ms"], r["transaction_latency"]["p99_ms"]))' 2>/dev/null || echo "? ? ? ?")
	printf "%-8s c=%-3s accepted/s=%-6s failed=%-4s p50=%-7sms p99=%-7sms delivered=%-6s delivered/s=%-5.0f cpu/msg=%.2fms\n" \
		"$name" "$c" $accepted "$delivered" "$(echo "$delivered / ($end - $start)" | bc -l)" \
		"$(echo "($cpu1 - $cpu0) * 1000 / $(getconf CLK_TCK) / $N" | bc -l)"
	echo "$ROUND $name $c ${accepted%% *}" >>"$WORK/results"
}

# summary: per concurrency, each server's median accepted/s over the rounds
# and the median of its per-round ratio to Postfix.
summary() {
	python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rate = {}
for rnd, name, c, acc in rows:
    if acc.replace('.', '', 1).isdigit():
        rate[(rnd, name, int(c))] = float(acc)
concs = sorted({k[2] for k in rate})
names = [n for n in ("postfix", "postern", "floor") if any(k[1] == n for k in rate)]
rounds = sorted({k[0] for k in rate}, key=int)
print("summary over %d rounds: median accepted/s (min-max), median ratio to Postfix (min-max)" % len(rounds))
for c in concs:
    for n in names:
        v = [rate[(r, n, c)] for r in rounds if (r, n, c) in rate]
        if not v:
            continue
        line = "%-8s c=%-3d %6.0f (%.0f-%.0f)" % (n, c, statistics.median(v), min(v), max(v))
        if n != "postfix":
            q = [rate[(r, n, c)] / rate[(r, "postfix", c)] for r in rounds if (r, n, c) in rate and rate.get((r, "postfix", c))]
            if q:
                line += "  x%.2f (%.2f-%.2f)" % (statistics.median(q), min(q), max(q))
        print(line)
PY
}

make build >/dev/null
need_postfix

# The previous run deleted its messages at exit; inodes freed less than a
# minute ago, or six while their inode table block is dirty (and new files
# dirty it again), would slow this run's file creation (see run_one).
STAMP=/var/lib/postern-bench/last-cleanup
if [ -f "$STAMP" ]; then
	wait_s=$(( $(stat -c %Y "$STAMP") + 365 - $(date +%s) ))
	if [ "$wait_s" -gt 0 ]; then
		echo "waiting ${wait_s}s: the last run's deleted files are still 'recently deleted' to ext4"
		sleep "$wait_s"
	fi
fi

# Postern on its own data directory, MX listener only.
bin/postern init "$WORK/postern" --domain bench.test >/dev/null
echo "smtp 127.0.0.1:2527" > "$WORK/postern/etc/listen"
echo bench | bin/postern --config "$WORK/postern/etc" user add alice@bench.test >/dev/null
bin/postern serve --config "$WORK/postern/etc" 2>"$WORK/postern.log" &
PID=$!
FLOOR_PID=
if [ -n "${FLOOR:-}" ]; then
	bin/smtpfloor -addr 127.0.0.1:2528 -dir "$WORK/floor" 2>"$WORK/floor.log" &
	FLOOR_PID=$!
fi
trap 'kill $PID $FLOOR_PID 2>/dev/null; wait $PID $FLOOR_PID 2>/dev/null; rm -rf "$WORK"; sync; touch "$STAMP"' EXIT
sleep 1
if ! kill -0 "$PID" 2>/dev/null; then
	# Another server on the port would take the load and skew every figure.
	echo "postern did not start:" >&2
	cat "$WORK/postern.log" >&2
	exit 1
fi

ROUNDS=${ROUNDS:-1}
echo "load: $N messages of $SIZE per run from $CLIENT; $(nproc) cores; $ROUNDS round(s); $(date -u)"
for ROUND in $(seq 1 "$ROUNDS"); do
	if [ "$ROUNDS" -gt 1 ]; then echo "round $ROUND"; fi
	for c in "${CONCS[@]}"; do
		run_one postfix "127.0.0.1:$PF_PORT" alice@bench.test "$PF_BASE/bench.test/alice" "$c"
		run_one postern "127.0.0.1:2527" alice@bench.test "$WORK/postern/data/mail/bench.test/alice/Maildir" "$c"
		if [ -n "$FLOOR_PID" ]; then
			run_one floor "127.0.0.1:2528" alice@bench.test "$WORK/floor-unused" "$c"
		fi
	done
done
if [ "$ROUNDS" -gt 1 ]; then summary; fi
