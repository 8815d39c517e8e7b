"""Tests with real components: the live local cluster, vLLM engines, training on real models."""
