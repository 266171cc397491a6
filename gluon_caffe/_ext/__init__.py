"""The only code that touches libcaffe: the compiled bridge (_caffe) and its declarations."""
