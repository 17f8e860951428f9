package mime

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDecoded(t *testing.T) {
	msg := loadMessage(t, "nested.eml", true)
	root := mustParse(t, msg)
	tests := []struct {
		name string
		path []int
		want string
	}{
		{"whole message as it is", nil, string(msg)},
		{"7bit part", []int{1, 1}, "plain part"},
		{"quoted-printable", []int{2, 1}, "caf\xe9 inside"},
		{"base64", []int{2, 2}, "\x89PNG\r\n\x1a\n"},
		{"missing part", []int{7}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decoded(bytes.NewReader(msg), root, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecodedTextLineEnds(t *testing.T) {
	// base64 text with bare LFs comes out with CRLF; base64 of another type
	// is left byte for byte.
	msg := []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"b25lCnR3bwo=\r\n--b\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: Base64\r\n\r\n" +
		"AAoA\r\n--b--\r\n")
	root := mustParse(t, msg)
	if got, err := Decoded(bytes.NewReader(msg), root, []int{1}); err != nil || string(got) != "one\r\ntwo\r\n" {
		t.Errorf("text part: %q %v", got, err)
	}
	if got, err := Decoded(bytes.NewReader(msg), root, []int{2}); err != nil || string(got) != "\x00\n\x00" {
		t.Errorf("binary part: %q %v", got, err)
	}
}

func TestDecodedUnknownEncoding(t *testing.T) {
	msg := []byte("Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n")
	root := mustParse(t, msg)
	_, err := Decoded(bytes.NewReader(msg), root, []int{1})
	if !errors.Is(err, ErrUnknownEncoding) || !strings.Contains(err.Error(), "X-UUENCODE") {
		t.Fatalf("err = %v, want ErrUnknownEncoding naming X-UUENCODE", err)
	}
	// The whole message needs no decoding.
	if got, err := Decoded(bytes.NewReader(msg), root, nil); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("BINARY[]: %q %v", got, err)
	}
}
