-- Webhook sources. A source's secrets are sealed with AES-256-GCM under a
-- key the host holds (never in the database): each element of `secrets`
-- is {"key": key id, "nonce": base64, "sealed": base64 of ciphertext and
-- tag}, its additional data the source's id.
CREATE TABLE __SCHEMA__.sources (
    id text PRIMARY KEY,
    organization text NOT NULL,
    environment text NOT NULL,
    process uuid NOT NULL,
    scheme jsonb NOT NULL,
    events text[],
    secrets jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
