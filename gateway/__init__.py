"""ticket-gateway: an e-mail servicedesk daemon."""

__version__ = "0.1.0"
