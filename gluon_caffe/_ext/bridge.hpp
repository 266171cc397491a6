// The C++ half of the bridge: one Caffe layer or one Caffe Net driven on borrowed memory,
// prototxt parsing with located errors, and the translation of C++ errors into Python ones.
#ifndef GLUON_CAFFE_BRIDGE_HPP_
#define GLUON_CAFFE_BRIDGE_HPP_

#ifndef GCB_NO_PYTHON
#include <Python.h>
#endif

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/common.h>
#include <google/protobuf/text_format.h>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/net.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/io.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/upgrade_proto.hpp"

namespace gcb {

using std::string;
using std::vector;
typedef vector<vector<int> > Shapes;

// ---------------------------------------------------------------- errors
// Errors the bridge raises itself; translate_exception maps each to a Python class.
struct ProtoError : std::runtime_error {
  explicit ProtoError(const string& m) : std::runtime_error(m) {}
};
struct ShapeError : std::runtime_error {
  explicit ShapeError(const string& m) : std::runtime_error(m) {}
};
struct IOError : std::runtime_error {
  explicit IOError(const string& m) : std::runtime_error(m) {}
};
struct UnsupportedError : std::runtime_error {
  explicit UnsupportedError(const string& m) : std::runtime_error(m) {}
};

inline string LayerContext(const caffe::LayerParameter& p) {
  if (p.name().empty()) return p.type() + " layer";
  return "layer '" + p.name() + "' (" + p.type() + ")";
}

// Unknown types are refused up front with the list of what libcaffe has, instead of
// the registry's CHECK deep inside Net::Init.
inline void require_known_type(const caffe::LayerParameter& p) {
  const auto& registry = caffe::LayerRegistry<float>::Registry();
  if (registry.count(p.type())) return;
  string hint = p.type() == "Python"
                    ? " (this libcaffe is built without Python layers)"
                    : p.type().empty() ? " (the layer has no type field)" : "";
  string known;
  for (const auto& kv : registry) known += (known.empty() ? "" : ", ") + kv.first;
  throw UnsupportedError(LayerContext(p) + ": unknown layer type '" + p.type() + "'" + hint +
                         "; libcaffe has: " + known);
}

// Recent glog ERROR/WARNING lines, kept so an exception can carry what Caffe logged
// just before it failed (glog itself stays silent unless the user turns it on).
class RecentLog : public google::LogSink {
 public:
  void send(google::LogSeverity severity, const char* full_filename,
            const char* base_filename, int line, const struct ::tm* tm_time,
            const char* message, size_t message_len) override {
    if (severity < google::GLOG_ERROR) return;
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.push_back(string(message, message_len));
    if (lines_.size() > 8) lines_.pop_front();
  }
  // The lines logged since the last call, minus `except` (the fatal message itself).
  string Drain(const string& except) {
    std::lock_guard<std::mutex> lock(mutex_);
    string out;
    for (const string& l : lines_) {
      if (l == except || l.empty()) continue;
      out += (out.empty() ? "" : "; ") + l;
    }
    lines_.clear();
    return out;
  }

 private:
  std::mutex mutex_;
  std::deque<string> lines_;
};

inline RecentLog& recent_log() {
  static RecentLog* sink = new RecentLog();
  return *sink;
}

#ifndef GCB_NO_PYTHON
// Python callable (kind, message, check, source, context) -> exception instance,
// registered by the Cython module at import.
inline PyObject*& error_factory() {
  static PyObject* factory = nullptr;
  return factory;
}

inline void set_error_factory(PyObject* factory) {
  Py_XINCREF(factory);
  Py_XDECREF(error_factory());
  error_factory() = factory;
}

inline void raise_python(const char* kind, const string& message,
                         const string& check = "", const string& source = "",
                         const string& context = "") {
  PyObject* factory = error_factory();
  if (factory == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, message.c_str());
    return;
  }
  PyObject* exc = PyObject_CallFunction(factory, "sssss", kind, message.c_str(),
                                        check.c_str(), source.c_str(),
                                        context.c_str());
  if (exc == nullptr) return;  // the factory's own error stands
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
  Py_DECREF(exc);
}

