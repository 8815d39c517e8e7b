"""Operating a cluster: local up/down/status, Ray Jobs submission, replica counts, and what may leave it in a
message (redaction)."""
