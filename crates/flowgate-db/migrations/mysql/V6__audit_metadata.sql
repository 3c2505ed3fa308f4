-- What the client said about itself (the agent session a request belongs to), as a JSON object.
-- Existing records have none.
ALTER TABLE audit_records ADD COLUMN metadata LONGTEXT NOT NULL DEFAULT ('{}');