// Cython's `except +translate_exception` handler: called inside a catch block.
inline void translate_exception() {
  try {
    if (PyErr_Occurred()) return;  // a Python error raised in a callback passes untouched
    throw;
  } catch (const caffe::FatalError& e) {
    string source = e.file() + ":" + std::to_string(e.line());
    string message = e.context().empty() ? e.message() : e.context() + ": " + e.message();
    // Trim glog's trailing space after "Check failed: cond ".
    while (!message.empty() && message.back() == ' ') message.pop_back();
    string logged = recent_log().Drain(e.message());
    if (!logged.empty()) message += " [caffe log: " + logged + "]";
    message += " (" + source + ")";
    raise_python("check", message, e.message(), source, e.context());
  } catch (const ProtoError& e) {
    raise_python("proto", e.what());
  } catch (const ShapeError& e) {
    raise_python("shape", e.what());
  } catch (const IOError& e) {
    raise_python("io", e.what());
  } catch (const UnsupportedError& e) {
    raise_python("unsupported", e.what());
  } catch (const std::out_of_range& e) {
    raise_python("key", e.what());
  } catch (const std::bad_alloc&) {
    PyErr_SetString(PyExc_MemoryError, "out of memory inside libcaffe");
  } catch (const std::exception& e) {
    raise_python("error", e.what());
  } catch (...) {
    raise_python("error", "unknown C++ exception inside libcaffe");
  }
}

#endif  // GCB_NO_PYTHON

// ---------------------------------------------------------------- logging
inline void init_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!google::IsGoogleLoggingInitialized()) {
      google::InitGoogleLogging("gluon_caffe");
    }
    // No log files, nothing on stderr unless asked; sinks still see WARNING+.
    for (int s = google::GLOG_INFO; s <= google::GLOG_FATAL; ++s) {
      google::SetLogDestination(s, "");
    }
    FLAGS_logtostderr = false;
    FLAGS_stderrthreshold = google::NUM_SEVERITIES;
    FLAGS_minloglevel = google::GLOG_WARNING;
    google::AddLogSink(&recent_log());
  });
}

// level: 0 INFO, 1 WARNING, 2 ERROR, 3 silent (the default).
inline void set_log_level(int level) {
  init_logging();
  if (level >= google::NUM_SEVERITIES) {
    FLAGS_stderrthreshold = google::NUM_SEVERITIES;
    FLAGS_minloglevel = google::GLOG_WARNING;
  } else {
    FLAGS_stderrthreshold = level;
    FLAGS_minloglevel = std::min(level, static_cast<int>(google::GLOG_WARNING));
  }
}

inline int log_level() {
  return FLAGS_stderrthreshold >= google::NUM_SEVERITIES ? 3 : FLAGS_stderrthreshold;
}

// Caffe's mode lives in thread-local storage and MXNet calls from engine threads.
inline void ensure_cpu_mode() {
  if (caffe::Caffe::mode() != caffe::Caffe::CPU) caffe::Caffe::set_mode(caffe::Caffe::CPU);
}

inline void set_random_seed(unsigned int seed) {
  ensure_cpu_mode();
  caffe::Caffe::set_random_seed(seed);
}

// ---------------------------------------------------------------- prototxt
class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const string& message) override {
    if (!first_.empty()) return;
    line_ = line;
    column_ = column;
    first_ = "line " + std::to_string(line + 1) + ", column " +
             std::to_string(column + 1) + ": " + message;
  }
  void AddWarning(int, int, const string&) override {}
  const string& first() const { return first_; }
  int line() const { return line_; }
  int column() const { return column_; }

 private:
  string first_;
  int line_ = -1, column_ = -1;
};

// The text just before an error's position, so the message shows the field at fault.
inline string excerpt(const string& text, int line, int column) {
  size_t pos = 0;
  for (int l = 0; l < line && pos != string::npos; ++l) {
    pos = text.find('\n', pos);
    if (pos != string::npos) ++pos;
  }
  if (pos == string::npos || line < 0) return "";
  size_t end = text.find('\n', pos);
  string row = text.substr(pos, end == string::npos ? string::npos : end - pos);
  size_t stop = std::min(row.size(), static_cast<size_t>(std::max(column, 0)) + 12);
  size_t start = stop > 60 ? stop - 60 : 0;
  string near = row.substr(start, stop - start);
  size_t first = near.find_first_not_of(" \t");
  if (first == string::npos) return "";
  return (start > 0 ? "..." : "") + near.substr(first);
}

