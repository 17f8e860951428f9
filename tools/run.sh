#!/bin/sh
# make run: first use creates ./var (configuration, certificate, data, one
# user), then every run starts the server in the foreground.
set -eu
VAR=${POSTERN_VAR:-./var}
BIN=./bin/postern
DOMAIN=${POSTERN_DOMAIN:-example.test}
USER=alice@$DOMAIN
if [ ! -f "$VAR/etc/me" ]; then
	"$BIN" init "$VAR" --domain "$DOMAIN" --postmaster "$USER" >/dev/null
	PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n' | cut -c1-16)
	printf '%s\n' "$PASS" | "$BIN" --config "$VAR/etc" user add "$USER" >/dev/null
	umask 077
	# The user's line first (docs/bench.md reads it); init wrote the web
	# admin's line.
	{ printf '%s %s\n' "$USER" "$PASS"; cat "$VAR/credentials" 2>/dev/null || true; } > "$VAR/credentials.new"
	mv "$VAR/credentials.new" "$VAR/credentials"
	echo "Created $VAR: domain $DOMAIN, user $USER (password in $VAR/credentials)."
fi
read -r USER PASS < "$VAR/credentials"
ADMIN=$(awk '$1 == "webadmin" { print "login " $2 ", password " $3 " (in '"$VAR"'/credentials)"; exit }' "$VAR/credentials")
[ -n "$ADMIN" ] || ADMIN="not enabled: $BIN --config $VAR/etc webadmin passwd admin"
cat <<INFO

Postern is starting; configuration in $VAR/etc, mail in $VAR/data/mail.
  user      $USER
  password  $PASS

  SMTP (MX)        127.0.0.1:2525   swaks --server 127.0.0.1:2525 --to $USER
  Submission       127.0.0.1:2587 (STARTTLS), 127.0.0.1:2465 (TLS), AUTH as the user above
  IMAP             127.0.0.1:2143 (STARTTLS), 127.0.0.1:2993 (TLS)
                   mutt -f 'imap://$(echo "$USER" | sed 's/@/%40/')@127.0.0.1:2143/INBOX'
  POP3             127.0.0.1:2110 (STLS), 127.0.0.1:2995 (TLS)
                   fetchmail -p POP3 -P 2110 -u $USER --sslproto '' -k 127.0.0.1
  SMAP             127.0.0.1:2144 (Courier's protocol; STARTTLS), docs/smap.md
  ManageSieve      127.0.0.1:14190 (STARTTLS; Sieve scripts), docs/managesieve.md
                   sieve-connect -s 127.0.0.1 -p 14190 -u $USER --list
  Webmail          http://127.0.0.1:8080/mail/   (log in as the user above)
                   https://127.0.0.1:8443/mail/  (the same over TLS, self-signed certificate)
  Metrics          http://127.0.0.1:8080/metrics
  Web admin        http://127.0.0.1:8080/admin/  $ADMIN

  Users:  $BIN --config $VAR/etc user list      Reload: $BIN --config $VAR/etc reload
  Ctrl-C stops the server cleanly.

INFO
exec "$BIN" serve --config "$VAR/etc"
