// This file turns a model's narrative templates into SQL, so that the one
// sentence an investigator reads aloud is built in the same query that
// groups the clues, and masks personal data in clues for readers who may not
// see it (the modeler role).
//
// A template is Chinese text with placeholders in braces:
//
//	{person_id} {person_name} {institution_id} {institution_name}
//	{visit_dates}   a single stay's "admission至discharge" dates, a single visit's
//	                date, or "first至last" over several visits
//	{first_visit} {last_visit}   dates of the clue's first and last visit
//	{visit_start} {visit_end}    the representative visit's times (YYYY-MM-DD HH:MM)
//	{action}        住院 / 就诊 / 购药, by the representative visit's type
//	{count}         number of settlements; {times}: "" for one, "3次" for three
//	{fund_amount} {total_amount}  the clue's sums, two decimals
//	{e.KEY}         a field of the representative settlement's evidence (dots for nested keys)
//	{p.NAME}        a parameter's value
//
// The representative settlement is the clue's earliest visit; its reason
// chooses the template (narrative.REASON, else narrative.default). The text
// is generated in clear (in the sandbox, people are tokens there); the
// casebook masks a published clue for a reader who may not see it
// (personid.MaskText).
package models

import (
	"fmt"
	"regexp"
	"strings"
)

// narrativeFields are the placeholders over the grouped clue (see clueSQL's
// columns) and the SQL each stands for.
var narrativeFields = map[string]string{
	"person_id":        "c.person_id",
	"person_name":      "c.person_name",
	"institution_id":   "c.institution_id",
	"institution_name": "c.institution_name",
	"visit_dates": `CASE WHEN c.settlement_count = 1 AND CAST(c.rep_visit_end AS DATE) > CAST(c.rep_visit_start AS DATE)
			THEN strftime(c.rep_visit_start, '%Y-%m-%d') || '至' || strftime(c.rep_visit_end, '%Y-%m-%d')
		WHEN CAST(c.first_visit AS DATE) = CAST(c.last_visit AS DATE) THEN strftime(c.first_visit, '%Y-%m-%d')
		ELSE strftime(c.first_visit, '%Y-%m-%d') || '至' || strftime(c.last_visit, '%Y-%m-%d') END`,
	"first_visit":  "strftime(c.first_visit, '%Y-%m-%d')",
	"last_visit":   "strftime(c.last_visit, '%Y-%m-%d')",
	"visit_start":  "strftime(c.rep_visit_start, '%Y-%m-%d %H:%M')",
	"visit_end":    "strftime(c.rep_visit_end, '%Y-%m-%d %H:%M')",
	"action":       "CASE c.rep_visit_type WHEN 'inpatient' THEN '住院' WHEN 'outpatient' THEN '就诊' WHEN 'pharmacy' THEN '购药' END",
	"count":        "CAST(c.settlement_count AS VARCHAR)",
	"times":        "CASE WHEN c.settlement_count > 1 THEN CAST(c.settlement_count AS VARCHAR) || '次' ELSE '' END",
	"fund_amount":  "printf('%.2f', c.fund_amount)",
	"total_amount": "printf('%.2f', c.total_amount)",
}

var (
	placeholderRe = regexp.MustCompile(`\{([^{}]*)\}`)
	evidenceKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

// compileTemplate returns the SQL expression of a template. Literal text is
// the model's own text, quoted as a SQL string; parameter values are bound.
func compileTemplate(tmpl string, m *Model) (string, error) {
	var parts []string
	last := 0
	for _, loc := range placeholderRe.FindAllStringSubmatchIndex(tmpl, -1) {
		if loc[0] > last {
			parts = append(parts, sqlLiteral(tmpl[last:loc[0]]))
		}
		last = loc[1]
		name := strings.TrimSpace(tmpl[loc[2]:loc[3]])
		var expr string
		switch {
		case strings.HasPrefix(name, "e."):
			key := strings.TrimPrefix(name, "e.")
			if !evidenceKeyRe.MatchString(key) {
				return "", fmt.Errorf("placeholder {%s}: evidence keys are letters, digits, _ and dots", name)
			}
			expr = fmt.Sprintf("json_extract_string(c.rep_evidence, '$.%s')", key)
		case strings.HasPrefix(name, "p."):
			p := strings.TrimPrefix(name, "p.")
			if _, ok := m.Param(p); !ok {
				return "", fmt.Errorf("placeholder {%s}: no parameter %s", name, p)
			}
			expr = fmt.Sprintf("CAST($%s AS VARCHAR)", p)
		default:
			f, ok := narrativeFields[name]
			if !ok {
				return "", fmt.Errorf("unknown placeholder {%s}", name)
			}
			expr = f
		}
		parts = append(parts, "coalesce(CAST(("+expr+") AS VARCHAR), '')")
	}
	if last < len(tmpl) {
		parts = append(parts, sqlLiteral(tmpl[last:]))
	}
	if len(parts) == 0 {
		return "''", nil
	}
	return "concat(" + strings.Join(parts, ", ") + ")", nil
}

// narrativeSQL chooses the template by the representative's reason.
func narrativeSQL(m *Model) (string, error) {
	var b strings.Builder
	b.WriteString("CASE c.rep_reason")
	def := "''"
	for _, n := range m.Narratives {
		expr, err := compileTemplate(n.Template, m)
		if err != nil {
			return "", fmt.Errorf("narrative %s: %w", n.Reason, err)
		}
		if n.Reason == "default" {
			def = expr
			continue
		}
		fmt.Fprintf(&b, " WHEN %s THEN %s", sqlLiteral(n.Reason), expr)
	}
	if b.Len() == len("CASE c.rep_reason") {
		return def, nil // only a default template
	}
	fmt.Fprintf(&b, " ELSE %s END", def)
	return b.String(), nil
}

func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
