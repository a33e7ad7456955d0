"""The store: records, objects, the run index, series, durability."""
