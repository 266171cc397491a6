"""Caffe's protobuf schema (caffe.proto); ``caffe_pb2`` is generated from it at build time."""
