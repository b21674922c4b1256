"""Pure e-mail handling: bytes in, values out. No I/O in this package."""
