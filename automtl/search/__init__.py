"""automtl.search."""
