"""Documents: parsing, chunking and the one ingest pipeline (the ingress and the ingestion job both run it); the
installed packages' docs as a corpus."""
