#!/usr/bin/env bash
# Compare Postern's IMAP server with Dovecot on this machine, same Maildir
# content, same client (bench/imapbench), same run.
#
# Installs Dovecot from Debian (dovecot-imapd) and runs a private instance
# of it on 127.0.0.1:$DC_PORT with its own configuration under a work
# directory (passwd-file user, mail_location=maildir:...); the system's
# Dovecot service is not touched. Postern's IMAP server runs on
# 127.0.0.1:$PO_PORT through `imapbench serve`. Each size gets a fresh
# Maildir written by `imapbench fill`, copied once per server so that each
# keeps its own index and UID files. Not part of CI. Run as root:
#
#   bench/imap-compare.sh [SIZES] [IDLE] [IDLE_SIZE]
#   bench/imap-compare.sh "10000 100000" 10000 100
#
# For each size it prints both servers' figures for: LOGIN+SELECT on the
# first open (index built), cold after a restart (index on disk, process
# caches empty), warm; SELECT after one new message; UID FETCH 1:* (FLAGS);
# FETCH ENVELOPE of the last 50; UID SEARCH on a header and on body text;
# STORE on 1,000 messages. Then the memory (sum of PSS of the server's
# processes) of IDLE connections held open.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-"10000 100000"}
IDLE=${2:-10000}
IDLE_SIZE=${3:-100} # messages in the mailbox the IDLE connections select
PO_PORT=${PO_PORT:-11143}
DC_PORT=${DC_PORT:-11144}
WORK=${WORK:-$(mktemp -d /tmp/postern-imapbench.XXXXXX)}
REPEAT=${REPEAT:-5}
chmod 755 "$WORK" # Dovecot's mail processes run as vmail
echo "work directory: $WORK"

if ! command -v dovecot >/dev/null; then
	echo "installing dovecot-imapd..."
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
fi
id vmail >/dev/null 2>&1 || useradd -r -u 5000 -d /nonexistent -s /usr/sbin/nologin vmail
VUID=$(id -u vmail)
VGID=$(id -g vmail)

go build -o "$WORK/imapbench" ./bench/imapbench
IB="$WORK/imapbench"
ulimit -n 20000 2>/dev/null || true

PO_PID=
DC_PID=
cleanup() {
	[ -n "$PO_PID" ] && kill "$PO_PID" 2>/dev/null || true
	[ -n "$DC_PID" ] && kill "$DC_PID" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT

# Dovecot: a private instance, loopback only, plaintext auth (no TLS: the
# same for both servers), one passwd-file user per size.
mkdir -p "$WORK/dovecot/run" "$WORK/dovecot/state"
chown root:root "$WORK/dovecot/run"
: >"$WORK/dovecot/passwd"
cat >"$WORK/dovecot/dovecot.conf" <<EOF
base_dir = $WORK/dovecot/run
state_dir = $WORK/dovecot/state
log_path = $WORK/dovecot/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = $VUID
mail_uid = $VUID
mail_gid = $VGID
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $WORK/dovecot/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $WORK/dovecot/passwd
}
default_process_limit = 12000
default_client_limit = 25000
default_vsz_limit = 0
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DC_PORT
  }
  inet_listener imaps {
    port = 0
  }
  process_limit = 64
  client_limit = 25000
  service_count = 0
}
service imap {
  process_limit = 12000
}
service anvil {
  client_limit = 50000
}
protocol imap {
  mail_max_userip_connections = 20000
}
EOF

port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
start_dovecot() {
	dovecot -F -c "$WORK/dovecot/dovecot.conf" &
	DC_PID=$!
	for _ in $(seq 50); do
		port_open "$DC_PORT" && return
		sleep 0.1
	done
	echo "dovecot did not start; see $WORK/dovecot/dovecot.log" >&2
	exit 1
}
stop_dovecot() {
	kill "$DC_PID" 2>/dev/null || true
	wait "$DC_PID" 2>/dev/null || true
	DC_PID=
}
start_postern() {
	"$IB" serve -dir "$1" -user "$2" -pass bench -addr "127.0.0.1:$PO_PORT" 2>>"$WORK/postern.log" &
	PO_PID=$!
	for _ in $(seq 50); do
		port_open "$PO_PORT" && return
		sleep 0.1
	done
	echo "postern did not start; see $WORK/postern.log" >&2
	exit 1
}
stop_postern() {
	kill "$PO_PID" 2>/dev/null || true
	wait "$PO_PID" 2>/dev/null || true
	PO_PID=
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

# pss PID...: the proportional set size of the processes (and their
# children), in KiB; shared pages are divided among their sharers.
pss_tree() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2; pids[NR] = $1 }
		END {
			for (i in pids) {
				p = pids[i]; q = p
				for (d = 0; d < 10 && q != "" && q != 0; d++) {
					if (q == root) { print "/proc/" p "/smaps_rollup"; break }
					q = parent[q]
				}
			}
		}' | xargs -r cat 2>/dev/null | awk '/^Pss:/ { s += $2 } END { print s + 0 }'
}

