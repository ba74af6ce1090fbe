-- A source's rules over its deliveries: the mapping of the sender's
-- payload into the start form, conditions, the query of the delivery id
-- ({"map": [{"field", "query"}], "body_variable", "when": [{"path",
-- "equals"}], "delivery"}); NULL: none.
ALTER TABLE __SCHEMA__.sources ADD COLUMN rules jsonb;
