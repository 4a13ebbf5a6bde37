"""runner-api's adapters."""
