#!/bin/sh
# reformail-compat.sh — record Courier's real reformail (Debian package
# "maildrop") into mailbox/reformail/testdata/compat, so that the corpus
# says what Courier does, not what Postern does. Not run in CI.
#
#   apt-get install -y maildrop
#   tools/reformail-compat.sh [CASE...]
#
# Each case directory holds "args" (one argument per line) and "input" (the
# message on standard input), and optionally "files/" (copied into the
# scratch directory the command runs in, e.g. a -D cache file). The script
# writes "expected-stdout" and "expected-exit". Parts that depend on the
# clock or the host are masked the same way the Go replay masks them:
#   the date of a generated "From " line   -> "From ADDR DATE"
#   a generated Message-ID                 -> <MSGID>
# mailbox/reformail/compat_test.go replays every case through ReformailMain.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
corpus="$here/mailbox/reformail/testdata/compat"
command -v reformail >/dev/null || { echo "reformail not installed (apt-get install maildrop)" >&2; exit 1; }

mask() {
	sed -E \
		-e 's/^(>*From [^ ]+) [A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [0-9]{4}(\r?)$/\1 DATE\2/' \
		-e 's/<[0-9A-F]{16}\.[0-9A-F]{16}\.reformail@[^>]*>/<MSGID>/g'
}

cases="$*"
[ -n "$cases" ] || cases=$(ls "$corpus")
for name in $cases; do
	src="$corpus/$name"
	work=$(mktemp -d)
	if [ -d "$src/files" ]; then cp -r "$src/files/." "$work/"; fi
	set +e
	(
		cd "$work" || exit 99
		# One argument per line; "set --" keeps spaces inside an argument.
		set --
		while IFS= read -r a || [ -n "$a" ]; do set -- "$@" "$a"; done <"$src/args"
		env -i PATH=/usr/bin:/bin reformail "$@" <"$src/input" >"$work/.stdout" 2>/dev/null
	)
	rc=$?
	set -e
	mask <"$work/.stdout" >"$src/expected-stdout"
	echo "$rc" >"$src/expected-exit"
	rm -rf "$work"
	echo "$name: exit $rc"
done

# mailbot: a few cases recorded into mailbox/mailbot/testdata/compat/NAME:
# "args" (one per line, run with -n prepended, in a scratch copy of
# "files/"), "input"; the script writes "expected-headers": the reply's
# addressing fields (To, Cc, Subject, In-Reply-To, References and their
# continuation lines, Auto-Submitted, Precedence), empty when mailbot chose
# not to answer, and "expected-exit". mailbox/mailbot/compat_test.go replays
# them through Run.
mbcorpus="$here/mailbox/mailbot/testdata/compat"
if [ -z "$*" ] && [ -d "$mbcorpus" ] && command -v mailbot >/dev/null; then
	for src in "$mbcorpus"/*/; do
		src=${src%/}
		name=$(basename "$src")
		work=$(mktemp -d)
		if [ -d "$src/files" ]; then cp -r "$src/files/." "$work/"; fi
		set +e
		(
			cd "$work" || exit 99
			set --
			while IFS= read -r a || [ -n "$a" ]; do set -- "$@" "$a"; done <"$src/args"
			env -i PATH=/usr/bin:/bin mailbot -n "$@" <"$src/input" >"$work/.stdout" 2>/dev/null
		)
		rc=$?
		set -e
		sed -n '/^$/q;/^\(To\|Cc\|Subject\|In-Reply-To\|References\|Auto-Submitted\|Precedence\):\|^ /p' "$work/.stdout" >"$src/expected-headers"
		echo "$rc" >"$src/expected-exit"
		rm -rf "$work"
		echo "mailbot $name: exit $rc"
	done
fi
