"""iproute2's JSON output (``ip -j …``), read into values. Pure: imports nothing else of clew, so
both the kernel layer (live namespaces) and the tracer (``clew dump`` files) use one parser."""
