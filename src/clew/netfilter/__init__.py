"""One netfilter grammar for the renderers, the fakes and the tracer: what clew renders, it can
parse and trace. Pure text in, text out; imports nothing else of clew."""
