#!/bin/sh
# maildrop-agent-compat.sh — run the same delivery cases through Courier's
# real maildrop (Debian package "maildrop") and through Postern's
# "postern maildrop", and show where the outcomes differ: exit code and the
# files left behind (maildir messages by folder, flags, size and SHA-256;
# mbox files with the From_ line's date masked). Not run in CI.
#
#   apt-get install -y maildrop
#   tools/maildrop-agent-compat.sh            # builds the harness, runs all cases
#   POSTERN_MAILDROP="postern maildrop" tools/maildrop-agent-compat.sh
#
# The cases use maildrop's manual mode (a filter file named on the command
# line) and option handling, which need no system accounts; delivery mode
# (-d) is covered by mailbox/deliver's Go tests. Expected differences are
# listed at the end and in docs/maildrop.md (DIFFERENCES FROM COURIER).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
command -v maildrop >/dev/null || { echo "maildrop not installed (apt-get install maildrop)" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [ -z "${POSTERN_MAILDROP:-}" ]; then
	(cd "$here" && go build -o "$scratch/pmaildrop" ./mailbox/deliver/internal/maildropcmd)
	POSTERN_MAILDROP="$scratch/pmaildrop"
fi

msg='Return-Path: <bob@example.org>
From: Bob <bob@example.org>
To: alice@example.test
Subject: hello there

Hi Alice,
From the desk of Bob.
'

render() { # $1 = dir, $2 = exit code
	echo "exit: $2"
	cd "$1"
	find . -type f ! -name filter ! -name stdout ! -name stderr ! -name maildirsize ! -name maildirfolder \
		! -name 'courierimap*' ! -path '*/tmp/*' ! -name '*.lock' | LC_ALL=C sort |
	while read -r f; do
		case "$f" in
		*/new/* | */cur/*)
			base=$(basename "$f")
			info=""
			case "$base" in *:2,*) info=":2,${base##*:2,}" ;; esac
			echo "$(dirname "$f")/MSG$info $(wc -c <"$f" | tr -d ' ') $(sha256sum "$f" | cut -c1-16)"
			;;
		*)
			masked=$(sed 's/^\(From [^ ]*\) .*/\1 DATE/' "$f" | sha256sum | cut -c1-16)
			echo "$f $(wc -c <"$f" | tr -d ' ') $masked"
			;;
		esac
	done
	echo "stdout: $(cat stdout)"
}

run_case() { # name, filter text, extra maildrop options...
	name=$1
	filter=$2
	shift 2
	for impl in courier postern; do
		d="$scratch/$name.$impl"
		mkdir -p "$d"
		(cd "$d" && maildirmake Maildir </dev/null && maildirmake -f Spam Maildir </dev/null && maildirmake -f Lists Maildir </dev/null)
		printf '%s\n' "$filter" >"$d/filter"
		chmod 600 "$d/filter"
		if [ "$name" = over-quota ]; then printf '10S\n' >"$d/Maildir/maildirsize"; fi
		set +e
		if [ $impl = courier ]; then
			(cd "$d" && printf '%s' "$msg" | env -i PATH=/usr/bin:/bin HOME="$d" maildrop "$@" >stdout 2>stderr)
		else
			(cd "$d" && printf '%s' "$msg" | env -i PATH=/usr/bin:/bin HOME="$d" $POSTERN_MAILDROP "$@" >stdout 2>stderr)
		fi
		code=$?
		set -e
		render "$d" $code >"$scratch/$name.$impl.txt"
	done
	if cmp -s "$scratch/$name.courier.txt" "$scratch/$name.postern.txt"; then
		echo "same    $name"
	else
		echo "DIFFERS $name"
		diff -u "$scratch/$name.courier.txt" "$scratch/$name.postern.txt" | sed 's/^/        /' | tail -n +3
	fi
}

run_case to-inbox 'to "./Maildir/"' ./filter
run_case to-folder 'to "./Maildir/.Spam/"' ./filter
run_case to-folder-noslash 'to Maildir/.Lists' ./filter
run_case to-mbox 'to "./mbox"' ./filter
run_case cc-and-default 'DEFAULT="./Maildir/"
cc "./mbox"' ./filter
run_case flags 'FLAGS=S
to "./Maildir/.Lists/"' ./filter
run_case program-exit-3 'to "|exit 3"' ./filter
run_case program-exit-100 'to "|cat > piped.out; exit 100"' ./filter
run_case exitcode-77 'EXITCODE=77
exit' ./filter
run_case cc-failure-goes-on 'cc "|exit 3"
EXITCODE=5
exit' ./filter
run_case missing-folder 'to "./Maildir/.Nope/"' ./filter
run_case syntax-error 'if (' ./filter
run_case args 'to "./Maildir/.$1/"' ./filter Lists
run_case header-A 'to "./Maildir/"' -A "X-Added: yes" ./filter
run_case from-f 'to "./$FROM"' -f sender.mbox ./filter
run_case embedded-echo 'if (/^Subject: hello/)
{
  echo "matched"
  EXITCODE=3
}' -m ./filter
run_case embedded-refuses-to 'to "./Maildir/"' -m ./filter
run_case bad-option 'to "./Maildir/"' -x ./filter
run_case over-quota 'to "./Maildir/"' ./filter
echo
echo "expected differences: over-quota (maildrop 2.9.3 exits 75, Postern 77 as deliverquota does)"
