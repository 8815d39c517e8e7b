-- API keys (Authorization: Bearer ...): only a SHA-256 of each key is kept; the key itself is shown once.
CREATE TABLE api_keys (
    id          text PRIMARY KEY,                 -- key-<hex>; what `ragtune keys list/revoke` name
    name        text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('use', 'admin')),
    prefix      text NOT NULL,                    -- the key's first characters, to tell keys apart
    hash        text NOT NULL UNIQUE,             -- sha256 hex of the whole key
    internal    boolean NOT NULL DEFAULT false,   -- the cluster's own (eval jobs calling the ingress)
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_active_idx ON api_keys (internal) WHERE revoked_at IS NULL;
