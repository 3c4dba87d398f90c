// This file states the casebook's invariants as queries that list what
// breaks them: what `collider check` and GET /api/v1/check verify after a
// crash, a full disk, a restore or an upgrade.
package casebook

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// Invariant is one rule the store keeps, and how it stands: the number of
// violations found and a few of them, described for a person.
type Invariant struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Violations  int64    `json:"violations"`
	Examples    []string `json:"examples"`
	// Query lists the violations, one description per row.
	Query string `json:"-"`
}

// Querier is what the checks run on: a transaction, a connection or the pool.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// maxExamples is how many violations of an invariant are described.
const maxExamples = 5

// CheckInvariants runs each invariant's query on q and returns the
// invariants with their violations counted and the first few described.
func CheckInvariants(ctx context.Context, q Querier, invs []Invariant) ([]Invariant, error) {
	out := make([]Invariant, 0, len(invs))
	for _, inv := range invs {
		inv.Examples = []string{}
		rows, err := q.QueryContext(ctx, fmt.Sprintf(`SELECT v, count(*) OVER () FROM (%s) t(v) ORDER BY v LIMIT %d`, inv.Query, maxExamples))
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", inv.Name, err)
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v, &inv.Violations); err != nil {
				rows.Close()
				return nil, fmt.Errorf("check %s: %w", inv.Name, err)
			}
			inv.Examples = append(inv.Examples, v)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", inv.Name, err)
		}
		out = append(out, inv)
	}
	return out, nil
}

// allowedEvents is the workflow as (action, from, to) rows: the routing
// that creates a lead, then the transitions Act allows (leads.go), so that
// the check and the workflow cannot drift apart.
func allowedEvents() string {
	rows := []string{"('route', NULL, 'new')"}
	actions := make([]string, 0, len(transitions))
	for a := range transitions {
		actions = append(actions, a)
	}
	sort.Strings(actions)
	for _, a := range actions {
		for _, from := range transitions[a].from {
			rows = append(rows, fmt.Sprintf("('%s', '%s', '%s')", a, from, transitions[a].to))
		}
	}
	return strings.Join(rows, ", ")
}

