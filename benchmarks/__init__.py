"""`make bench`: datmo's performance targets, each a ratio to a reference timed in the same run."""
