"""keyhole_api."""
