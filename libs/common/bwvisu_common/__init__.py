"""bwvisu_common."""
