"""Evaluation: the test-set format, the metrics, the statistics, the cost model and the recommendation rules
(`ragtune eval` runs test sets through every route and hands what it measured to these)."""
