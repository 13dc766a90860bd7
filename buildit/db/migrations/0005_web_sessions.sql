-- Web UI sessions, kept on the server so that logging out ends them.
--
-- The login cookie (quart-auth) carries a random session id; only its SHA-256 is
-- stored, like API tokens. A request is logged in while its row exists and has not
-- expired: logging out deletes the row, so a copy of the cookie taken before stops
-- working. Expired rows are deleted whenever a session starts.
CREATE TABLE web_sessions (
    id_hash    bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
