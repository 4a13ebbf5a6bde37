"""Building blocks of the bwvisu minicluster (stdlib only, run as root)."""
