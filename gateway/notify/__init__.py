"""Rendering of notifications from Jinja2 templates."""