// Invariants are the casebook's rules.
func Invariants() []Invariant {
	return []Invariant{
		{
			Name:        "issued_once",
			Description: "each (model, settlement) is issued once, to a clue that lists it, and each clue's settlements are exactly those issued to it",
			Query: `SELECT format('{} {} issued {} times', model, settlement_id, n)
				FROM (SELECT model, settlement_id, count(*) AS n FROM casebook.issued GROUP BY ALL HAVING count(*) > 1)
			UNION ALL
			SELECT format('{} {} issued to clue {}, which does not list it', i.model, i.settlement_id, i.clue_id)
				FROM casebook.issued i LEFT JOIN casebook.clues c ON c.clue_id = i.clue_id
				WHERE c.clue_id IS NULL OR c.model <> i.model OR NOT list_contains(string_split(c.settlement_ids, ';'), i.settlement_id)
			UNION ALL
			SELECT format('clue {} lists {} settlements but {} are issued to it', c.clue_id, c.settlement_count, coalesce(i.n, 0))
				FROM casebook.clues c LEFT JOIN (SELECT clue_id, count(*) AS n FROM casebook.issued GROUP BY ALL) i ON i.clue_id = c.clue_id
				WHERE c.settlement_count <> coalesce(i.n, 0)`,
		},
		{
			Name:        "lead_of_its_clue_and_city",
			Description: "every clue has its lead and every lead its clue; a lead was routed to its clue's city and is held by the city its last event left it with",
			Query: `SELECT format('clue {} has no lead', c.clue_id)
				FROM casebook.clues c WHERE NOT EXISTS (SELECT 1 FROM casebook.leads l WHERE l.lead_id = c.clue_id)
			UNION ALL
			SELECT format('lead {} has no clue', l.lead_id)
				FROM casebook.leads l WHERE NOT EXISTS (SELECT 1 FROM casebook.clues c WHERE c.clue_id = l.lead_id)
			UNION ALL
			SELECT format('lead {} was routed to {} but its clue is of {}', e.lead_id, e.city_code, c.city_code)
				FROM casebook.lead_events e JOIN casebook.clues c ON c.clue_id = e.lead_id
				WHERE e.action = 'route' AND e.city_code <> c.city_code
			UNION ALL
			SELECT format('lead {} is held by {} but its last event left it with {}', l.lead_id, l.city_code, e.city_code)
				FROM casebook.leads l JOIN (SELECT lead_id, arg_max(city_code, event_id) AS city_code FROM casebook.lead_events GROUP BY ALL) e
				ON e.lead_id = l.lead_id WHERE l.city_code <> e.city_code`,
		},
		{
			Name:        "events_follow_the_workflow",
			Description: "every lead's events begin with its routing and each follows an allowed transition from where the one before left it; the lead stands where its last event left it; a close has an outcome and a note, and a confirmed one its recovered amount",
			Query: `WITH allowed(action, from_status, to_status) AS (VALUES ` + allowedEvents() + `),
			ev AS (SELECT e.*, lag(e.to_status) OVER (PARTITION BY e.lead_id ORDER BY e.event_id) AS prev,
			              row_number() OVER (PARTITION BY e.lead_id ORDER BY e.event_id) AS k
			       FROM casebook.lead_events e)
			SELECT format('lead {} event {}: {} from {} to {} is not a transition of the workflow', lead_id, event_id, action, coalesce(from_status, 'nothing'), to_status)
				FROM ev WHERE NOT EXISTS (SELECT 1 FROM allowed a
					WHERE a.action = ev.action AND a.from_status IS NOT DISTINCT FROM ev.from_status AND a.to_status = ev.to_status)
			UNION ALL
			SELECT format('lead {} event {}: {} from {}, but the event before left it {}', lead_id, event_id, action, coalesce(from_status, 'nothing'), prev)
				FROM ev WHERE k > 1 AND from_status IS DISTINCT FROM prev
			UNION ALL
			SELECT format('lead {} begins with {} (event {}), not its routing', lead_id, action, event_id)
				FROM ev WHERE k = 1 AND action <> 'route'
			UNION ALL
			SELECT format('lead {} has no events', l.lead_id)
				FROM casebook.leads l WHERE NOT EXISTS (SELECT 1 FROM casebook.lead_events e WHERE e.lead_id = l.lead_id)
			UNION ALL
			SELECT format('lead {} is {} but its last event left it {}', l.lead_id, l.status, e.last)
				FROM casebook.leads l JOIN (SELECT lead_id, arg_max(to_status, event_id) AS last FROM casebook.lead_events GROUP BY ALL) e
				ON e.lead_id = l.lead_id WHERE l.status <> e.last
			UNION ALL
			SELECT format('lead {} event {}: a close without {}', lead_id, event_id,
			              CASE WHEN outcome IS NULL OR outcome NOT IN ('confirmed', 'dismissed', 'referred') THEN 'an outcome'
			                   WHEN note IS NULL OR trim(note) = '' THEN 'a note' ELSE 'the recovered amount' END)
				FROM ev WHERE action = 'close' AND (outcome IS NULL OR outcome NOT IN ('confirmed', 'dismissed', 'referred')
					OR note IS NULL OR trim(note) = '' OR (outcome = 'confirmed' AND recovered_amount IS NULL))`,
		},
		{
			Name:        "batch_totals",
			Description: "every batch's totals (clues, persons, institutions, settlements, amounts) are those of its clues, and every clue is in a published batch",
			Query: `SELECT format('batch {} records {} clues, {} persons, {} institutions, {} settlements, {} / {} yuan; its clues make {}, {}, {}, {}, {} / {}',
			              b.batch_id, b.clues, b.persons, b.institutions, b.settlements, b.total_amount, b.fund_amount,
			              coalesce(c.clues, 0), coalesce(c.persons, 0), coalesce(c.institutions, 0), coalesce(c.settlements, 0),
			              coalesce(c.total, 0), coalesce(c.fund, 0))
				FROM casebook.batches b LEFT JOIN (
					SELECT batch_id, count(*) AS clues, count(DISTINCT person_id) AS persons, count(DISTINCT institution_id) AS institutions,
					       sum(settlement_count) AS settlements, sum(total_amount) AS total, sum(fund_amount) AS fund
					FROM casebook.clues GROUP BY ALL) c ON c.batch_id = b.batch_id
				WHERE b.clues <> coalesce(c.clues, 0) OR b.persons <> coalesce(c.persons, 0) OR b.institutions <> coalesce(c.institutions, 0)
				   OR b.settlements <> coalesce(c.settlements, 0) OR b.total_amount <> coalesce(c.total, 0) OR b.fund_amount <> coalesce(c.fund, 0)
			UNION ALL
			SELECT format('clue {} is of batch {}, which was never published', c.clue_id, c.batch_id)
				FROM casebook.clues c WHERE NOT EXISTS (SELECT 1 FROM casebook.batches b WHERE b.batch_id = c.batch_id)`,
		},
	}
}
