"""Channels that bring raw mail in; each hands bytes to the pipeline."""
