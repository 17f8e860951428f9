package textindex

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// BenchmarkBuilderAdd: trigrams of 10,000 documents like imapbench's.
func BenchmarkBuilderAdd(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu")
	var docs []Doc
	for i := 0; i < 10000; i++ {
		hdr := strings.ToLower(fmt.Sprintf("Return-Path: <u%d@example.org>\r\nFrom: User %d <u%d@example.org>\r\nTo: bench@example.test\r\nSubject: %s %s report %d\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <%d.bench@example.org>\r\n\r\n", i%97, i%97, i%97, words[rng.IntN(26)], words[rng.IntN(26)], i, i))
		body := strings.Repeat(words[rng.IntN(len(words))]+" ", 20+rng.IntN(60))
		docs = append(docs, Doc{UID: uint32(i + 1), Key: fmt.Sprint(i), Text: [][]string{{body}, {hdr}}})
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		bl := newBuilder(true)
		for _, d := range docs {
			bl.add(d)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(docs)), "ns/doc")
}
