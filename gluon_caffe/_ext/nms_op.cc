// gluon_caffe_nms: same-class greedy non-maximum suppression on one thread, for the SSD
// DetectionOutput of inference graphs (gc.import_model(..., inference=True)).
//
// It computes what MXNet's contrib box_nms computes for the arguments the converter passes
// (rows [class, score, x1, y1, x2, y2], corner boxes, id_index 0, score_index 1, topk -1, no
// background id, no forced suppression): rows scoring above valid_thresh in descending score
// order (stable for ties), a row suppressed when its IoU with a kept row of the same class
// exceeds overlap_thresh, the kept rows first and every other row -1. box_nms launches one
// OpenMP kernel per reference row (400 for a typical SSD), and on a busy 2-core machine each
// launch waits for a descheduled thread: 4-20 ms where this loop takes a fraction of one.
// Forward only: inference graphs are not trained (backward, which MXNet's graph needs to exist,
// says so if it is ever run).

#include <algorithm>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"

using namespace mxnet::ext;  // NOLINT

namespace {

typedef std::unordered_map<std::string, std::string> AttrMap;

constexpr int kWidth = 6;  // class, score, x1, y1, x2, y2

double attr(const AttrMap& attrs, const char* key, double fallback) {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : std::strtod(it->second.c_str(), nullptr);
}

template <typename T>
T side(T lo1, T hi1, T lo2, T hi2) {
  T w = std::min(hi1, hi2) - std::max(lo1, lo2);
  return w > 0 ? w : T(0);
}

template <typename T>
T area(const T* box) {
  T w = box[2] - box[0], h = box[3] - box[1];
  return (w < 0 || h < 0) ? T(0) : w * h;
}

template <typename T>
void suppress(const T* in, T* out, int64_t rows, T valid_thresh, T overlap, std::vector<int64_t>* order,
              std::vector<T>* areas) {
  order->clear();
  for (int64_t r = 0; r < rows; ++r)
    if (in[r * kWidth + 1] > valid_thresh) order->push_back(r);
  std::stable_sort(order->begin(), order->end(),
                   [in](int64_t a, int64_t b) { return in[a * kWidth + 1] > in[b * kWidth + 1]; });
  areas->resize(order->size());
  for (size_t i = 0; i < order->size(); ++i) (*areas)[i] = area(in + (*order)[i] * kWidth + 2);
  std::vector<int64_t>& idx = *order;
  const int64_t n = static_cast<int64_t>(idx.size());
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0) continue;
    const T* ref = in + idx[i] * kWidth;
    const int ref_class = static_cast<int>(ref[0]);
    for (int64_t j = i + 1; j < n; ++j) {
      if (idx[j] < 0) continue;
      const T* box = in + idx[j] * kWidth;
      if (static_cast<int>(box[0]) != ref_class) continue;
      T inter = side(ref[2], ref[4], box[2], box[4]);
      inter *= side(ref[3], ref[5], box[3], box[5]);
      T iou = inter / ((*areas)[i] + (*areas)[j] - inter);
      if (iou > overlap) idx[j] = -1;
    }
  }
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0) continue;
    std::copy(in + idx[i] * kWidth, in + idx[i] * kWidth + kWidth, out + k * kWidth);
    ++k;
  }
  std::fill(out + k * kWidth, out + rows * kWidth, T(-1));
}

template <typename T>
void run(MXTensor& in, MXTensor& out, const AttrMap& attrs) {
  const int64_t rows = in.shape[in.shape.size() - 2];
  const int64_t batch = in.size() / (rows * kWidth);
  const T valid = static_cast<T>(attr(attrs, "valid_thresh", 0.0));
  const T overlap = static_cast<T>(attr(attrs, "overlap_thresh", 0.5));
  std::vector<int64_t> order;
  std::vector<T> areas;
  for (int64_t b = 0; b < batch; ++b)
    suppress(in.data<T>() + b * rows * kWidth, out.data<T>() + b * rows * kWidth, rows, valid, overlap,
             &order, &areas);
}

MXReturnValue forward(const AttrMap& attrs, std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                      const OpResource&) {
  MXTensor& in = (*inputs)[0];
  MXTensor& out = (*outputs)[0];
  if (in.dtype == kFloat64) {
    run<double>(in, out, attrs);
  } else {
    run<float>(in, out, attrs);
  }
  return MX_SUCCESS;
}

MXReturnValue backward(const AttrMap&, std::vector<MXTensor>*, std::vector<MXTensor>*, const OpResource&) {
  MX_ERROR_MSG << "gluon_caffe_nms has no gradient: it is for inference graphs "
                  "(gc.import_model(..., inference=True)); import without inference=True to train";
  return MX_FAIL;
}

MXReturnValue parse(const AttrMap&, int* num_in, int* num_out) {
  *num_in = 1;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue infer_type(const AttrMap&, std::vector<int>* in, std::vector<int>* out) {
  if ((*in)[0] != kFloat32 && (*in)[0] != kFloat64) {
    MX_ERROR_MSG << "gluon_caffe_nms: rows must be float32 or float64, got dtype code " << (*in)[0];
    return MX_FAIL;
  }
  (*out)[0] = (*in)[0];
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const AttrMap&, std::vector<std::vector<unsigned int> >* in,
                          std::vector<std::vector<unsigned int> >* out) {
  const std::vector<unsigned int>& s = (*in)[0];
  if (s.size() < 2 || s.back() != kWidth) {
    MX_ERROR_MSG << "gluon_caffe_nms: rows must have shape (..., R, 6) [class, score, x1, y1, x2, y2]";
    return MX_FAIL;
  }
  (*out)[0] = s;
  return MX_SUCCESS;
}

REGISTER_OP(gluon_caffe_nms)
    .setParseAttrs(parse)
    .setInferType(infer_type)
    .setInferShape(infer_shape)
    .setForward(forward, "cpu")
    .setBackward(backward, "cpu");

}  // namespace