inline bool parse_text(const string& text, google::protobuf::Message* msg,
                       string* error) {
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  bool ok = parser.ParseFromString(text, msg);
  if (!ok) {
    *error = errors.first().empty() ? "cannot parse" : errors.first();
    string near = excerpt(text, errors.line(), errors.column());
    if (!near.empty()) *error += " (near `" + near + "`)";
  }
  return ok;
}

inline bool looks_like_net(const string& text) {
  // A net's text starts with one of NetParameter's fields; a bare layer with LayerParameter's.
  size_t i = text.find_first_not_of(" \t\r\n");
  while (i != string::npos && text[i] == '#') {
    i = text.find('\n', i);
    if (i != string::npos) i = text.find_first_not_of(" \t\r\n", i);
  }
  if (i == string::npos) return false;
  static const char* net_fields[] = {"layer ", "layer{", "layers ", "layers{", "input",
                                     "force_backward", "state", "debug_info"};
  for (const char* f : net_fields) {
    if (text.compare(i, std::strlen(f), f) == 0) return true;
  }
  return text.compare(i, 5, "name:") == 0 && text.find("layer") != string::npos &&
         text.find('{') != string::npos &&
         (text.find("layer {") != string::npos || text.find("layer{") != string::npos ||
          text.find("layers {") != string::npos || text.find("layers{") != string::npos);
}

// One layer from text: `layer { ... }` (V2), `layers { ... }` (V1) or the bare
// LayerParameter fields (`type: "TanH" ...`) the old MXNet CaffeOp took.
inline caffe::LayerParameter parse_layer_text(const string& text) {
  string error;
  if (looks_like_net(text)) {
    caffe::NetParameter net;
    if (!parse_text(text, &net, &error)) throw ProtoError("prototxt " + error);
    if (caffe::NetNeedsUpgrade(net)) {
      caffe::NetParameter upgraded;
      if (net.layers_size() > 0 && !caffe::UpgradeV1Net(net, &upgraded)) {
        throw ProtoError("prototxt: cannot upgrade the V1 layer definition");
      }
      if (net.layers_size() > 0) net = upgraded;
    }
    if (net.layer_size() != 1) {
      throw ProtoError("prototxt must define exactly one layer, found " +
                       std::to_string(net.layer_size()));
    }
    return net.layer(0);
  }
  caffe::LayerParameter layer;
  if (!parse_text(text, &layer, &error)) throw ProtoError("prototxt " + error);
  return layer;
}

inline caffe::NetParameter parse_net_text(const string& text, const string& origin) {
  caffe::NetParameter net;
  string error;
  if (!parse_text(text, &net, &error)) throw ProtoError(origin + ": " + error);
  if (caffe::NetNeedsUpgrade(net)) {
    if (!caffe::UpgradeNetAsNeeded(origin, &net)) {
      throw ProtoError(origin + ": the V0/V1 net could not be fully upgraded");
    }
  }
  return net;
}

// NetParameter text to wire format with protobuf's C++ parser (about 20x faster than Python's
// text_format): the converter parses prototxts this way when libcaffe is there. False when the
// text does not parse here (a field only the converter's superset caffe.proto has, or an error):
// the caller then parses it itself, with its own located error messages.
inline bool net_text_to_binary(const string& text, string* out) {
  caffe::NetParameter net;
  string error;
  if (!parse_text(text, &net, &error)) return false;
  return net.SerializeToString(out);
}

inline vector<string> layer_types() {
  return caffe::LayerRegistry<float>::LayerTypeList();
}

inline int protobuf_version() { return GOOGLE_PROTOBUF_VERSION; }

// ---------------------------------------------------------------- blobs
template <typename Dtype>
vector<int> shape_of(const caffe::Blob<Dtype>& b) {
  return b.shape();
}

