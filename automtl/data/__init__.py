"""automtl.data."""
