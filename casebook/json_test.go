package casebook

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// encodingJSON is what Echo's c.JSON writes: encoding/json with HTML
// escaping, without the newline.
func encodingJSON(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

var jsonStrings = []string{"", "620100", "张三", "a\"b\\c", "<script>&amp;</script>", "line\nbreak\ttab\rret\bback\fform",
	"\x00\x01\x1f\x7f", "bad \xff utf-8 \xc3", "sep\u2028par\u2029", "emoji 😀 and 𠀀", strings.Repeat("长", 300)}

var jsonFloats = []float64{0, 1, -1, 12345.67, 0.1, 1e20, 1e21, 123456789012345678901234.0, 1e-6, 1e-7, 9.99e-7, 5e-324,
	1.7976931348623157e308, -0.000001, 80, 1234567.891}

func randomClue(r *rand.Rand) *Clue {
	pick := func() string { return jsonStrings[r.IntN(len(jsonStrings))] }
	num := func() float64 { return jsonFloats[r.IntN(len(jsonFloats))] }
	cl := &Clue{ID: r.Int64(), BatchID: r.Int64N(100), Model: pick(), ModelVersion: pick(), Severity: pick(), Score: num(),
		PersonID: pick(), PersonName: pick(), InstitutionID: pick(), InstitutionName: pick(), City: pick(),
		SettlementCount: r.IntN(1000) - 5, TotalAmount: num(), FundAmount: num(), Narrative: pick(), Status: pick()}
	switch r.IntN(3) {
	case 0:
		cl.Reasons, cl.SettlementIDs = nil, []string{}
	case 1:
		cl.Reasons, cl.SettlementIDs = []string{pick(), pick()}, []string{pick()}
	}
	evidence := []string{"", `[{"death_date":"2025-12-01","n":1}]`, `[ { "a" : "x <b> & y" } ,{"b":[1, 2.5e3, null, true]} ]`,
		"[\n  {\"note\": \"sep\u2028\"}\n]", `{"k":"长 文"}`}
	if e := evidence[r.IntN(len(evidence))]; e != "" {
		switch r.IntN(3) {
		case 0: // as a caller sets it
			cl.Evidence = json.RawMessage(e)
		case 1: // as memory and the read cache make it, encoded once
			cl.setEncodedEvidence(appendJSONRaw(nil, json.RawMessage(e)))
		case 2: // encoded once, then replaced (masked): checked again
			cl.setEncodedEvidence(appendJSONRaw(nil, json.RawMessage(e)))
			cl.Evidence = json.RawMessage(evidence[1+r.IntN(len(evidence)-1)])
		}
	}
	if r.IntN(2) == 0 {
		t := time.Date(2024, 2, 29, 23, 59, 59, r.IntN(2)*123456000, time.FixedZone("CST", 8*3600))
		cl.FirstVisit, cl.LastVisit = &t, &t
	}
	if r.IntN(2) == 0 {
		n := r.Int64()
		cl.FollowUpOf = &n
	}
	return cl
}

// AppendJSON writes what encoding/json writes, for every field's edge
// cases: nil pointers and slices, escapes, bad UTF-8, big and small numbers.
func TestAppendJSON_IsByteForByteEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 12))
	pick := func() string { return jsonStrings[r.IntN(len(jsonStrings))] }
	zones := []*time.Location{time.UTC, time.FixedZone("CST", 8*3600), time.FixedZone("X", -3*3600-1800)}
	when := func() time.Time {
		return time.Date(2000+r.IntN(30), time.Month(1+r.IntN(12)), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(3)*r.IntN(1e9), zones[r.IntN(3)])
	}
	for i := 0; i < 3000; i++ {
		l := &Lead{ID: r.Int64N(1 << 40), City: pick(), Status: pick(), RoutedAt: when(), DueDate: pick(), UpdatedAt: when(), Overdue: r.IntN(2) == 0}
		if r.IntN(2) == 0 {
			l.Outcome, l.Note = pick(), pick()
			v := jsonFloats[r.IntN(len(jsonFloats))]
			l.RecoveredAmount = &v
			c := when()
			l.ClosedAt = &c
		}
		if r.IntN(3) > 0 {
			l.Clue = randomClue(r)
		}
		if got, want := l.AppendJSON(nil), encodingJSON(t, l); !bytes.Equal(got, want) {
			t.Fatalf("lead:\n got %s\nwant %s", got, want)
		}
		e := &Event{ID: r.Int64(), LeadID: l.ID, At: when(), UserID: r.Int64N(10), UserName: pick(), Role: pick(), Action: pick(), To: pick(), City: pick()}
		if r.IntN(2) == 0 {
			e.From, e.Outcome, e.Note = pick(), pick(), pick()
			v := jsonFloats[r.IntN(len(jsonFloats))]
			e.RecoveredAmount = &v
		}
		if got, want := e.AppendJSON([]byte{}), encodingJSON(t, e); !bytes.Equal(got, want) {
			t.Fatalf("event:\n got %s\nwant %s", got, want)
		}
	}
}
