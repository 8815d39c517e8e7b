"""Pipelines behind the routers, without FastAPI: knowledge (search), generation (routes, prompts, citations), fine-
tuning."""
