"""Pure model of the servicedesk process (PROCESS.md). No I/O in this package."""
