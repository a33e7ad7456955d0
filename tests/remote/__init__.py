"""Remotes: push, pull, clone, bundles and export, against real services."""
