package queue

import (
	"bytes"
	"testing"
	"time"

	"postern/gateway/delivery"
)

// FuzzDecodeEnvelope: the envelope parser never panics, and whatever it
// accepts satisfies its bounds and survives a round trip unchanged.
func FuzzDecodeEnvelope(f *testing.F) {
	se := &spoolEnvelope{Envelope: delivery.Envelope{
		ID: "0000000000001aaaaaaaaaa", From: "a@b.example", EnvID: "x", Ret: "HDRS",
		Received: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Rcpts: []delivery.Recipient{
			{Addr: "r@x.example", ORcpt: "rfc822;r@x.example", Notify: delivery.NotifyFailure, Attempts: 2, LastResult: "smtp; 451 4.2.0 later"},
			{Addr: "ü@x.example", Local: true, Status: delivery.StatusDelivered},
		},
	}}
	good, err := encodeEnvelope(se)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"Version":1,"ID":"abc","Rcpts":[{"Addr":"x@y"}]}`))
	f.Add([]byte(`{"Version":1,"ID":"abc","Rcpts":[{"Addr":"x\r\n@y"}]}`))
	f.Add([]byte(`{"Version":2}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeEnvelope(data, "")
		if err != nil {
			return
		}
		if !validID(got.ID) || len(got.Rcpts) == 0 || len(got.Rcpts) > maxRecipients || !validAddress(got.From) {
			t.Fatalf("accepted an envelope that breaks a bound: %+v", got)
		}
		for _, r := range got.Rcpts {
			if !validAddress(r.Addr) || r.Addr == "" || r.Status > delivery.StatusFailed {
				t.Fatalf("accepted a bad recipient %+v", r)
			}
		}
		again, err := encodeEnvelope(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeEnvelope(again, got.ID)
		if err != nil {
			t.Fatalf("re-encoded envelope does not parse: %v", err)
		}
		third, _ := encodeEnvelope(back)
		if !bytes.Equal(again, third) {
			t.Fatalf("round trip changed the envelope:\n%s\n%s", again, third)
		}
	})
}

// FuzzBuildDSN: any envelope state and message bytes give a DSN that
// parses as multipart/report and has no line over 998 octets.
func FuzzBuildDSN(f *testing.F) {
	f.Add("a@b.example", "r@x.example", "rfc822;o@x.example", "smtp; 550 5.1.1 no", "ENV", "FULL", []byte(testMessage), uint8(0))
	f.Add("", "ü@x.example", "", "", "", "HDRS", []byte("no header end"), uint8(1))
	f.Add("a@b.example", "r@x.example", "", "x; "+string(bytes.Repeat([]byte("w"), 3000)), "", "", []byte("\n\n"), uint8(2))
	f.Fuzz(func(t *testing.T, from, rcpt, orcpt, last, envid, ret string, body []byte, kind uint8) {
		if !validAddress(from) || !validAddress(rcpt) || rcpt == "" || !validAddress(orcpt) || !validText(envid) || !validText(ret) {
			return // Enqueue refuses these
		}
		se := &spoolEnvelope{Envelope: delivery.Envelope{
			ID: "0000000000001aaaaaaaaaa", From: from, EnvID: envid, Ret: ret,
			Rcpts: []delivery.Recipient{{Addr: rcpt, ORcpt: orcpt, LastResult: cleanText(last, 1000), LastAttempt: time.Unix(1, 0)}},
		}}
		d := dsnBuilder{hostname: "h.example", now: time.Unix(2, 0), lifetime: time.Hour, messageID: "<m@h.example>", boundary: "=_b"}
		k := dsnKind(kind % 3)
		action := map[dsnKind]string{dsnFailure: "failed", dsnDelay: "delayed", dsnSuccess: "delivered"}[k]
		out, err := d.build(se, k, []dsnRecipient{{index: 0, action: action, status: "5.0.0"}}, memMessage(body))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range bytes.Split(out, []byte("\r\n")) {
			// The returned original is copied as it is; check ours.
			if len(line) > 998 && !bytes.Contains(body, line) {
				t.Fatalf("line %d is %d octets", i, len(line))
			}
		}
		if !bytes.HasSuffix(out, []byte("--=_b--\r\n")) {
			t.Fatalf("DSN does not end with the closing boundary")
		}
	})
}

type memMessage []byte

func (m memMessage) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m).ReadAt(p, off)
}
func (m memMessage) Size() int64 { return int64(len(m)) }
