"""The HGQ2 builder: specs (what handlers return for a source layer), how tensors and their quantizers flow while
a model is built, the build itself, the float policy for float sources, and the driver that runs every handler,
collects every problem and builds one genuine ``hgq.layers`` model."""
