package server

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"postern/filters/dns/dnstest"
)

// BenchmarkSMTPChecks measures accepted messages per second through the
// whole gateway (one connection per 4 KiB message, Maildir delivery) with
// every SMTP-time check off, and on with their DNS answered by a local
// server: the cost of refusing spam during the session. "reports" is "on"
// with dmarcreports: each message also leaves its row for the DMARC
// aggregate report.
//
//	go test -run '^$' -bench SMTPChecks -benchtime 2000x ./server/
func BenchmarkSMTPChecks(b *testing.B) {
	zone := dnstest.NewZone().Add(
		`sender.test. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		`sender.test. 300 IN MX 10 mx.sender.test.`,
		`mx.sender.test. 300 IN A 127.0.0.1`,
		`_dmarc.sender.test. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@sender.test"`,
		`1.0.0.127.in-addr.arpa. 300 IN PTR client.sender.test.`,
		`client.sender.test. 300 IN A 127.0.0.1`,
	)
	for _, mode := range []string{"off", "on", "reports"} {
		b.Run(mode, func(b *testing.B) {
			dnsSrv := dnstest.Start(b, zone)
			h := &harness{t: b, dir: b.TempDir(), user: "alice@example.test", pass: "pw"}
			h.etc = filepath.Join(h.dir, "etc")
			if err := writeInit(h); err != nil {
				b.Fatal(err)
			}
			h.writeSetting("resolvers", dnsSrv.Addr+"\n")
			if mode == "reports" {
				h.writeSetting("dmarcreports", "yes\n")
			}
			if mode != "off" {
				list := "behaviour\nratelimit\ndnsbl\nbofh\ngreylist\nspf\ndkim\ndmarc\n"
				if only := os.Getenv("POSTERN_BENCH_FILTERS"); only != "" {
					list = strings.ReplaceAll(only, ",", "\n") + "\n" // measure a subset
				}
				h.writeSetting("filters", list)
				h.writeSetting("dnsbl", "bl.test\nwl.test type=allow\n")
				h.writeSetting("greylist", "whitelist 127.0.0.0/8\n")
				h.writeSetting("ratelimit", "client /24 messages 1000000/1h\n")
			}
			h.start()
			defer h.stop()
			addr := h.addr("smtp")
			msg := []byte("From: news@sender.test\r\nTo: alice@example.test\r\nSubject: bench\r\nMessage-ID: <b@sender.test>\r\n\r\n" +
				strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n", 55))
			var failed atomic.Int64
			b.SetParallelism(5) // 10 concurrent clients on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c, err := smtp.Dial(addr)
					if err == nil {
						err = c.Hello("client.sender.test")
					}
					if err == nil {
						err = c.SendMail("bounce@sender.test", []string{"alice@example.test"}, bytes.NewReader(msg))
					}
					if c != nil {
						c.Close()
					}
					if err != nil {
						if failed.Add(1) == 1 {
							b.Error(fmt.Errorf("%s: %w", mode, err))
						}
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
