"""The public shapes: pydantic request/response models, one file per router; OpenAI-compatible ones use OpenAI's
field names."""
