"""Prompt-injection detection: rules (`rules`) and the trained classifier (`classifier`); the policy that acts
on them is the serving side's (`serve/services/guardrails.py`)."""
