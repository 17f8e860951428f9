package webmail

import "strings"

// reflow undoes format=flowed (RFC 3676): lines that end in a space are
// soft breaks and join the next line of the same quote depth (section
// 4.2), space-stuffing is removed (4.4), "-- " stays a hard line (4.3),
// and with DelSp=yes the space before a soft break goes too (4.1). Quoted
// paragraphs come back with one "> " per level, so the result reads as
// plain text that the page wraps to its width.
func reflow(text string, delSp bool) string {
	var out strings.Builder
	out.Grow(len(text))
	var para strings.Builder
	paraDepth, open := 0, false
	flush := func() {
		if !open {
			return
		}
		out.WriteString(strings.Repeat("> ", paraDepth))
		out.WriteString(para.String())
		out.WriteByte('\n')
		para.Reset()
		open = false
	}
	lines := strings.Split(text, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for _, line := range lines {
		line = strings.TrimSuffix(line, "\r")
		depth := 0
		for depth < len(line) && line[depth] == '>' {
			depth++
		}
		line = line[depth:]
		line = strings.TrimPrefix(line, " ") // space-stuffing (or the space after ">")
		if open && depth != paraDepth {
			flush() // a quote depth change ends a paragraph (4.5)
		}
		soft := strings.HasSuffix(line, " ") && line != "-- "
		if soft && delSp {
			line = line[:len(line)-1]
		}
		para.WriteString(line)
		paraDepth, open = depth, true
		if !soft {
			flush()
		}
	}
	flush()
	return out.String()
}
