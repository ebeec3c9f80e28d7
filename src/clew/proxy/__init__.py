"""The Service proxy: policy decisions per Service port, and the renderers that program them."""
