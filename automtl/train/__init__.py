"""automtl.train."""
