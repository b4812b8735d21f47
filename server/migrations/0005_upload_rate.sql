-- Each user's allowance of upload URLs when several servers share this database (PostgreSQL;
-- one server keeps it in memory): the generic cell rate algorithm's "theoretical arrival time"
-- of the user's next URL, in milliseconds of the database's clock. See server/src/rate.rs.
CREATE TABLE upload_rate (
    user_id TEXT PRIMARY KEY,
    tat_ms  BIGINT NOT NULL
);
