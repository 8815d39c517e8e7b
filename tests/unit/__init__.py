"""Fast tests: no cluster and no engine (some read a prepared tokenizer)."""
