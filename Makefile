# Postern — see README.md. Every target works on a fresh checkout.
GO      ?= go
BIN     := bin/postern
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
PKGS    := ./...
# The PAM authentication module needs libpam's headers (Debian:
# libpam0g-dev) and cgo; without them Postern is built without it.
TAGS    ?= $(shell test -e /usr/include/security/pam_appl.h && $(GO) env CGO_ENABLED | grep -q 1 && echo pam)

.PHONY: all build run test test-race vet fuzz bench clean

all: build

build:
	$(GO) build -tags "$(TAGS)" -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/postern
	$(GO) build -o bin/smtpload ./bench/smtpload
	$(GO) build -o bin/imapload ./bench/imapload
	$(GO) build -o bin/smtpfloor ./bench/smtpfloor

# Builds, creates ./var with a working setup on first use, and runs every
# service on loopback ports. Ctrl-C stops it cleanly.
run: build
	@sh tools/run.sh

# The test suite CI runs: vet, then every package's tests (real listeners on
# 127.0.0.1, real Maildirs in temporary directories), then the core packages
# again under the race detector. New bcrypt hashes in the tests take the
# lowest cost (POSTERN_BCRYPT_COST, docs/userdb.md): at the default cost
# the race detector spent most of the server package's time in blowfish.
test: export POSTERN_BCRYPT_COST = 4
test: build
	$(GO) vet -tags "$(TAGS)" $(PKGS)
	$(GO) test -tags "$(TAGS)" -count=1 -timeout 15m $(PKGS)
	$(GO) test -tags "$(TAGS)" -count=1 -race -timeout 15m ./policy/... ./mailbox/maildir/... ./gateway/... ./server/...

# A short run of every fuzz target (seeds live in each package's testdata/fuzz).
fuzz:
	@sh tools/fuzz.sh $(FUZZTIME)

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./mailbox/maildir/
	$(GO) test -run '^$$' -bench . ./auth/... ./mailbox/mime/ ./mailbox/imap/
	@echo "SMTP load: make run in one terminal, then: bin/smtpload -addr 127.0.0.1:2525 -to alice@example.test -n 2000 -c 10"

clean:
	rm -rf bin
