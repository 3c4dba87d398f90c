-- The statements that group a model's new, unsuppressed flags into clues
-- (runner.go, clueSteps). Each is a temp table, so that DuckDB can spill
-- it: sorts and fixed-size aggregates spill to disk, but list aggregates
-- hold every group in memory, so lists are built only for the clues that
-- have more than one settlement. Each statement follows its step line;
-- the template fields are the run's temp tables and the model's severity rules
-- and narrative, filled in by text/template; $collider_model and
-- $collider_version are bound.

-- step: order settlements
-- One row per settlement with its position rn in the clue, the clue's
-- size, and its item of the clue's evidence list.
CREATE OR REPLACE TEMP TABLE {{.Ordered}} AS
SELECT w.*,
       CAST(json_object('n', w.rn, 'settlement_id', w.settlement_id, 'reason', w.reason,
            'visit_type', w.visit_type, 'visit_start', w.visit_start, 'visit_end', w.visit_end,
            'total_amount', w.total_amount, 'fund_amount', w.fund_amount, 'evidence', w.evidence) AS VARCHAR) AS item
FROM (
    SELECT x.* EXCLUDE (model, issued, suppressed),
           row_number() OVER (PARTITION BY person_id, institution_id ORDER BY visit_start, settlement_id) AS rn,
           count(*) OVER (PARTITION BY person_id, institution_id) AS clue_size,
           count(*) OVER (PARTITION BY person_id, institution_id ORDER BY visit_start
                          RANGE BETWEEN INTERVAL 90 DAYS PRECEDING AND CURRENT ROW) AS recent_90d
    FROM {{.Rows}} x
    WHERE x.model = $collider_model AND NOT x.issued AND NOT x.suppressed
) w

-- step: sum clues
CREATE OR REPLACE TEMP TABLE {{.Sums}} AS
SELECT person_id, institution_id,
       count(*) AS settlement_count,
       min(visit_start) AS first_visit,
       max(visit_start) AS last_visit,
       CAST(sum(total_amount) AS DECIMAL(18,2)) AS total_amount,
       CAST(sum(fund_amount) AS DECIMAL(18,2)) AS fund_amount,
       max(person_name) AS settlement_name,
       max(resident_name) AS resident_name,
       CASE WHEN {{.High}} THEN 'high' WHEN {{.Medium}} THEN 'medium' ELSE 'low' END AS severity
FROM {{.Ordered}}
GROUP BY person_id, institution_id

-- step: list settlements
-- Lists are sorted rather than aggregated with ORDER BY, which sorts per
-- group and costs ten times more; each item carries its position rn as a
-- 10-digit prefix, removed after sorting. Evidence items are joined with
-- the record separator, which JSON text never holds raw.
CREATE OR REPLACE TEMP TABLE {{.Lists}} AS
SELECT person_id, institution_id,
       regexp_replace(array_to_string(list_sort(list(lpad(CAST(rn AS VARCHAR), 10, '0') || settlement_id)), ';'),
                      '(^|;)[0-9]{10}', '\1', 'g') AS settlement_ids,
       array_to_string(list_sort(list_distinct(list(reason))), ';') AS reasons,
       replace(regexp_replace(array_to_string(list_sort(list(lpad(CAST(rn AS VARCHAR), 10, '0') || item)), chr(30)),
                              '(^|\x1e)[0-9]{10}', '\1', 'g'), chr(30), ',') AS items
FROM {{.Ordered}}
WHERE clue_size > 1
GROUP BY person_id, institution_id

-- step: number clues
CREATE OR REPLACE TEMP TABLE {{.Numbers}} AS
SELECT person_id, institution_id,
       round(CASE severity WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END
             * CAST(fund_amount AS DOUBLE) * settlement_count, 2) AS score,
       row_number() OVER (ORDER BY CASE severity WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END
                                   * CAST(fund_amount AS DOUBLE) * settlement_count DESC,
                                   person_id, institution_id) AS clue_no
FROM {{.Sums}}

-- step: group clues
CREATE OR REPLACE TEMP TABLE {{.Clues}} AS
WITH c AS (
    SELECT n.clue_no, n.score, g.*,
           coalesce(g.settlement_name, g.resident_name) AS person_name,
           coalesce(i.name, '未登记机构') AS institution_name,
           -- 线索下发市州: the institution's city; a province-level or unknown
           -- institution goes to the province (its code's first two digits).
           CASE WHEN i.region_code IS NULL THEN substr(g.institution_id, 2, 2) || '0000'
                WHEN i.region_code LIKE '__0000' THEN i.region_code
                ELSE i.city_code END AS city_code,
           rep.reason AS rep_reason,
           CAST(rep.evidence AS VARCHAR) AS rep_evidence,
           rep.visit_type AS rep_visit_type,
           rep.visit_start AS rep_visit_start,
           rep.visit_end AS rep_visit_end,
           coalesce(l.settlement_ids, rep.settlement_id) AS settlement_ids,
           coalesce(l.reasons, rep.reason) AS reasons,
           '[' || coalesce(l.items, rep.item) || ']' AS evidence_list
    FROM {{.Sums}} g
    JOIN {{.Numbers}} n ON n.person_id = g.person_id AND n.institution_id = g.institution_id
    JOIN {{.Ordered}} rep ON rep.person_id = g.person_id AND rep.institution_id = g.institution_id AND rep.rn = 1
    LEFT JOIN {{.Lists}} l ON l.person_id = g.person_id AND l.institution_id = g.institution_id
    LEFT JOIN institutions i ON i.institution_id = g.institution_id
)
SELECT CAST(c.clue_no AS BIGINT) AS clue_no,
       CAST($collider_model AS VARCHAR) AS model,
       CAST($collider_version AS VARCHAR) AS model_version,
       c.severity, c.score, c.reasons, c.person_id, c.person_name, c.institution_id, c.institution_name,
       c.city_code, CAST(c.settlement_count AS INTEGER) AS settlement_count, c.settlement_ids,
       c.first_visit, c.last_visit, c.total_amount, c.fund_amount,
       {{.Narrative}} AS narrative,
       c.evidence_list AS evidence
FROM c

-- step: link clue settlements
CREATE OR REPLACE TEMP TABLE {{.ClueSettlements}} AS
SELECT n.clue_no, CAST($collider_model AS VARCHAR) AS model, x.settlement_id
FROM {{.Ordered}} x JOIN {{.Numbers}} n ON n.person_id = x.person_id AND n.institution_id = x.institution_id
