"""automtl.report."""
