"""Pure decisions of runner-api: what a request says, what it decides, what a job answers. No I/O."""