inline string shape_string(const vector<int>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  if (s.size() == 1) o << ",";
  o << ")";
  return o.str();
}

// ---------------------------------------------------------------- one layer
// Type-erased so Cython holds one pointer whatever the dtype.
class LayerRunner {
 public:
  virtual ~LayerRunner() {}
  virtual string type() const = 0;
  virtual string name() const = 0;
  virtual int exact_num_bottoms() const = 0;
  virtual int min_num_bottoms() const = 0;
  virtual int max_num_bottoms() const = 0;
  virtual int exact_num_tops() const = 0;
  virtual int min_num_tops() const = 0;
  virtual int max_num_tops() const = 0;
  virtual bool is_set_up() const = 0;
  virtual void setup(const Shapes& bottoms, int num_tops) = 0;
  virtual Shapes reshape(const Shapes& bottoms) = 0;
  virtual Shapes top_shapes() const = 0;
  virtual Shapes param_shapes() const = 0;
  virtual int num_params() const = 0;
  virtual void* param_data(int i) = 0;
  virtual void* param_diff(int i) = 0;
  virtual void set_param_data(int i, void* p) = 0;
  virtual void set_param_diff(int i, void* p) = 0;
  virtual void zero_param_diffs() = 0;
  virtual void set_param_propagate_down(int i, bool v) = 0;
  virtual bool param_propagate_down(int i) const = 0;
  virtual double loss_weight(int top) const = 0;
  virtual int phase() const = 0;
  virtual void set_phase(int phase) = 0;
  virtual double forward(const vector<void*>& bottoms, const vector<void*>& tops) = 0;
  virtual void backward(const vector<void*>& bottoms, const vector<void*>& tops,
                        const vector<void*>& top_diffs, const vector<void*>& bottom_diffs,
                        const vector<bool>& propagate_down) = 0;
  // For gluon_caffe.nn: what the layer itself says about its blobs and bottoms.
  virtual bool allow_force_backward(int bottom) const = 0;
  virtual double param_lr_mult(int i) const = 0;
  virtual double param_decay_mult(int i) const = 0;
};

template <typename Dtype>
class LayerRunnerT : public LayerRunner {
 public:
  explicit LayerRunnerT(const caffe::LayerParameter& param) : param_(param) {
    ensure_cpu_mode();
    require_known_type(param_);
    try {
      layer_ = caffe::LayerRegistry<Dtype>::CreateLayer(param_);
    } catch (const caffe::FatalError& e) {
      throw e.WithContext(LayerContext(param_));
    }
    overwrites_bottom_diffs_ = overwrites_bottom_diffs(layer_->type());
  }

  string type() const override { return layer_->type(); }
  string name() const override { return param_.name(); }

  // Types whose Backward_cpu writes every element of each bottom diff it propagates to, without
  // reading it first (checked against Caffe's sources): the runner need not zero those first.
  static bool overwrites_bottom_diffs(const string& type) {
    static const char* types[] = {"InnerProduct", "Convolution", "Deconvolution", "Pooling", "ReLU",
                                  "Sigmoid",      "TanH",        "Dropout",       "Softmax", "PReLU",
                                  "ELU",          "AbsVal",      "Power",         "BatchNorm",
                                  "Concat",       "Eltwise"};
    for (const char* t : types)
      if (type == t) return true;
    return false;
  }
  int exact_num_bottoms() const override { return layer_->ExactNumBottomBlobs(); }
  int min_num_bottoms() const override { return layer_->MinBottomBlobs(); }
  int max_num_bottoms() const override { return layer_->MaxBottomBlobs(); }
  int exact_num_tops() const override { return layer_->ExactNumTopBlobs(); }
  int min_num_tops() const override { return layer_->MinTopBlobs(); }
  int max_num_tops() const override { return layer_->MaxTopBlobs(); }
  bool is_set_up() const override { return set_up_; }

