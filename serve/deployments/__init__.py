"""One Ray Serve deployment per file (Embedder, Reranker, LLMServer, FineTuneDispatcher) and what they own: engines,
models, the queue loop."""
