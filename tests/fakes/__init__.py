"""In-memory fakes of bwvisu's ports, one module per port, for tests and benchmarks.

Nothing under libs/ or services/ imports them. tests/contract holds each fake to its real adapter,
so a fake that drifts from what the real one does fails there, not in a unit test that trusted it."""
