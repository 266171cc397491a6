"""Translators from Caffe layers to MXNet symbols, one module per family; importing registers them."""
