"""scheduler_adapter."""
