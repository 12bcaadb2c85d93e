-- The API always refused empty content; the table now says so too (found by comparing the entity
-- declarations with the database, tests/test_declarations.py). NOT VALID: rows written before are
-- not re-checked, every write from now on is.
alter table knowledge add constraint knowledge_content_not_empty check (char_length(content) >= 1) not valid;
