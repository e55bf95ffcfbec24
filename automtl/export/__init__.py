"""automtl.export."""
