"""Postgres and object storage: the database and its migrations, knowledge-base SQL, the fine-tuning queue, training
files, adapters."""
