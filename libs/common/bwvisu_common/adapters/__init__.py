"""Adapters for the shared ports, named after the technology they use."""
