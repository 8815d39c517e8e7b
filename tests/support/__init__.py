"""Helpers the tests share: assertions, polling, the LoRA-slot probe run in its own process."""
