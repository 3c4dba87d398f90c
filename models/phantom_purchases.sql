-- name: phantom_purchases
-- title: 虚假购药
-- description: >
--   A pharmacy purchase the person can hardly have made in person (盗刷、空刷医保卡):
--   at a pharmacy whose city is neither the person's hukou city nor a city where
--   the person holds a floating-population registration valid on that date, more
--   than min_distance_km from the hukou seat, and with no location record of the
--   person in the pharmacy's city within presence_days of the purchase. A person
--   without a household-registration record is left to unknown_identity. The
--   evidence names the hukou region, the distance and the person's location
--   record nearest in time to the purchase, wherever it was.
-- # A verdict reads the purchase, its pharmacy, and its person's household,
-- # floating registrations and location records.
-- scope: person
-- params:
--   - name: min_distance_km
--     type: number
--     default: 100
--     description: a pharmacy nearer than this to the hukou seat is within reach
--   - name: presence_days
--     type: integer
--     default: 3
--     description: a location record in the pharmacy's city this many days before or after the purchase explains it
--   - name: repeat_purchases
--     type: integer
--     default: 2
--     description: this many such purchases at one pharmacy within 90 days make the clue high severity
-- reasons:
--   never_there: 异地购药且无在当地的居住或行程记录
-- severity:
--   # Repeated purchases with one card far from home are the pattern of a card
--   # lent or skimmed (the spec's rule); a single large purchase is next.
--   high: max(recent_90d) >= CAST($repeat_purchases AS INTEGER)
--   medium: sum(fund_amount) >= 500
-- narrative:
--   never_there: 参保人{person_id}户籍在{e.hukou_place}，距{institution_name}（{institution_id}）{e.distance_km}公里，当地无其流动人口居住登记，前后{p.presence_days}日内亦无其在当地的行程记录，却于{visit_dates}在该药店购药结算{times}，基金支付{fund_amount}元。
WITH purchases AS (
    -- Purchases away from home: another city than the hukou, and far from its seat.
    SELECT s.settlement_id,
           s.person_id,
           s.visit_start,
           i.region_code AS pharmacy_region,
           i.city_code AS pharmacy_city,
           r.hukou_region,
           r.hukou_city,
           haversine_km(r.hukou_lat, r.hukou_lon, i.point_lat, i.point_lon) AS distance_km
    FROM settlements s
    JOIN institutions i ON i.institution_id = s.institution_id
    JOIN residents r ON r.person_id = s.person_id
    WHERE s.visit_type = 'pharmacy'
      AND i.city_code <> r.hukou_city
      AND haversine_km(r.hukou_lat, r.hukou_lon, i.point_lat, i.point_lon) > CAST($min_distance_km AS DOUBLE)
),
unexplained AS (
    SELECT p.*
    FROM purchases p
    WHERE NOT EXISTS (
              SELECT 1 FROM floating f
              WHERE f.person_id = p.person_id
                AND f.city_code = p.pharmacy_city
                AND f.valid_from <= CAST(p.visit_start AS DATE)
                AND (f.valid_to IS NULL OR f.valid_to >= CAST(p.visit_start AS DATE)))
      AND NOT EXISTS (
              SELECT 1 FROM locations l
              WHERE l.person_id = p.person_id
                AND l.city_code = p.pharmacy_city
                AND l.start_time <= p.visit_start + CAST($presence_days AS INTEGER) * INTERVAL '1' DAY
                AND coalesce(l.end_time, l.start_time) >= p.visit_start - CAST($presence_days AS INTEGER) * INTERVAL '1' DAY)
),
nearest AS (
    -- Where the person really was: the record closest in time to the purchase
    -- (zero hours when the purchase falls inside an interval record).
    SELECT g.*,
           ROW_NUMBER() OVER (PARTITION BY g.settlement_id ORDER BY g.seconds_apart, g.event_id) AS rn
    FROM (
        SELECT u.settlement_id,
               l.event_id,
               l.kind,
               l.start_time,
               l.end_time,
               l.region_code,
               CASE WHEN u.visit_start BETWEEN l.start_time AND coalesce(l.end_time, l.start_time) THEN 0
                    ELSE least(abs(extract(epoch FROM (l.start_time - u.visit_start))),
                               abs(extract(epoch FROM (coalesce(l.end_time, l.start_time) - u.visit_start))))
               END AS seconds_apart
        FROM unexplained u
        JOIN locations l ON l.person_id = u.person_id
    ) g
)
SELECT u.settlement_id,
       'never_there' AS reason,
       json_object('hukou_region', u.hukou_region,
                   'hukou_place', coalesce(coalesce(nullif(hg.city, '市辖区'), hg.province, '') || hg.name, u.hukou_region),
                   'hukou_city', u.hukou_city,
                   'pharmacy_region', u.pharmacy_region,
                   'pharmacy_city', u.pharmacy_city,
                   'distance_km', round(u.distance_km, 1),
                   'nearest_record', CASE WHEN n.event_id IS NULL THEN NULL
                                          ELSE json_object('event_id', n.event_id,
                                                           'kind', n.kind,
                                                           'start_time', n.start_time,
                                                           'end_time', n.end_time,
                                                           'region_code', n.region_code,
                                                           'place', CASE WHEN n.kind = 'abroad' THEN '境外'
                                                                         ELSE coalesce(coalesce(nullif(ng.city, '市辖区'), ng.province, '') || ng.name, n.region_code) END,
                                                           'hours_apart', round(n.seconds_apart / 3600.0, 1)) END) AS evidence
FROM unexplained u
LEFT JOIN nearest n ON n.settlement_id = u.settlement_id AND n.rn = 1
LEFT JOIN regions hg ON hg.code = u.hukou_region
LEFT JOIN regions ng ON ng.code = n.region_code
