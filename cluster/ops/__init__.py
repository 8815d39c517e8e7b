"""Operating a cluster: local up/down/status, Ray Jobs submission, replica counts."""
