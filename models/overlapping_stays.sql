-- name: overlapping_stays
-- title: 住院时间重叠
-- description: >
--   Two inpatient stays of the same person at different institutions that
--   overlap by more than overlap_hours (一人多床、冒名住院). Both settlements of
--   the pair are flagged, each naming the other; a stay overlapping several
--   others names the one it overlaps most. Back-to-back stays (a transfer, the
--   discharge at one the admission at the other) and short overlaps are not
--   clues. Stays without a discharge time cannot overlap and are left out.
-- # A verdict reads the person's other stays and their institutions' names.
-- scope: person
-- params:
--   - name: overlap_hours
--     type: number
--     default: 24
--     description: an overlap this long or shorter is a transfer, not a clue
-- reasons:
--   overlap: 同一时段在两家机构住院
-- severity:
--   # A week in two beds at once is no transfer; three days or more, or a large
--   # amount, is serious; a little over a day may still be paperwork.
--   high: max(CAST(evidence->>'overlap_hours' AS DOUBLE)) >= 168
--   medium: max(CAST(evidence->>'overlap_hours' AS DOUBLE)) >= 72 OR sum(fund_amount) >= 10000
-- narrative:
--   overlap: 参保人{person_id}于{visit_dates}在{institution_name}（{institution_id}）住院，与其同期在{e.other_institution_name}（{e.other_institution_id}）的住院重叠{e.overlap_hours}小时，基金支付{fund_amount}元。
WITH stays AS (
    SELECT settlement_id, person_id, institution_id, visit_start, visit_end
    FROM settlements
    WHERE visit_type = 'inpatient'
      AND visit_end IS NOT NULL
),
pairs AS (
    SELECT a.settlement_id,
           b.settlement_id AS other_settlement_id,
           b.institution_id AS other_institution_id,
           b.visit_start AS other_visit_start,
           b.visit_end AS other_visit_end,
           extract(epoch FROM (least(a.visit_end, b.visit_end) - greatest(a.visit_start, b.visit_start))) / 3600.0 AS overlap_hours
    FROM stays a
    JOIN stays b ON b.person_id = a.person_id
    WHERE b.settlement_id <> a.settlement_id
      AND b.institution_id <> a.institution_id
      AND b.visit_start < a.visit_end
      AND a.visit_start < b.visit_end
),
ranked AS (
    SELECT p.*,
           ROW_NUMBER() OVER (PARTITION BY p.settlement_id ORDER BY p.overlap_hours DESC, p.other_settlement_id) AS rn
    FROM pairs p
    WHERE p.overlap_hours > CAST($overlap_hours AS DOUBLE)
)
SELECT r.settlement_id,
       'overlap' AS reason,
       json_object('other_settlement_id', r.other_settlement_id,
                   'other_institution_id', r.other_institution_id,
                   'other_institution_name', coalesce(i.name, r.other_institution_id),
                   'other_visit_start', r.other_visit_start,
                   'other_visit_end', r.other_visit_end,
                   'overlap_hours', round(r.overlap_hours, 1)) AS evidence
FROM ranked r
LEFT JOIN institutions i ON i.institution_id = r.other_institution_id
WHERE r.rn = 1
