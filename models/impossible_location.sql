-- name: impossible_location
-- title: 就医时空矛盾
-- description: >
--   A visit the person cannot have made, by the police location records
--   (虚假住院、冒名就医、挂床住院). The visit is [visit_start, visit_end] for an
--   inpatient stay and the instant visit_start otherwise.
--   in_custody / abroad: a custody or abroad record whose interval overlaps the
--   visit (an open end_time means still there).
--   away_during_stay: during an inpatient stay, a hotel, rail or flight record
--   whose start_time lies strictly inside (visit_start + margin_hours,
--   visit_end - margin_hours), more than min_distance_km from the institution.
--   unreachable: a hotel, rail or flight record within window_hours of an
--   outpatient or pharmacy visit, more than min_distance_km away, so that the
--   distance divided by the hours between them (at least 0.25) exceeds
--   max_speed_kmh.
--   When several records contradict one visit, the strongest is shown:
--   custody, then abroad, then away during the stay, then unreachable; the
--   farthest or fastest first within each.
-- # A verdict reads the settlement, its institution's point and its person's
-- # location records: a custody record arriving after the visit, or an
-- # institution's corrected position, re-examines the settlements concerned.
-- scope: person
-- params:
--   - name: margin_hours
--     type: number
--     default: 6
--     description: hours after admission and before discharge in which a record elsewhere is not a contradiction
--   - name: min_distance_km
--     type: number
--     default: 100
--     description: a record nearer than this to the institution contradicts nothing
--   - name: window_hours
--     type: number
--     default: 12
--     description: how far in time from an outpatient or pharmacy visit a record is compared with it
--   - name: max_speed_kmh
--     type: number
--     default: 300
--     description: fastest plausible travel between the record and the visit
-- reasons:
--   in_custody: 羁押期间就医结算
--   abroad: 出境期间就医结算
--   away_during_stay: 住院期间人在外地（挂床住院）
--   unreachable: 就医时间地点与行程记录矛盾
-- severity:
--   # Custody and stays abroad are hard facts; so is a large amount. A stay
--   # the person left is strong too, as are repeated impossible visits; a single
--   # fast trip may be a record with a wrong time.
--   high: bool_or(reason IN ('in_custody', 'abroad')) OR sum(fund_amount) >= 10000
--   medium: bool_or(reason = 'away_during_stay') OR count(*) >= 2
-- narrative:
--   in_custody: 参保人{person_id}自{e.start_time}起在{e.place}处于羁押状态（公安记录{e.event_id}），其间{visit_dates}却在{institution_name}（{institution_id}）{action}结算{times}，基金支付{fund_amount}元。
--   abroad: 参保人{person_id}自{e.start_time}起在境外（公安出入境记录{e.event_id}），其间{visit_dates}却在{institution_name}（{institution_id}）{action}结算{times}，基金支付{fund_amount}元。
--   away_during_stay: 参保人{person_id}于{visit_dates}在{institution_name}（{institution_id}）住院期间，{e.record_time}在{e.place}（距该院{e.distance_km}公里）有{e.record_kind}记录（{e.event_id}），疑似挂床住院，住院结算{count}次，基金支付{fund_amount}元。
--   unreachable: 参保人{person_id}于{e.record_time}在{e.place}有{e.record_kind}记录（{e.event_id}），相隔{e.hours_apart}小时却在{e.distance_km}公里外的{institution_name}（{institution_id}）{action}结算（需时速{e.speed_kmh}公里），基金支付{fund_amount}元。
WITH visits AS (
    SELECT s.settlement_id,
           s.person_id,
           s.visit_type,
           s.visit_start,
           CASE WHEN s.visit_type = 'inpatient' AND s.visit_end IS NOT NULL THEN s.visit_end ELSE s.visit_start END AS visit_end,
           i.point_lat,
           i.point_lon
    FROM settlements s
    LEFT JOIN institutions i ON i.institution_id = s.institution_id
),
interval_hits AS (
    -- Custody and abroad records are few: joined to every visit of the person.
    SELECT v.settlement_id,
           CASE WHEN l.kind = 'custody' THEN 'in_custody' ELSE 'abroad' END AS reason,
           CASE WHEN l.kind = 'custody' THEN 1 ELSE 2 END AS priority,
           CAST(0 AS DOUBLE) AS strength,
           l.event_id,
           json_object('event_id', l.event_id,
                       'kind', l.kind,
                       'start_time', l.start_time,
                       'end_time', l.end_time,
                       'region_code', l.region_code,
                       'place', CASE WHEN l.kind = 'abroad' THEN '境外'
                                     ELSE coalesce(coalesce(nullif(g.city, '市辖区'), g.province, '') || g.name, l.region_code) END) AS evidence
    FROM visits v
    JOIN locations l ON l.person_id = v.person_id
    LEFT JOIN regions g ON g.code = l.region_code
    WHERE l.kind IN ('custody', 'abroad')
      AND l.start_time <= v.visit_end
      AND (l.end_time IS NULL OR l.end_time > v.visit_start)
),
point_pairs AS (
    -- Point records near the visit in time: inside the stay for inpatients,
    -- within the window otherwise. Time is filtered in the join, distance after.
    SELECT v.settlement_id,
           v.visit_type,
           v.visit_start,
           v.visit_end,
           l.event_id,
           l.kind,
           l.start_time,
           l.region_code,
           coalesce(coalesce(nullif(g.city, '市辖区'), g.province, '') || g.name, l.region_code) AS place,
           haversine_km(v.point_lat, v.point_lon, l.point_lat, l.point_lon) AS distance_km,
           abs(extract(epoch FROM (l.start_time - v.visit_start))) / 3600.0 AS hours_apart
    FROM visits v
    JOIN locations l ON l.person_id = v.person_id
    LEFT JOIN regions g ON g.code = l.region_code
    WHERE l.kind IN ('hotel', 'rail', 'flight')
      AND ((v.visit_type = 'inpatient'
            AND l.start_time > v.visit_start + CAST($margin_hours AS DOUBLE) * INTERVAL '1' HOUR
            AND l.start_time < v.visit_end - CAST($margin_hours AS DOUBLE) * INTERVAL '1' HOUR)
        OR (v.visit_type <> 'inpatient'
            AND l.start_time >= v.visit_start - CAST($window_hours AS DOUBLE) * INTERVAL '1' HOUR
            AND l.start_time <= v.visit_start + CAST($window_hours AS DOUBLE) * INTERVAL '1' HOUR))
),
point_hits AS (
    SELECT settlement_id,
           CASE WHEN visit_type = 'inpatient' THEN 'away_during_stay' ELSE 'unreachable' END AS reason,
           CASE WHEN visit_type = 'inpatient' THEN 3 ELSE 4 END AS priority,
           CASE WHEN visit_type = 'inpatient' THEN distance_km ELSE distance_km / greatest(hours_apart, 0.25) END AS strength,
           event_id,
           CASE WHEN visit_type = 'inpatient'
                THEN json_object('event_id', event_id,
                                 'kind', kind,
                                 'record_kind', CASE kind WHEN 'hotel' THEN '旅馆住宿' WHEN 'rail' THEN '铁路乘车' ELSE '民航乘机' END,
                                 'record_time', start_time,
                                 'region_code', region_code,
                                 'place', place,
                                 'distance_km', round(distance_km, 1),
                                 'hours_after_admission', round(extract(epoch FROM (start_time - visit_start)) / 3600.0, 1),
                                 'hours_before_discharge', round(extract(epoch FROM (visit_end - start_time)) / 3600.0, 1))
                ELSE json_object('event_id', event_id,
                                 'kind', kind,
                                 'record_kind', CASE kind WHEN 'hotel' THEN '旅馆住宿' WHEN 'rail' THEN '铁路乘车' ELSE '民航乘机' END,
                                 'record_time', start_time,
                                 'region_code', region_code,
                                 'place', place,
                                 'distance_km', round(distance_km, 1),
                                 'hours_apart', round(hours_apart, 2),
                                 'speed_kmh', CAST(round(distance_km / greatest(hours_apart, 0.25)) AS INTEGER))
           END AS evidence
    FROM point_pairs
    WHERE distance_km > CAST($min_distance_km AS DOUBLE)
      AND (visit_type = 'inpatient'
           OR distance_km / greatest(hours_apart, 0.25) > CAST($max_speed_kmh AS DOUBLE))
),
ranked AS (
    SELECT h.settlement_id,
           h.reason,
           h.evidence,
           ROW_NUMBER() OVER (PARTITION BY h.settlement_id ORDER BY h.priority, h.strength DESC, h.event_id) AS rn
    FROM (SELECT * FROM interval_hits UNION ALL SELECT * FROM point_hits) h
)
SELECT settlement_id, reason, evidence
FROM ranked
WHERE rn = 1