  void setup(const Shapes& bottoms, int num_tops) override {
    ensure_cpu_mode();
    if (set_up_) throw std::logic_error(LayerContext(param_) + ": already set up");
    for (size_t i = 0; i < bottoms.size(); ++i) {
      bottoms_.emplace_back(new caffe::Blob<Dtype>(bottoms[i]));
    }
    for (int i = 0; i < num_tops; ++i) tops_.emplace_back(new caffe::Blob<Dtype>());
    refresh_vecs();
    try {
      layer_->SetUp(bottom_vec_, top_vec_);
    } catch (const caffe::FatalError& e) {
      throw e.WithContext(LayerContext(param_));
    }
    // Caffe only computes parameter gradients where a Net enables them.
    for (size_t i = 0; i < layer_->blobs().size(); ++i) {
      bool learn = true;
      if (static_cast<int>(i) < param_.param_size()) learn = param_.param(i).lr_mult() != 0;
      layer_->set_param_propagate_down(i, learn);
    }
    set_up_ = true;
  }

  Shapes reshape(const Shapes& bottoms) override {
    require_set_up();
    if (bottoms.size() != bottoms_.size()) {
      throw ShapeError(LayerContext(param_) + ": expected " + std::to_string(bottoms_.size()) +
                       " inputs, got " + std::to_string(bottoms.size()));
    }
    bool changed = false;
    for (size_t i = 0; i < bottoms.size(); ++i) {
      if (bottoms_[i]->shape() != bottoms[i]) {
        bottoms_[i]->Reshape(bottoms[i]);
        changed = true;
      }
    }
    if (changed) {
      ensure_cpu_mode();
      try {
        layer_->Reshape(bottom_vec_, top_vec_);
      } catch (const caffe::FatalError& e) {
        throw e.WithContext(LayerContext(param_));
      }
    }
    return top_shapes();
  }

  Shapes top_shapes() const override {
    Shapes s;
    for (auto& t : tops_) s.push_back(t->shape());
    return s;
  }
  Shapes param_shapes() const override {
    Shapes s;
    for (auto& b : layer_->blobs()) s.push_back(b->shape());
    return s;
  }
  int num_params() const override { return layer_->blobs().size(); }
  void* param_data(int i) override { return layer_->blobs().at(i)->mutable_cpu_data(); }
  void* param_diff(int i) override { return layer_->blobs().at(i)->mutable_cpu_diff(); }
  void set_param_data(int i, void* p) override {
    layer_->blobs().at(i)->set_cpu_data(static_cast<Dtype*>(p));
  }
  void set_param_diff(int i, void* p) override {
    layer_->blobs().at(i)->set_cpu_diff(static_cast<Dtype*>(p));
  }
  void zero_param_diffs() override {
    for (auto& b : layer_->blobs()) {
      caffe::caffe_set(b->count(), Dtype(0), b->mutable_cpu_diff());
    }
  }
  void set_param_propagate_down(int i, bool v) override {
    layer_->set_param_propagate_down(i, v);
  }
  bool param_propagate_down(int i) const override {
    return layer_->param_propagate_down(i);
  }
  double loss_weight(int top) const override { return layer_->loss(top); }
  int phase() const override { return layer_->phase(); }
  void set_phase(int phase) override {
    layer_->set_phase(phase == 0 ? caffe::TRAIN : caffe::TEST);
  }

  // Every pointer is borrowed for the call only (Caffe's set_cpu_data does not take
  // ownership); each call sets all the pointers it will touch before computing.
  // Outputs are written in place (zero copy) unless Caffe shares the output blob
  // with an input (Flatten, Reshape, Split), in which case they are copied out.
  double forward(const vector<void*>& bottoms, const vector<void*>& tops) override {
    require_set_up();
    check_count("inputs", bottoms.size(), bottoms_.size());
    check_count("outputs", tops.size(), tops_.size());
    ensure_cpu_mode();
    for (size_t i = 0; i < bottoms.size(); ++i) {
      bottoms_[i]->set_cpu_data(static_cast<Dtype*>(bottoms[i]));
    }
    for (size_t i = 0; i < tops.size(); ++i) {
      if (!shares_data_with_bottom(*tops_[i])) {
        tops_[i]->set_cpu_data(static_cast<Dtype*>(tops[i]));
      }
    }
    park_diffs();
    Dtype loss;
    try {
      loss = layer_->Forward(bottom_vec_, top_vec_);
    } catch (const caffe::FatalError& e) {
      throw e.WithContext(LayerContext(param_));
    }
    for (size_t i = 0; i < tops.size(); ++i) {
      const Dtype* got = tops_[i]->cpu_data();
      if (got != tops[i]) std::memcpy(tops[i], got, tops_[i]->count() * sizeof(Dtype));
    }
    return loss;
  }

