"""One Ray Serve deployment per file (Embedder, Reranker, LLMServer, JobDispatcher) and what they own: engines,
models, the queue loop."""
