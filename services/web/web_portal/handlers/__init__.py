"""What reacts to the portal's requests: its pages and forms, one module per area."""