  // propagate_down[i] is honoured only where bottom_diffs[i] is given.
  void backward(const vector<void*>& bottoms, const vector<void*>& tops,
                const vector<void*>& top_diffs, const vector<void*>& bottom_diffs,
                const vector<bool>& propagate_down) override {
    require_set_up();
    check_count("inputs", bottoms.size(), bottoms_.size());
    check_count("outputs", tops.size(), tops_.size());
    check_count("output gradients", top_diffs.size(), tops_.size());
    check_count("input gradients", bottom_diffs.size(), bottoms_.size());
    check_count("propagate_down flags", propagate_down.size(), bottoms_.size());
    ensure_cpu_mode();
    vector<bool> down(propagate_down);
    for (size_t i = 0; i < bottoms.size(); ++i) {
      bottoms_[i]->set_cpu_data(static_cast<Dtype*>(bottoms[i]));
      down[i] = down[i] && bottom_diffs[i] != nullptr;
    }
    for (size_t i = 0; i < tops.size(); ++i) {
      if (!shares_data_with_bottom(*tops_[i])) {
        tops_[i]->set_cpu_data(static_cast<Dtype*>(tops[i]));
      }
      tops_[i]->set_cpu_diff(static_cast<Dtype*>(top_diffs[i]));
    }
    for (size_t i = 0; i < bottom_diffs.size(); ++i) {
      if (down[i] && !shares_diff_with_top(*bottoms_[i])) {
        // What Forward left in the diff (HingeLoss keeps its margins there) is what Backward
        // expects to find, as it would in a Net; untouched diffs read as zero. Layers known to
        // overwrite every bottom diff element skip that first fill.
        if (overwrites_bottom_diffs_) {
          // nothing to prepare
        } else if (i < bottom_stash_.size() && bottoms_[i]->cpu_diff() == bottom_stash_[i].data()) {
          std::memcpy(bottom_diffs[i], bottom_stash_[i].data(), bottoms_[i]->count() * sizeof(Dtype));
        } else {
          std::memset(bottom_diffs[i], 0, bottoms_[i]->count() * sizeof(Dtype));
        }
        bottoms_[i]->set_cpu_diff(static_cast<Dtype*>(bottom_diffs[i]));
      }
    }
    try {
      layer_->Backward(top_vec_, down, bottom_vec_);
    } catch (const caffe::FatalError& e) {
      throw e.WithContext(LayerContext(param_));
    }
    for (size_t i = 0; i < bottom_diffs.size(); ++i) {
      if (!down[i]) continue;
      const Dtype* got = bottoms_[i]->cpu_diff();
      if (got != bottom_diffs[i]) {
        std::memcpy(bottom_diffs[i], got, bottoms_[i]->count() * sizeof(Dtype));
      }
    }
  }

  // Loss layers refuse gradients for their label bottoms (Caffe LOG(FATAL)s otherwise).
  bool allow_force_backward(int bottom) const override {
    return layer_->AllowForceBackward(bottom);
  }
  // The layer's own view after SetUp: BatchNorm adds lr_mult 0 for its statistics.
  double param_lr_mult(int i) const override {
    const caffe::LayerParameter& p = layer_->layer_param();
    return i < p.param_size() ? p.param(i).lr_mult() : 1.0;
  }
  double param_decay_mult(int i) const override {
    const caffe::LayerParameter& p = layer_->layer_param();
    return i < p.param_size() ? p.param(i).decay_mult() : 1.0;
  }

