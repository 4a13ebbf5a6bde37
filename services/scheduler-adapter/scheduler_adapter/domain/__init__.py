"""Pure decisions of scheduler-adapter: submit, cancel, watch, render, users, secrets. No I/O."""
