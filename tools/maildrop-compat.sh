#!/bin/sh
# maildrop-compat.sh — regenerate rules/testdata/compat/*/expected.txt with
# Courier's real maildrop (Debian package "maildrop"), so that the corpus
# records Courier's behaviour, not Postern's. Not run in CI.
#
#   apt-get install -y maildrop
#   tools/maildrop-compat.sh [CASE...]
#
# Each case directory holds "filter", "input.eml" and any extra files the
# filter reads (include files, lookup lists). The script copies them into a
# scratch directory with a Maildir (folders .Spam, .Lists, .Archive), runs
#   maildrop ./filter < input.eml
# there with POSTERN_COMPAT=imported in the environment, and writes
# expected.txt: the exit code, maildrop's standard output, the logfile
# (log.txt, with Date: lines masked) and every file left behind, maildir
# messages shown as FOLDER/{new,cur}/MSG[:2,FLAGS] with size and SHA-256.
# rules/compat_test.go renders Postern's run the same way and compares.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
corpus="$here/rules/testdata/compat"
command -v maildrop >/dev/null || { echo "maildrop not installed (apt-get install maildrop)" >&2; exit 1; }

render() { # $1 = scratch dir, $2 = exit code
	cd "$1"
	echo "exit: $2"
	echo "--- stdout"
	cat stdout
	echo "--- log"
	if [ -f log.txt ]; then sed 's/^Date: .*/Date: */' log.txt; fi
	echo "--- files"
	find . -type f ! -path './filter' ! -path './input.eml' ! -path './log.txt' \
		! -path './stdout' ! -path './stderr' ! -path '*/tmp/*' \
		! -name '*.db' ! -name maildirfolder ! -name maildirsize ! -name 'courierimap*' ! -path '*/courierimapkeywords/*' |
	while read -r f; do
		size=$(wc -c <"$f" | tr -d ' ')
		sum=$(sha256sum "$f" | cut -c1-16)
		case "$f" in
		*/new/* | */cur/*)
			dir=$(dirname "$f")
			base=$(basename "$f")
			info=""
			case "$base" in *:2,*) info=":2,${base##*:2,}" ;; esac
			f="$dir/MSG$info"
			;;
		esac
		echo "${f#./} $size $sum"
	done | LC_ALL=C sort
}

cases="$*"
[ -n "$cases" ] || cases=$(ls "$corpus")
for name in $cases; do
	src="$corpus/$name"
	work=$(mktemp -d)
	cp -r "$src"/. "$work"/
	rm -f "$work/expected.txt"
	chmod 600 "$work/filter"
	(cd "$work" && maildirmake Maildir && maildirmake -f Spam Maildir && maildirmake -f Lists Maildir && maildirmake -f Archive Maildir)
	set +e
	(cd "$work" && env -i PATH=/usr/bin:/bin POSTERN_COMPAT=imported maildrop ./filter <input.eml >stdout 2>stderr)
	rc=$?
	set -e
	(render "$work" "$rc") >"$src/expected.txt"
	rm -rf "$work"
	echo "$name: exit $rc"
done
