-- Acronyms each document defines ("Pluggable Authentication Modules (PAM)"), mined at ingestion
-- (cluster/content/glossary.py) and written in the document's transaction; query rewriting reads them.
CREATE TABLE glossary (
    document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    acronym      text NOT NULL,
    expansion    text NOT NULL,
    PRIMARY KEY (document_id, acronym, expansion)
);
CREATE INDEX glossary_acronym_idx ON glossary (acronym);
