"""Fine-tuning data and the training job's progress lines: validation with line numbers, and the progress-line
format (writer and parser)."""
