-- The directory (GET /api/users) pages in the order (name_key, id) and searches by name or
-- email prefix. The keys are case-folded copies the app writes with the row
-- (`app::domain::search_key`), so that both databases fold and compare alike. Rows from before
-- this migration get lower(), which on SQLite folds ASCII only; their next sign-in rewrites
-- them.
ALTER TABLE users ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email_key TEXT NOT NULL DEFAULT '';
UPDATE users SET name_key = lower(name), email_key = lower(email);
-- A page is a range of this index read in order, and so is a search by name prefix.
CREATE INDEX users_directory ON users (name_key, id);
-- A search by email prefix is a range of this one; the order of the matches is in it too, so
-- only the rows of the page are read from the table.
CREATE INDEX users_by_email_key ON users (email_key, name_key, id);
