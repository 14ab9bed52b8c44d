"""Reporting: result folders turned into summaries, comparisons, one run's HTML page and the docs' generated pages."""
