"""The demo's tasks: the JSON-extraction fine-tuning task and its scoring."""
