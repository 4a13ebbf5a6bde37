"""web_portal."""
