-- name: deceased_claims
-- title: 死亡人员冒用结算
-- description: >
--   A settlement whose visit began after the insured person died (公安生存状态
--   deceased, visit_start date later than death_date + grace_days), or after the
--   person's household registration was cancelled (status cancelled, using
--   updated_at as the date). Only the visit's start counts: an admission before
--   death with a discharge or settlement after it is not a clue, and neither is
--   a purchase on the death date itself. A death record that arrives months late
--   re-examines every settlement of that person, however old, and so still finds
--   the payments made after the death.
-- # A verdict reads the settlement and its person's civil status only: a
-- # death recorded months late re-examines that person's settlements.
-- scope: person
-- params:
--   - name: grace_days
--     type: integer
--     default: 0
--     description: days after the death (or cancellation) date still accepted, for late-recorded visits
-- reasons:
--   after_death: 死亡后发生结算
--   hukou_cancelled: 户籍注销后发生结算
-- severity:
--   # A claim a month or more after the death is no clerical slip; several
--   # claims, or a large one, deserve a look soon; a single small claim within
--   # days of the death may be a wrong date in either feed.
--   high: max(coalesce(CAST(evidence->>'days_after_death' AS INTEGER), CAST(evidence->>'days_after_cancelled' AS INTEGER))) >= 30
--   medium: count(*) >= 2 OR sum(fund_amount) >= 1000
-- narrative:
--   after_death: 参保人{person_id}于{e.death_date}死亡（公安生存状态），{visit_dates}在{institution_name}（{institution_id}）{action}结算{times}，基金支付{fund_amount}元。
--   hukou_cancelled: 参保人{person_id}户籍已于{e.cancelled_date}注销（公安生存状态），{visit_dates}在{institution_name}（{institution_id}）{action}结算{times}，基金支付{fund_amount}元。
WITH ended AS (
    -- Only the few persons with a death or a cancellation: a small build side
    -- for the join with tens of millions of settlements.
    SELECT person_id,
           status,
           CASE WHEN status = 'deceased' THEN death_date ELSE CAST(updated_at AS DATE) END AS end_date
    FROM civil_status
    WHERE (status = 'deceased' AND death_date IS NOT NULL)
       OR (status = 'cancelled' AND updated_at IS NOT NULL)
)
SELECT s.settlement_id,
       CASE WHEN e.status = 'deceased' THEN 'after_death' ELSE 'hukou_cancelled' END AS reason,
       CASE WHEN e.status = 'deceased'
            THEN json_object('death_date', e.end_date,
                             'days_after_death', CAST(s.visit_start AS DATE) - e.end_date,
                             'visit_date', CAST(s.visit_start AS DATE))
            ELSE json_object('cancelled_date', e.end_date,
                             'days_after_cancelled', CAST(s.visit_start AS DATE) - e.end_date,
                             'visit_date', CAST(s.visit_start AS DATE))
       END AS evidence
FROM settlements s
JOIN ended e ON e.person_id = s.person_id
WHERE CAST(s.visit_start AS DATE) - e.end_date > CAST($grace_days AS INTEGER)
