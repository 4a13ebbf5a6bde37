"""Pure decisions of the gateway agent: no I/O, no asyncio."""
