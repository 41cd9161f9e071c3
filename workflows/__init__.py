"""End-to-end scripts over every package: the quick start's serving demo (`python -m workflows.demo`)."""