 private:
  void require_set_up() const {
    if (!set_up_) throw std::logic_error(LayerContext(param_) + ": not set up");
  }
  void check_count(const char* what, size_t got, size_t want) const {
    if (got != want) {
      throw ShapeError(LayerContext(param_) + ": expected " + std::to_string(want) + " " +
                       what + ", got " + std::to_string(got));
    }
  }
  bool shares_data_with_bottom(const caffe::Blob<Dtype>& top) const {
    for (auto& b : bottoms_) {
      if (b->data().get() == top.data().get()) return true;
    }
    return false;
  }
  bool shares_diff_with_top(const caffe::Blob<Dtype>& bottom) const {
    for (auto& t : tops_) {
      if (t->diff().get() == bottom.diff().get()) return true;
    }
    return false;
  }
  // Forward may write diffs (HingeLoss stores its margins in the bottom diff): point every diff
  // at memory the runner owns, never at a caller's array from an earlier call that may be freed.
  // A top's diff holds its loss weight, as Layer::SetLossWeights left it (Forward's loss uses it).
  void park_diffs() {
    park(bottoms_, &bottom_stash_, false);
    park(tops_, &top_stash_, true);
  }
  void park(const vector<std::unique_ptr<caffe::Blob<Dtype> > >& blobs,
            vector<vector<Dtype> >* stash, bool tops) {
    stash->resize(blobs.size());
    for (size_t i = 0; i < blobs.size(); ++i) {
      vector<Dtype>& v = (*stash)[i];
      size_t n = std::max(blobs[i]->count(), 1);
      if (v.size() != n) v.assign(n, tops ? Dtype(layer_->loss(i)) : Dtype(0));
      if (blobs[i]->cpu_diff() != v.data()) blobs[i]->set_cpu_diff(v.data());
    }
  }
  void refresh_vecs() {
    bottom_vec_.clear();
    top_vec_.clear();
    for (auto& b : bottoms_) bottom_vec_.push_back(b.get());
    for (auto& t : tops_) top_vec_.push_back(t.get());
  }

  caffe::LayerParameter param_;
  boost::shared_ptr<caffe::Layer<Dtype> > layer_;
  vector<std::unique_ptr<caffe::Blob<Dtype> > > bottoms_, tops_;
  vector<caffe::Blob<Dtype>*> bottom_vec_, top_vec_;
  vector<vector<Dtype> > bottom_stash_, top_stash_;
  bool set_up_ = false;
  bool overwrites_bottom_diffs_ = false;
};

// ---------------------------------------------------------------- a whole net
class NetRunner {
 public:
  virtual ~NetRunner() {}
  virtual string name() const = 0;
  virtual vector<string> blob_names() const = 0;
  virtual vector<string> layer_names() const = 0;
  virtual string layer_type(const string& layer) const = 0;
  virtual vector<string> input_names() const = 0;
  virtual vector<string> output_names() const = 0;
  virtual vector<int> blob_shape(const string& blob) const = 0;
  virtual void reshape_blob(const string& blob, const vector<int>& shape) = 0;
  virtual void* blob_data(const string& blob) = 0;
  virtual void* blob_diff(const string& blob) = 0;
  virtual void reshape() = 0;
  virtual double forward() = 0;
  virtual void clear_diffs() = 0;
  virtual double blob_loss_weight(const string& blob) const = 0;
  virtual void backward() = 0;
  virtual int num_params(const string& layer) const = 0;
  virtual vector<int> param_shape(const string& layer, int i) const = 0;
  virtual void* param_data(const string& layer, int i) = 0;
  virtual void* param_diff(const string& layer, int i) = 0;
  virtual void copy_trained(const string& path) = 0;
  virtual void save(const string& path) const = 0;
};

