-- The semantic cache: answers keyed by everything that changes them (scope), found by the question's embedding,
-- and removed in the same transaction as any change to a document they were answered from.

-- The knowledge base's version: moved by every document created, changed or deleted (the trigger below), so an
-- entry can require the knowledge base it was answered from.
CREATE TABLE knowledge_state (
    id                   boolean PRIMARY KEY DEFAULT true CHECK (id),
    version              bigint NOT NULL DEFAULT 0,
    cache_invalidations  bigint NOT NULL DEFAULT 0      -- entries removed because a source document changed
);
INSERT INTO knowledge_state DEFAULT VALUES;

CREATE TABLE semantic_cache (
    id           bigserial PRIMARY KEY,
    scope        text NOT NULL,                 -- sha256 of route, model@version, sampling, retrieval, conversation, tenant
    model        text NOT NULL,                 -- the base model or the adapter's name@version that answered
    question     text NOT NULL,                 -- the last user message (or the prompt), as asked
    embedding    vector({{embedding_dim}}) NOT NULL,
    answer       jsonb NOT NULL,                -- text, finish_reason, usage, citations, applied
    kb_version   bigint,                        -- knowledge_state.version it was answered from (NULL: no retrieval)
    hits         bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_hit_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX semantic_cache_scope_idx ON semantic_cache (scope);
CREATE INDEX semantic_cache_model_idx ON semantic_cache (model);
CREATE INDEX semantic_cache_lru_idx ON semantic_cache (last_hit_at);

-- Every document whose chunks were in the entry's prompt, with the content hash they had.
CREATE TABLE semantic_cache_sources (
    entry_id      bigint NOT NULL REFERENCES semantic_cache (id) ON DELETE CASCADE,
    document_id   uuid NOT NULL,
    content_hash  text NOT NULL,
    PRIMARY KEY (entry_id, document_id)
);
CREATE INDEX semantic_cache_sources_document_idx ON semantic_cache_sources (document_id);

-- Any writer of documents (the API, the ingest job, plain SQL) invalidates through this, in its own transaction.
-- Writers hold the shared side of the CACHE_WRITE advisory lock (cluster/store/cache.py) until they commit; storing
-- an entry takes the exclusive side, so it never reads a document's hash while a change to it is uncommitted (the
-- change's DELETE could not see the entry, and the entry would outlive it).
CREATE FUNCTION knowledge_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gone bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(72410008);
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        WITH removed AS (
            DELETE FROM semantic_cache
            WHERE id IN (SELECT entry_id FROM semantic_cache_sources WHERE document_id = OLD.id)
            RETURNING 1)
        SELECT count(*) INTO gone FROM removed;
    END IF;
    UPDATE knowledge_state SET version = version + 1, cache_invalidations = cache_invalidations + gone;
    RETURN NULL;
END
$$;
CREATE TRIGGER documents_written AFTER INSERT OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION knowledge_changed();
CREATE TRIGGER documents_content_changed AFTER UPDATE OF content_hash ON documents
    FOR EACH ROW WHEN (OLD.content_hash IS DISTINCT FROM NEW.content_hash) EXECUTE FUNCTION knowledge_changed();
