"""In-memory stand-ins for the kernel seam (``clew.kernel``), for tests without root."""
