// This file writes the JSON of what the API reads most — leads, clues,
// events — by hand, byte for byte what encoding/json writes with HTML
// escaping (as Echo's c.JSON does), without reflection: at thousands of
// requests a second the encoder was a large part of a lead read. A test
// compares the two for many values.
package casebook

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONFloat is encoding/json's float64 encoding (NaN and infinities
// never reach it: amounts and scores come from DECIMAL and DOUBLE columns
// that hold neither).
func appendJSONFloat(dst []byte, f float64) []byte {
	abs, format := math.Abs(f), byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

func appendJSONStrings(dst []byte, ss []string) []byte {
	if ss == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

// appendJSONRaw is a json.RawMessage as encoding/json writes it: compacted,
// HTML-escaped; a message that needs neither is copied as it is.
func appendJSONRaw(dst []byte, raw json.RawMessage) []byte {
	if raw == nil {
		return append(dst, "null"...)
	}
	if bytes.IndexAny(raw, " \t\r\n<>&\u2028\u2029") < 0 && json.Valid(raw) {
		return append(dst, raw...)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return append(dst, "null"...)
	}
	var esc bytes.Buffer
	json.HTMLEscape(&esc, buf.Bytes())
	return append(dst, esc.Bytes()...)
}

// field starts a member: a comma unless it is the object's first.
func field(dst []byte, name string) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

// AppendJSON appends the lead as encoding/json writes it.
func (l *Lead) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = strconv.AppendInt(field(dst, "lead_id"), l.ID, 10)
	dst = appendJSONString(field(dst, "city_code"), l.City)
	dst = appendJSONString(field(dst, "status"), l.Status)
	dst = appendOutcome(dst, l.Outcome, l.RecoveredAmount, l.Note)
	dst = appendJSONTime(field(dst, "routed_at"), l.RoutedAt)
	dst = appendJSONString(field(dst, "due_date"), l.DueDate)
	dst = appendJSONTime(field(dst, "updated_at"), l.UpdatedAt)
	if l.ClosedAt != nil {
		dst = appendJSONTime(field(dst, "closed_at"), *l.ClosedAt)
	}
	dst = strconv.AppendBool(field(dst, "overdue"), l.Overdue)
	if l.Clue != nil {
		dst = l.Clue.AppendJSON(field(dst, "clue"))
	}
	return append(dst, '}')
}

// AppendJSON appends the clue as encoding/json writes it.
func (cl *Clue) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = strconv.AppendInt(field(dst, "clue_id"), cl.ID, 10)
	dst = strconv.AppendInt(field(dst, "batch_id"), cl.BatchID, 10)
	dst = appendJSONString(field(dst, "model"), cl.Model)
	dst = appendJSONString(field(dst, "model_version"), cl.ModelVersion)
	dst = appendJSONString(field(dst, "severity"), cl.Severity)
	dst = appendJSONFloat(field(dst, "score"), cl.Score)
	dst = appendJSONStrings(field(dst, "reasons"), cl.Reasons)
	dst = appendJSONString(field(dst, "person_id"), cl.PersonID)
	dst = appendJSONString(field(dst, "person_name"), cl.PersonName)
	dst = appendJSONString(field(dst, "institution_id"), cl.InstitutionID)
	dst = appendJSONString(field(dst, "institution_name"), cl.InstitutionName)
	dst = appendJSONString(field(dst, "city_code"), cl.City)
	dst = strconv.AppendInt(field(dst, "settlement_count"), int64(cl.SettlementCount), 10)
	dst = appendJSONStrings(field(dst, "settlement_ids"), cl.SettlementIDs)
	if cl.FirstVisit != nil {
		dst = appendJSONTime(field(dst, "first_visit"), *cl.FirstVisit)
	}
	if cl.LastVisit != nil {
		dst = appendJSONTime(field(dst, "last_visit"), *cl.LastVisit)
	}
	dst = appendJSONFloat(field(dst, "total_amount"), cl.TotalAmount)
	dst = appendJSONFloat(field(dst, "fund_amount"), cl.FundAmount)
	dst = appendJSONString(field(dst, "narrative"), cl.Narrative)
	if len(cl.Evidence) > 0 && len(cl.encoded) == len(cl.Evidence) && &cl.encoded[0] == &cl.Evidence[0] {
		dst = append(field(dst, "evidence"), cl.Evidence...)
	} else {
		dst = appendJSONRaw(field(dst, "evidence"), cl.Evidence)
	}
	if cl.FollowUpOf != nil {
		dst = strconv.AppendInt(field(dst, "follow_up_of"), *cl.FollowUpOf, 10)
	}
	if cl.Status != "" {
		dst = appendJSONString(field(dst, "status"), cl.Status)
	}
	return append(dst, '}')
}

// AppendJSON appends the event as encoding/json writes it.
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = strconv.AppendInt(field(dst, "event_id"), e.ID, 10)
	dst = strconv.AppendInt(field(dst, "lead_id"), e.LeadID, 10)
	dst = appendJSONTime(field(dst, "at"), e.At)
	dst = strconv.AppendInt(field(dst, "user_id"), e.UserID, 10)
	dst = appendJSONString(field(dst, "user_name"), e.UserName)
	dst = appendJSONString(field(dst, "role"), e.Role)
	dst = appendJSONString(field(dst, "action"), e.Action)
	if e.From != "" {
		dst = appendJSONString(field(dst, "from_status"), e.From)
	}
	dst = appendJSONString(field(dst, "to_status"), e.To)
	dst = appendJSONString(field(dst, "city_code"), e.City)
	dst = appendOutcome(dst, e.Outcome, e.RecoveredAmount, e.Note)
	return append(dst, '}')
}

// appendOutcome appends what a close records, each field only when set
// (omitempty), as a lead and an event both carry it.
func appendOutcome(dst []byte, outcome string, recovered *float64, note string) []byte {
	if outcome != "" {
		dst = appendJSONString(field(dst, "outcome"), outcome)
	}
	if recovered != nil {
		dst = appendJSONFloat(field(dst, "recovered_amount"), *recovered)
	}
	if note != "" {
		dst = appendJSONString(field(dst, "note"), note)
	}
	return dst
}
