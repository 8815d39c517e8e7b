-- BM25 for the keyword side of hybrid search (ts_rank_cd has no IDF and no length normalisation).
-- Terms: English stems of the text with identifiers split at . _ / : (so "os.path.join" also matches "path"),
-- plus every code identifier and command-line option kept whole and exact, prefixed "=" ("=lru_cache",
-- "=--threshold"), so a query naming one ranks the chunks that name it exactly above those sharing its parts.
-- One function builds the terms of chunks (at write time, by trigger) and of queries (at search time).
CREATE FUNCTION ragtune_terms(body text) RETURNS TABLE (term text, tf int)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT lexeme, coalesce(array_length(positions, 1), 1)
    FROM unnest(to_tsvector('english', regexp_replace(body, '([[:alnum:]])[._/:]+(?=[[:alnum:]])', '\1 ', 'g')))
    UNION ALL
    SELECT '=' || m[1], count(*)::int
    FROM regexp_matches(lower(body),
                        '(?:^|[^[:alnum:]_-])(--?[a-z][a-z0-9-]*[a-z0-9]|-[a-z]|[a-z][a-z0-9]*(?:[_.:][a-z0-9]+)+)',
                        'g') AS m
    GROUP BY m[1]
$$;

-- Postings: one row per (term, chunk), with what BM25 needs of the chunk (its length in terms) and what the
-- search filters need (its document), so scoring reads postings only.
CREATE TABLE chunk_terms (
    term         text NOT NULL,
    chunk_id     bigint NOT NULL REFERENCES chunks (id) ON DELETE CASCADE,
    document_id  uuid NOT NULL,
    tf           int NOT NULL,
    chunk_len    int NOT NULL,
    PRIMARY KEY (term, chunk_id)
);
CREATE INDEX chunk_terms_chunk_idx ON chunk_terms (chunk_id);

-- Corpus statistics (chunk count, total length) kept per document, so concurrent writers of different
-- documents never wait on one shared row; a search sums them.
CREATE TABLE term_stats (
    document_id  uuid PRIMARY KEY,
    chunks       bigint NOT NULL,
    terms        bigint NOT NULL
);

CREATE FUNCTION chunks_add_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH t AS (SELECT n.id, n.document_id, x.term, x.tf FROM new_chunks n, ragtune_terms(n.text) x),
         l AS (SELECT id, sum(tf)::int AS len FROM t GROUP BY id),
         postings AS (INSERT INTO chunk_terms (term, chunk_id, document_id, tf, chunk_len)
                      SELECT t.term, t.id, t.document_id, t.tf, l.len FROM t JOIN l USING (id))
    INSERT INTO term_stats AS s (document_id, chunks, terms)
    SELECT n.document_id, count(*), coalesce(sum(l.len), 0) FROM new_chunks n LEFT JOIN l ON l.id = n.id
    GROUP BY n.document_id
    ON CONFLICT (document_id) DO UPDATE SET chunks = s.chunks + excluded.chunks, terms = s.terms + excluded.terms;
    RETURN NULL;
END $$;

-- Postings go by the foreign key's cascade; the statistics are taken back here.
CREATE FUNCTION chunks_remove_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE term_stats s SET chunks = s.chunks - d.chunks, terms = s.terms - d.terms
    FROM (SELECT o.document_id, count(*) AS chunks,
                 coalesce(sum((SELECT sum(x.tf) FROM ragtune_terms(o.text) x)), 0) AS terms
          FROM old_chunks o GROUP BY o.document_id) d
    WHERE s.document_id = d.document_id;
    DELETE FROM term_stats WHERE chunks <= 0;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_add_terms AFTER INSERT ON chunks REFERENCING NEW TABLE AS new_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_add_terms();
CREATE TRIGGER chunks_remove_terms AFTER DELETE ON chunks REFERENCING OLD TABLE AS old_chunks
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_remove_terms();

-- Chunks written before this migration.
WITH t AS (SELECT c.id, c.document_id, x.term, x.tf FROM chunks c, ragtune_terms(c.text) x),
     l AS (SELECT id, sum(tf)::int AS len FROM t GROUP BY id),
     postings AS (INSERT INTO chunk_terms (term, chunk_id, document_id, tf, chunk_len)
                  SELECT t.term, t.id, t.document_id, t.tf, l.len FROM t JOIN l USING (id))
INSERT INTO term_stats (document_id, chunks, terms)
SELECT c.document_id, count(*), coalesce(sum(l.len), 0) FROM chunks c LEFT JOIN l ON l.id = c.id
GROUP BY c.document_id;