for N in $SIZES; do
	U="bench$N"
	SRC="$WORK/src$N"
	echo
	echo "=== $N messages ==="
	"$IB" fill -dir "$SRC" -n "$N" >/dev/null
	rm -rf "$WORK/po$N" "$WORK/dc$N"
	cp -a "$SRC" "$WORK/po$N"
	cp -a "$SRC" "$WORK/dc$N"
	chown -R vmail: "$WORK/dc$N"
	echo "$U:{PLAIN}bench:$VUID:$VGID::$WORK/dc$N::userdb_mail=maildir:$WORK/dc$N" >>"$WORK/dovecot/passwd"
	# The copies are written back now, not during the first server's
	# runs (any fsync there would wait for them).
	sync

	echo "--- Postern: first open (builds its index) ---"
	start_postern "$WORK/po$N" "$U"
	"$IB" run -addr "127.0.0.1:$PO_PORT" -user "$U" -pass bench -repeat "$REPEAT" | tee "$WORK/po$N.first"
	stop_postern
	echo "--- Postern: after a restart, page cache dropped ---"
	drop_caches
	start_postern "$WORK/po$N" "$U"
	"$IB" run -addr "127.0.0.1:$PO_PORT" -user "$U" -pass bench -repeat "$REPEAT" | tee "$WORK/po$N.restart"
	stop_postern

	echo "--- Dovecot: first open (builds its index) ---"
	start_dovecot
	"$IB" run -addr "127.0.0.1:$DC_PORT" -user "$U" -pass bench -repeat "$REPEAT" | tee "$WORK/dc$N.first"
	stop_dovecot
	echo "--- Dovecot: after a restart, page cache dropped ---"
	drop_caches
	start_dovecot
	"$IB" run -addr "127.0.0.1:$DC_PORT" -user "$U" -pass bench -repeat "$REPEAT" | tee "$WORK/dc$N.restart"
	stop_dovecot
done

if [ "$IDLE" -gt 0 ]; then
	N=$IDLE_SIZE
	U="bench$N"
	if [ ! -d "$WORK/po$N" ]; then
		"$IB" fill -dir "$WORK/src$N" -n "$N" >/dev/null
		cp -a "$WORK/src$N" "$WORK/po$N"
		cp -a "$WORK/src$N" "$WORK/dc$N"
		chown -R vmail: "$WORK/dc$N"
		echo "$U:{PLAIN}bench:$VUID:$VGID::$WORK/dc$N::userdb_mail=maildir:$WORK/dc$N" >>"$WORK/dovecot/passwd"
	fi
	echo
	echo "=== $IDLE connections in IDLE on the $N-message INBOX ==="
	for server in postern dovecot; do
		if [ $server = postern ]; then
			start_postern "$WORK/po$N" "$U"
			PID=$PO_PID
			PORT=$PO_PORT
		else
			start_dovecot
			PID=$DC_PID
			PORT=$DC_PORT
		fi
		sleep 1
		before=$(pss_tree "$PID")
		fifo="$WORK/idle.$server"
		rm -f "$fifo"
		mkfifo "$fifo"
		"$IB" run -idle-only -idle "$IDLE" -hold 120s -addr "127.0.0.1:$PORT" -user "$U" -pass bench >"$fifo" &
		CL=$!
		ready=
		while read -r line; do
			echo "$line"
			case $line in IDLE-READY*)
				sleep 2
				after=$(pss_tree "$PID")
				echo "$server: PSS before ${before} KiB, with $IDLE idle connections ${after} KiB: $(((after - before) / IDLE)) KiB per connection, $(((after) / 1024)) MiB in total"
				ready=1
				kill "$CL" 2>/dev/null || true
				break
				;;
			esac
		done <"$fifo"
		wait "$CL" 2>/dev/null || true
		[ -n "$ready" ] || echo "$server: the idle connections did not all come up"
		if [ $server = postern ]; then stop_postern; else stop_dovecot; fi
	done
fi
echo
echo "results kept in $WORK"
