-- name: unknown_identity
-- title: 身份不存在
-- description: >
--   A settlement whose person has neither a household-registration (residents)
--   record nor a civil-status record (虚构参保人). It runs only when both police
--   feeds have rows: before they are loaded, everyone would look unknown.
--   A person known to either feed is not a clue.
-- # A verdict reads whether the person has police records; that both police
-- # feeds have any rows at all is the one fact about everyone it uses, and a
-- # feed's first rows re-examine every settlement.
-- scope: person
-- params: []
-- reasons:
--   unknown_person: 公安户籍与生存状态均无此人
-- severity:
--   # An invented person is fraud by design; repeated use or a large amount
--   # is high, anything else medium.
--   high: count(*) >= 3 OR sum(fund_amount) >= 5000
--   medium: true
-- narrative:
--   unknown_person: 参保人{person_id}在公安户籍和生存状态记录中均查无此人，{visit_dates}在{institution_name}（{institution_id}）{action}结算{times}，基金支付{fund_amount}元。
SELECT s.settlement_id,
       'unknown_person' AS reason,
       json_object('id_region', substr(s.person_id, 1, 6),
                   'id_birth_date', substr(s.person_id, 7, 4) || '-' || substr(s.person_id, 11, 2) || '-' || substr(s.person_id, 13, 2),
                   'insured_region', s.insured_region,
                   'residents_record', false,
                   'civil_status_record', false) AS evidence
FROM settlements s
WHERE EXISTS (SELECT 1 FROM residents)
  AND EXISTS (SELECT 1 FROM civil_status)
  AND NOT EXISTS (SELECT 1 FROM residents r WHERE r.person_id = s.person_id)
  AND NOT EXISTS (SELECT 1 FROM civil_status c WHERE c.person_id = s.person_id)
