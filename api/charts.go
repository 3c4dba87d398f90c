// This file draws the pages' charts on the server, as inline SVG: bars per
// city for the board, and a lead's timeline of visits beside the police
// records. No script, no asset from elsewhere; every text is escaped.
package api

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
	"time"

	"collider/casebook"
)

// bar is one bar of a bar chart, with an optional second value drawn
// inside it (e.g. closed within issued).
type bar struct {
	Label string
	Value float64
	Inner float64
}

// barChart draws horizontal bars with their values, widest first.
func barChart(title string, bars []bar, format func(float64) string, innerLegend, outerLegend string) string {
	if len(bars) == 0 {
		return ""
	}
	sort.SliceStable(bars, func(i, j int) bool { return bars[i].Value > bars[j].Value })
	const rowH, labelW, barW, valueW = 22, 110, 360, 130
	width, height := labelW+barW+valueW, rowH*len(bars)+48
	maxV := 0.0
	for _, b := range bars {
		maxV = math.Max(maxV, b.Value)
	}
	if maxV == 0 {
		maxV = 1
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`,
		html.EscapeString(title), width, height, width, height)
	fmt.Fprintf(&s, `<text x="0" y="14" class="chart-title">%s</text>`, html.EscapeString(title))
	for i, b := range bars {
		y := 24 + i*rowH
		w := b.Value / maxV * barW
		fmt.Fprintf(&s, `<text x="%d" y="%d" class="chart-label" text-anchor="end">%s</text>`, labelW-6, y+15, html.EscapeString(b.Label))
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.1f" height="%d" class="bar-outer"/>`, labelW, y+3, w, rowH-6)
		if b.Inner > 0 {
			fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.1f" height="%d" class="bar-inner"/>`, labelW, y+3, b.Inner/maxV*barW, rowH-6)
		}
		fmt.Fprintf(&s, `<text x="%.1f" y="%d" class="chart-value">%s</text>`, float64(labelW)+w+6, y+15, html.EscapeString(format(b.Value)))
	}
	if outerLegend != "" {
		y := 24 + len(bars)*rowH + 14
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="12" height="10" class="bar-outer"/><text x="%d" y="%d" class="chart-label">%s</text>`,
			labelW, y-9, labelW+16, y, html.EscapeString(outerLegend))
		if innerLegend != "" {
			fmt.Fprintf(&s, `<rect x="%d" y="%d" width="12" height="10" class="bar-inner"/><text x="%d" y="%d" class="chart-label">%s</text>`,
				labelW+140, y-9, labelW+156, y, html.EscapeString(innerLegend))
		}
	}
	s.WriteString(`</svg>`)
	return s.String()
}

// span is one thing on a timeline: an interval, or an instant when end is
// the start.
type span struct {
	Row        string // the row it is drawn on
	Label      string
	Start, End time.Time
	Class      string
}

// timeline draws visits and police records as rows over one time axis, so
// that an investigator sees at a glance where the person was when the
// settlement says they were at the institution.
func timeline(spans []span) string {
	if len(spans) == 0 {
		return ""
	}
	from, to := spans[0].Start, spans[0].End
	var rows []string
	rowOf := map[string]int{}
	for _, sp := range spans {
		if sp.Start.Before(from) {
			from = sp.Start
		}
		if sp.End.After(to) {
			to = sp.End
		}
		if _, ok := rowOf[sp.Row]; !ok {
			rowOf[sp.Row] = len(rows)
			rows = append(rows, sp.Row)
		}
	}
	pad := to.Sub(from) / 20
	if pad < 12*time.Hour {
		pad = 12 * time.Hour
	}
	from, to = from.Add(-pad), to.Add(pad)
	const labelW, plotW, rowH = 120, 640, 26
	width, height := labelW+plotW+40, len(rows)*rowH+40
	x := func(t time.Time) float64 {
		return labelW + float64(t.Sub(from))/float64(to.Sub(from))*plotW
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg class="timeline" role="img" aria-label="时间轴" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`,
		width, height, width, height)
	for i, r := range rows {
		y := i*rowH + 4
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%d" height="%d" class="tl-band%d"/>`, labelW, y, plotW, rowH-2, i%2)
		fmt.Fprintf(&s, `<text x="%d" y="%d" class="chart-label" text-anchor="end">%s</text>`, labelW-6, y+16, html.EscapeString(r))
	}
	for _, sp := range spans {
		y := rowOf[sp.Row]*rowH + 4
		x1, x2 := x(sp.Start), x(sp.End)
		title := fmt.Sprintf("<title>%s</title>", html.EscapeString(sp.Label))
		if x2-x1 < 3 {
			fmt.Fprintf(&s, `<g><circle cx="%.1f" cy="%d" r="5" class="%s"/>%s</g>`, x1, y+12, sp.Class, title)
		} else {
			fmt.Fprintf(&s, `<g><rect x="%.1f" y="%d" width="%.1f" height="%d" rx="3" class="%s"/>%s</g>`, x1, y+5, x2-x1, rowH-12, sp.Class, title)
		}
	}
	// The axis: about six dates.
	axisY := len(rows)*rowH + 8
	fmt.Fprintf(&s, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="tl-axis"/>`, labelW, axisY, labelW+plotW, axisY)
	layout := "2006-01-02"
	if to.Sub(from) < 4*24*time.Hour {
		layout = "01-02 15:04"
	}
	for i := 0; i <= 5; i++ {
		t := from.Add(time.Duration(float64(to.Sub(from)) * float64(i) / 5))
		xx := x(t)
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="tl-axis"/><text x="%.1f" y="%d" class="chart-label" text-anchor="middle">%s</text>`,
			xx, axisY, xx, axisY+4, xx, axisY+18, chinaTime(t).Format(layout))
	}
	s.WriteString(`</svg>`)
	return s.String()
}

// leadTimeline puts a lead's visits and its person's dated police records
// on one timeline.
func leadTimeline(items []evidenceItem, records []casebook.PoliceRecord) string {
	var spans []span
	for _, it := range items {
		if it.VisitStart == nil {
			continue
		}
		end := *it.VisitStart
		if it.VisitEnd != nil {
			end = *it.VisitEnd
		}
		spans = append(spans, span{Row: "医保结算", Label: fmt.Sprintf("%s %s %s", label(visitNames, it.VisitType), it.SettlementID, chinaTime(*it.VisitStart).Format("2006-01-02 15:04")),
			Start: *it.VisitStart, End: end, Class: "tl-visit"})
	}
	for _, r := range records {
		if r.Start == nil || r.Kind == "hukou" {
			continue
		}
		end := *r.Start
		if r.End != nil {
			end = *r.End
		} else if r.Kind == "custody" || r.Kind == "abroad" || r.Kind == "floating" {
			end = time.Now() // open: still there
		}
		spans = append(spans, span{Row: label(recordNames, r.Kind), Label: fmt.Sprintf("%s %s %s", label(recordNames, r.Kind), r.Place, chinaTime(*r.Start).Format("2006-01-02 15:04")),
			Start: *r.Start, End: end, Class: "tl-" + r.Kind})
	}
	return timeline(spans)
}