template <typename Dtype>
class NetRunnerT : public NetRunner {
 public:
  explicit NetRunnerT(const caffe::NetParameter& param) {
    ensure_cpu_mode();
    net_.reset(new caffe::Net<Dtype>(param));
  }
  string name() const override { return net_->name(); }
  vector<string> blob_names() const override { return net_->blob_names(); }
  vector<string> layer_names() const override { return net_->layer_names(); }
  string layer_type(const string& layer) const override {
    return layer_(layer)->type();
  }
  vector<string> input_names() const override {
    vector<string> out;
    for (int i : net_->input_blob_indices()) out.push_back(net_->blob_names()[i]);
    return out;
  }
  vector<string> output_names() const override {
    vector<string> out;
    for (int i : net_->output_blob_indices()) out.push_back(net_->blob_names()[i]);
    return out;
  }
  vector<int> blob_shape(const string& blob) const override { return blob_(blob)->shape(); }
  void reshape_blob(const string& blob, const vector<int>& shape) override {
    blob_(blob)->Reshape(shape);
  }
  void* blob_data(const string& blob) override { return blob_(blob)->mutable_cpu_data(); }
  void* blob_diff(const string& blob) override { return blob_(blob)->mutable_cpu_diff(); }
  void reshape() override {
    ensure_cpu_mode();
    net_->Reshape();
  }
  double forward() override {
    ensure_cpu_mode();
    Dtype loss = 0;
    net_->Forward(&loss);
    return loss;
  }
  // Only the parameter gradients: blob diffs hold what layers left for Backward (a loss
  // top's loss weight, HingeLoss's margins) and Backward overwrites the rest.
  void clear_diffs() override { net_->ClearParamDiffs(); }
  double blob_loss_weight(const string& blob) const override {
    blob_(blob);  // raises for an unknown name
    const vector<string>& names = net_->blob_names();
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == blob) return net_->blob_loss_weights()[i];
    }
    return 0;
  }
  void backward() override {
    ensure_cpu_mode();
    net_->Backward();
  }
  int num_params(const string& layer) const override { return layer_(layer)->blobs().size(); }
  vector<int> param_shape(const string& layer, int i) const override {
    return param_(layer, i)->shape();
  }
  void* param_data(const string& layer, int i) override {
    return param_(layer, i)->mutable_cpu_data();
  }
  void* param_diff(const string& layer, int i) override {
    return param_(layer, i)->mutable_cpu_diff();
  }
  void copy_trained(const string& path) override {
    caffe::NetParameter weights;
    if (!caffe::ReadProtoFromBinaryFile(path, &weights)) {
      throw ProtoError("caffemodel '" + path +
                       "' is not a valid NetParameter (truncated or corrupt file?)");
    }
    if (caffe::NetNeedsUpgrade(weights) && !caffe::UpgradeNetAsNeeded(path, &weights)) {
      throw ProtoError("caffemodel '" + path + "': the V0/V1 weights could not be upgraded");
    }
    net_->CopyTrainedLayersFrom(weights);
  }
  void save(const string& path) const override {
    caffe::NetParameter out;
    net_->ToProto(&out, false);
    caffe::WriteProtoToBinaryFile(out, path);
  }

 private:
  caffe::Blob<Dtype>* blob_(const string& name) const {
    if (!net_->has_blob(name)) throw std::out_of_range("no blob named '" + name + "'");
    return net_->blob_by_name(name).get();
  }
  caffe::Layer<Dtype>* layer_(const string& name) const {
    if (!net_->has_layer(name)) throw std::out_of_range("no layer named '" + name + "'");
    return net_->layer_by_name(name).get();
  }
  caffe::Blob<Dtype>* param_(const string& layer, int i) const {
    auto& blobs = layer_(layer)->blobs();
    if (i < 0 || i >= static_cast<int>(blobs.size())) {
      throw std::out_of_range("layer '" + layer + "' has no parameter " + std::to_string(i));
    }
    return blobs[i].get();
  }
  std::unique_ptr<caffe::Net<Dtype> > net_;
};

inline LayerRunner* make_layer_runner(const caffe::LayerParameter& p, bool is_double) {
  if (is_double) return new LayerRunnerT<double>(p);
  return new LayerRunnerT<float>(p);
}

// phase: 0 TRAIN, 1 TEST; it decides which include/exclude rules hold.
inline NetRunner* make_net_runner(const caffe::NetParameter& p, bool is_double, int phase) {
  caffe::NetParameter param(p);
  param.mutable_state()->set_phase(phase == 0 ? caffe::TRAIN : caffe::TEST);
  for (const auto& layer : param.layer()) require_known_type(layer);
  if (is_double) return new NetRunnerT<double>(param);
  return new NetRunnerT<float>(param);
}

}  // namespace gcb

#endif  // GLUON_CAFFE_BRIDGE_HPP_
