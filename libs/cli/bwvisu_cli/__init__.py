"""bwvisu_cli."""
