// This file writes a synthetic casebook: batches of clues with their leads
// and events, as a run would publish them, without running one. Benchmarks
// of the reads (collider bench api) need a casebook of a province's size —
// a million clues — that no test can afford to collide from settlements.
package casebook

import (
	"context"
	"fmt"

	"collider/domain"
)

// SynthCities are the cities synthetic clues are routed to: Gansu's 14
// cities and prefectures (GB/T 2260).
var SynthCities = []string{"620100", "620200", "620300", "620400", "620500", "620600", "620700",
	"620800", "620900", "621000", "621100", "621200", "622900", "623000"}

// synthBatch is how many clues a synthetic batch holds: a night's batch of a
// province is tens of thousands.
const synthBatch = 50_000

// Synthesize writes n synthetic clues in batches of up to 50,000, each
// batch in one transaction as Publish writes one: the clues, a lead per
// clue routed to one of SynthCities (about a third of them worked on:
// accepted, investigating, closed or returned, each with its events) and
// the batch's totals. It returns the batch ids.
func (c *Casebook) Synthesize(ctx context.Context, n int) ([]int64, error) {
	var ids []int64
	for done := 0; done < n; done += synthBatch {
		id, err := c.synthesizeBatch(ctx, min(synthBatch, n-done), done)
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// synthClues is one batch's clues: every column from a row number i (and
// the batch's first row number, $2), so that the same n gives the same casebook.
const synthClues = `CREATE TEMP TABLE synth_clues AS
WITH r AS (
    SELECT i, i + $2 AS k, CAST(hash(i + $2) >> 1 AS BIGINT) AS h, nextval('casebook.clue_ids') AS clue_id FROM range($3) t(i)
), m AS (
    SELECT *, ['deceased_claims', 'impossible_location', 'overlapping_stays', 'phantom_purchases', 'unknown_identity'][1 + h % 5] AS model,
           ['620100', '620200', '620300', '620400', '620500', '620600', '620700', '620800', '620900', '621000',
            '621100', '621200', '622900', '623000'][1 + (h >> 8) % 14] AS city,
           CASE WHEN (h >> 16) % 10 < 2 THEN 'high' WHEN (h >> 16) % 10 < 5 THEN 'medium' ELSE 'low' END AS severity,
           1 + (h >> 20) % 6 AS settlements,
           TIMESTAMP '2024-01-01' + to_days(CAST((h >> 24) % 600 AS INTEGER)) AS first_visit
    FROM r
)
SELECT clue_id, $1 AS batch_id, model, 'synth' || (1 + h % 5) AS model_version, severity,
       round(((h >> 28) % 1000) / 10.0, 1) AS score,
       CASE model WHEN 'deceased_claims' THEN 'after_death' WHEN 'impossible_location' THEN 'far_from_home'
            WHEN 'overlapping_stays' THEN 'overlapping_inpatient' WHEN 'phantom_purchases' THEN 'no_presence'
            ELSE 'unknown_person' END AS reasons,
       city || '19' || lpad(CAST(50 + (h >> 32) % 50 AS VARCHAR), 2, '0') || '0' || (1 + (h >> 36) % 9) || '1' || (1 + (h >> 40) % 9)
            || lpad(CAST(k % 1000 AS VARCHAR), 3, '0') || CAST(k % 10 AS VARCHAR) AS person_id,
       ['张', '王', '李', '赵', '刘', '陈', '杨', '黄'][1 + (h >> 44) % 8] || ['伟', '芳', '娜', '敏', '静', '强', '磊', '军'][1 + (h >> 48) % 8] AS person_name,
       'H' || city || lpad(CAST((h >> 52) % 400 AS VARCHAR), 4, '0') AS institution_id,
       ['人民医院', '中医医院', '第二人民医院', '康泰大药房', '妇幼保健院'][1 + (h >> 56) % 5] AS institution_name,
       city, settlements,
       list_transform(range(settlements), x -> 'S' || k || '-' || x) AS sids,
       first_visit, first_visit + to_days(CAST(settlements * 3 AS INTEGER)) AS last_visit,
       round(settlements * (300 + (h >> 12) % 2000) * 1.37, 2) AS total_amount,
       round(settlements * (300 + (h >> 12) % 2000) * 0.91, 2) AS fund_amount
FROM m`

// synthInsert writes the batch from synth_clues: clues, leads, events, totals.
var synthInsert = []string{
	`INSERT INTO casebook.clues SELECT clue_id, batch_id, model, model_version, severity, score, reasons, person_id, person_name,
	    institution_id, institution_name, city, settlements, array_to_string(sids, ';'), first_visit, last_visit, total_amount, fund_amount,
	    '参保人' || person_id || '于' || strftime(first_visit, '%Y年%m月%d日') || '至' || strftime(last_visit, '%Y年%m月%d日') || '在' || institution_name
	        || '（' || institution_id || '）结算' || settlements || '次，基金支付' || fund_amount || '元。',
	    CAST(to_json(list_transform(sids, s -> {'settlement_id': s, 'reason': reasons, 'visit_start': strftime(first_visit, '%Y-%m-%dT%H:%M:%S'),
	        'visit_type': 'outpatient', 'institution_id': institution_id, 'total_amount': round(total_amount / settlements, 2),
	        'fund_amount': round(fund_amount / settlements, 2), 'death_date': '2023-11-02', 'days_after_death': 61,
	        'region_code': city, 'distance_km': 412.5})) AS VARCHAR),
	    NULL FROM synth_clues`,
	// About two thirds stay new; the rest are worked on, in the workflow's order.
	`INSERT INTO casebook.leads SELECT clue_id,
	    CASE WHEN clue_id % 30 = 7 THEN '620000' ELSE city END,
	    CASE WHEN clue_id % 30 = 7 THEN 'returned' WHEN clue_id % 6 = 1 THEN 'accepted' WHEN clue_id % 6 = 2 THEN 'investigating'
	         WHEN clue_id % 6 = 3 AND clue_id % 30 <> 7 THEN 'closed' ELSE 'new' END,
	    CASE WHEN clue_id % 6 = 3 AND clue_id % 30 <> 7 THEN ['confirmed', 'dismissed', 'referred'][1 + clue_id % 3] END,
	    CASE WHEN clue_id % 6 = 3 AND clue_id % 30 <> 7 AND clue_id % 3 = 0 THEN fund_amount END,
	    CASE WHEN clue_id % 6 = 3 AND clue_id % 30 <> 7 THEN '已核查，情况如实记录。' WHEN clue_id % 30 = 7 THEN '不属本市管辖。' END,
	    CAST($1 AS TIMESTAMP), CAST(CAST($1 AS TIMESTAMP) + to_days(CASE severity WHEN 'high' THEN 30 ELSE 60 END) AS DATE),
	    CAST($1 AS TIMESTAMP), CASE WHEN clue_id % 6 = 3 AND clue_id % 30 <> 7 THEN CAST($1 AS TIMESTAMP) END
	    FROM synth_clues`,
	`INSERT INTO casebook.lead_events SELECT nextval('casebook.event_ids'), clue_id, CAST($1 AS TIMESTAMP), NULL, 'collider', 'system', 'route',
	    NULL, 'new', city, NULL, NULL, '第 ' || batch_id || ' 批线索' FROM synth_clues`,
	`INSERT INTO casebook.lead_events SELECT nextval('casebook.event_ids'), l.lead_id, CAST($1 AS TIMESTAMP), NULL, '核查员', 'city', a.action,
	    a.from_status, a.to_status, CASE WHEN a.action = 'return' THEN '620000' ELSE c.city END, CASE WHEN a.to_status = 'closed' THEN l.outcome END,
	    CASE WHEN a.to_status = 'closed' THEN l.recovered_amount END, CASE WHEN a.to_status IN ('closed', 'returned') THEN l.note END
	    FROM synth_clues c JOIN casebook.leads l ON l.lead_id = c.clue_id,
	    (VALUES ('accept', 'new', 'accepted', 1), ('investigate', 'accepted', 'investigating', 2), ('close', 'investigating', 'closed', 3),
	            ('return', 'new', 'returned', 9)) a(action, from_status, to_status, rank)
	    WHERE (l.status = 'returned' AND a.rank = 9) OR (l.status <> 'returned' AND a.rank <= CASE l.status WHEN 'accepted' THEN 1
	          WHEN 'investigating' THEN 2 WHEN 'closed' THEN 3 ELSE 0 END)
	    ORDER BY l.lead_id, a.rank`,
	`INSERT INTO casebook.batches SELECT $2, NULL, CAST($1 AS TIMESTAMP), count(*), count(DISTINCT person_id), count(DISTINCT institution_id),
	    coalesce(sum(settlement_count), 0), coalesce(sum(total_amount), 0), coalesce(sum(fund_amount), 0),
	    '[{"model":"deceased_claims","version":"synth1"},{"model":"impossible_location","version":"synth2"},{"model":"overlapping_stays","version":"synth3"},{"model":"phantom_purchases","version":"synth4"},{"model":"unknown_identity","version":"synth5"}]',
	    '[]' FROM casebook.clues WHERE batch_id = $2`,
	`DROP TABLE synth_clues`,
}

func (c *Casebook) synthesizeBatch(ctx context.Context, n, first int) (int64, error) {
	conn, err := c.DB.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var batchID int64
	if err := tx.QueryRowContext(ctx, "SELECT nextval('casebook.batch_ids')").Scan(&batchID); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, synthClues, batchID, first, n); err != nil {
		return 0, fmt.Errorf("synthesize batch %d: clues: %w", batchID, err)
	}
	now := domain.DBTime(c.now())
	for i, q := range synthInsert {
		var args []any
		switch i {
		case 0, len(synthInsert) - 1:
		case len(synthInsert) - 2:
			args = []any{now, batchID}
		default:
			args = []any{now}
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return 0, fmt.Errorf("synthesize batch %d: step %d: %w", batchID, i, err)
		}
	}
	return batchID, c.commitBatch(ctx, tx, batchID)
}
