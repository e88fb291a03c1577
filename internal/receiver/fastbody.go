package receiver

// decodeSinkBodyFast fills b from body like decodeSinkBody(body, b) would, for the shape real
// deliveries have, in one pass without reflection: about 5x cheaper than encoding/json, whose
// validation scan alone costs more than this whole decoder. It reports false, leaving b
// unspecified, for anything it does not handle exactly like decodeSinkBody: JSON it does not
// accept (it is at least as strict as json.Valid, and gives up beyond maxNestingDepth nested
// containers), a top level that is not an object, a non-ASCII or escaped field name (it could
// unescape to one of ours), a field name given twice in one of the objects it reads, null or a
// value of another type for one of our fields, or one of our strings with an escape or a
// non-ASCII byte. Field names are matched exactly: "RUNID" is not "runId". The caller then
// decodes with decodeSinkBody, which also produces the error messages. FuzzDecodeSinkBodyFast
// checks the two agree. It does not check UTF-8 (parseSinkBody does, before either decoder).
//
// Why not a faster JSON library: github.com/goccy/go-json (as fast as this) skips unknown fields
// without validating them, so it accepts bodies encoding/json rejects (a fuzz run found {"":{""}}
// within a second), and a receiver must not store invalid JSON as a delivery.
func decodeSinkBodyFast(body []byte, b *sinkBody) bool {
	d := fastDecoder{buf: body}
	d.space()
	ok := d.object(func(key []byte) bool {
		switch string(key) {
		case "workspaceId":
			return d.str(&b.WorkspaceID)
		case "project":
			b.Project = new(nameObject)
			return d.stringFieldObject("name", &b.Project.Name)
		case "projectJob":
			b.ProjectJob = new(idObject)
			return d.stringFieldObject("id", &b.ProjectJob.ID)
		case "projectJobRun":
			b.ProjectJobRun = new(idObject)
			return d.stringFieldObject("id", &b.ProjectJobRun.ID)
		case "apiInfo":
			b.APIInfo = new(apiInfo)
			a := b.APIInfo
			return d.object(func(key []byte) bool {
				switch string(key) {
				case "name":
					return d.str(&a.Name)
				case "runId":
					return d.str(&a.RunID)
				case "result":
					a.Result = new(statusObject)
					return d.stringFieldObject("status", &a.Result.Status)
				}
				return d.skip()
			})
		}
		return d.skip()
	})
	d.space()
	return ok && d.i == len(d.buf)
}

// fastDecoder is a validating JSON reader: d.i is the next byte of buf; every method returns false
// when the input is not valid JSON or not of the expected shape.
type fastDecoder struct {
	buf   []byte
	i     int
	depth int
}

func (d *fastDecoder) peek() byte {
	if d.i < len(d.buf) {
		return d.buf[d.i]
	}
	return 0
}

func (d *fastDecoder) space() {
	for d.i < len(d.buf) {
		switch d.buf[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// object reads an object at d.i, calling field for each member with d.i at its value; field must
// consume the value. Any field name seen twice, escaped or non-ASCII makes it fail.
func (d *fastDecoder) object(field func(key []byte) bool) bool {
	if d.peek() != '{' {
		return false
	}
	if d.depth++; d.depth > maxNestingDepth {
		return false
	}
	d.i++
	d.space()
	if d.peek() == '}' {
		d.i++
		d.depth--
		return true
	}
	var seenBuf [8][]byte
	seen := seenBuf[:0]
	for {
		key, ok := d.plainString()
		if !ok {
			return false
		}
		for _, s := range seen {
			if string(s) == string(key) {
				return false
			}
		}
		seen = append(seen, key)
		d.space()
		if d.peek() != ':' {
			return false
		}
		d.i++
		d.space()
		if !field(key) {
			return false
		}
		d.space()
		switch d.peek() {
		case ',':
			d.i++
			d.space()
		case '}':
			d.i++
			d.depth--
			return true
		default:
			return false
		}
	}
}

// stringFieldObject reads an object of which we keep one string field (project.name, projectJob.id,
// apiInfo.result.status ...) into dst.
func (d *fastDecoder) stringFieldObject(name string, dst *string) bool {
	return d.object(func(key []byte) bool {
		if string(key) == name {
			return d.str(dst)
		}
		return d.skip()
	})
}

// str reads one of our string fields: a string without escapes or non-ASCII bytes.
func (d *fastDecoder) str(dst *string) bool {
	s, ok := d.plainString()
	if ok {
		*dst = string(s)
	}
	return ok
}

// plainString reads a string at d.i that has no escapes and only ASCII bytes, and returns its
// content (a slice of buf).
func (d *fastDecoder) plainString() ([]byte, bool) {
	if d.peek() != '"' {
		return nil, false
	}
	start := d.i + 1
	for j := start; j < len(d.buf); j++ {
		switch c := d.buf[j]; {
		case c == '"':
			d.i = j + 1
			return d.buf[start:j], true
		case c == '\\' || c >= 0x80 || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// skip reads past one value of any type, checking its syntax as json.Valid does.
func (d *fastDecoder) skip() bool {
	switch c := d.peek(); {
	case c == '{' || c == '[':
		return d.skipContainer(c)
	case c == '"':
		return d.skipString()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return d.number()
	}
	return false
}

func (d *fastDecoder) skipContainer(open byte) bool {
	closer := byte('}')
	if open == '[' {
		closer = ']'
	}
	if d.depth++; d.depth > maxNestingDepth {
		return false
	}
	d.i++
	d.space()
	if d.peek() == closer {
		d.i++
		d.depth--
		return true
	}
	for {
		if open == '{' {
			if !d.skipString() {
				return false
			}
			d.space()
			if d.peek() != ':' {
				return false
			}
			d.i++
			d.space()
		}
		if !d.skip() {
			return false
		}
		d.space()
		switch d.peek() {
		case ',':
			d.i++
			d.space()
		case closer:
			d.i++
			d.depth--
			return true
		default:
			return false
		}
	}
}

// skipString reads a string: no raw control characters, only JSON's escapes. Like json.Valid it
// does not check UTF-8.
func (d *fastDecoder) skipString() bool {
	if d.peek() != '"' {
		return false
	}
	for j := d.i + 1; j < len(d.buf); j++ {
		switch c := d.buf[j]; {
		case c == '"':
			d.i = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			j++
			if j >= len(d.buf) {
				return false
			}
			switch d.buf[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(d.buf) {
					return false
				}
				for _, h := range d.buf[j+1 : j+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

func (d *fastDecoder) literal(word string) bool {
	if len(d.buf)-d.i < len(word) || string(d.buf[d.i:d.i+len(word)]) != word {
		return false
	}
	d.i += len(word)
	return true
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDecoder) number() bool {
	digits := func() int {
		n := 0
		for d.i < len(d.buf) && '0' <= d.buf[d.i] && d.buf[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.peek() == '-' {
		d.i++
	}
	switch c := d.peek(); {
	case c == '0':
		d.i++
	case '1' <= c && c <= '9':
		digits()
	default:
		return false
	}
	if d.peek() == '.' {
		d.i++
		if digits() == 0 {
			return false
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.i++
		if c := d.peek(); c == '+' || c == '-' {
			d.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
