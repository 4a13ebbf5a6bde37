"""Pure decisions of keyhole-api: verification and allocation, no I/O."""
