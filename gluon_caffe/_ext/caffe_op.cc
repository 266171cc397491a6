// gluon_caffe's C++ operator library: one Caffe layer as an MXNet operator, loaded with
// mx.library.load (MXNet's lib_api, version 11). It is the fast path of CaffeLayer and
// CaffeLossBlock: an MXNet call costs tens of microseconds here against hundreds for a Python
// CustomOp. The same semantics as the Python operator in gluon_caffe/nn/_op.py, which stays for
// the symbol API and for what lib_api cannot say (see the attribute notes below).
//
// lib_api v11 passes an operator neither is_train nor req, so the Python side says in attributes
// what it knows when it builds the graph:
//   phase_input  1: one more input after the blobs, a 1-element array that an MXNet Dropout made
//                from ones: 1 in inference, 0 or 2 in training (Dropout, BatchNorm follow it).
//   param_req    per learnable blob: w (write), a (add: Caffe's own accumulation), n (null).
// Input gradients are written; Python routes a block whose inputs may need "add" to the
// CustomOp. Auxiliary blobs (lr_mult 0: BatchNorm's statistics) are mutated inputs.

#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#define GCB_NO_PYTHON 1
#include "bridge.hpp"
#include "mxnet/lib_api.h"

using namespace mxnet::ext;  // NOLINT
using gcb::Shapes;
using std::string;
using std::vector;

namespace {

typedef std::unordered_map<string, string> AttrMap;

// ---------------------------------------------------------------- attributes
struct OpAttrs {
  string prototxt;
  int num_data = 1;
  int num_out = 1;
  vector<bool> aux;          // per Caffe blob
  vector<char> param_req;    // per Caffe blob: 'w', 'a', 'n' (aux blobs: 'n')
  bool loss = false;
  double grad_scale = 1.0;
  bool top_grad = true;
  int phase = -1;            // -1 auto, 0 TRAIN, 1 TEST (Caffe's enum)
  bool phase_input = false;

  int num_blobs() const { return static_cast<int>(aux.size()); }
  int num_inputs() const { return num_data + num_blobs() + (phase_input ? 1 : 0); }
  // Where Caffe blob b sits among the operator's inputs: learnable blobs first, then auxiliary.
  vector<int> blob_inputs() const {
    vector<int> at(aux.size());
    int k = num_data;
    for (size_t b = 0; b < aux.size(); ++b)
      if (!aux[b]) at[b] = k++;
    for (size_t b = 0; b < aux.size(); ++b)
      if (aux[b]) at[b] = k++;
    return at;
  }
};

const string& get(const AttrMap& attrs, const char* key, const string& fallback) {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : it->second;
}

bool truthy(const string& v) { return v == "1" || v == "True" || v == "true"; }

// MXNet asks a library operator for its input count and its mutated inputs several times per
// call (autograd, the cached graph), each time through a fresh attribute map: arity() below reads
// only the counts, with no copy of the prototxt; parse_attrs() adds the rest.
int parse_count(const AttrMap& attrs, const char* key, int fallback) {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  const string& v = it->second;
  if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != string::npos)
    throw std::invalid_argument(string("gluon_caffe_CaffeOp: attribute ") + key + " must be a count, got '" + v + "'");
  return std::stoi(v);
}

// Whether each blob in the "blobs" attribute ("weight,bias", "mean:aux,...") is auxiliary.
vector<bool> blob_aux_flags(const AttrMap& attrs) {
  vector<bool> aux;
  auto it = attrs.find("blobs");
  if (it == attrs.end()) return aux;
  const string& v = it->second;
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find(',', start);
    if (end == string::npos) end = v.size();
    if (end > start) aux.push_back(end - start > 4 && v.compare(end - 4, 4, ":aux") == 0);
    start = end + 1;
  }
  return aux;
}

// What parse and mutate_inputs need: the counts and which blobs are auxiliary. The other
// attributes are checked where they are used (shapes, dtypes, the operator's state).
OpAttrs arity(const AttrMap& attrs) {
  auto it = attrs.find("prototxt");
  if (it == attrs.end() || it->second.empty())
    throw std::invalid_argument("gluon_caffe_CaffeOp: attribute prototxt is missing");
  OpAttrs a;
  a.num_data = parse_count(attrs, "num_data", 1);
  a.num_out = parse_count(attrs, "num_out", 1);
  a.aux = blob_aux_flags(attrs);
  auto flag = attrs.find("phase_input");
  a.phase_input = flag != attrs.end() && truthy(flag->second);
  return a;
}

OpAttrs parse_attrs(const AttrMap& attrs) {
  static const string empty, one = "1", zero = "0", autos = "auto";
  OpAttrs a = arity(attrs);
  a.prototxt = get(attrs, "prototxt", empty);
  const string& req = get(attrs, "param_req", empty);
  int k = 0;
  for (size_t b = 0; b < a.aux.size(); ++b) {
    char r = 'n';
    if (!a.aux[b]) r = k < static_cast<int>(req.size()) ? req[k] : 'w';
    if (!a.aux[b]) ++k;
    a.param_req.push_back(r);
  }
  a.loss = truthy(get(attrs, "loss", zero));
  a.grad_scale = std::stod(get(attrs, "grad_scale", one));
  a.top_grad = truthy(get(attrs, "top_grad", one));
  const string& phase = get(attrs, "phase", autos);
  a.phase = phase == "train" ? 0 : phase == "test" ? 1 : -1;
  return a;
}

// ---------------------------------------------------------------- errors
string describe(const std::exception_ptr& eptr, const string& where) {
  try {
    std::rethrow_exception(eptr);
  } catch (const caffe::FatalError& e) {
    string message = e.context().empty() ? e.message() : e.context() + ": " + e.message();
    while (!message.empty() && message.back() == ' ') message.pop_back();
    return message + " (" + e.file() + ":" + std::to_string(e.line()) + ")";
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown C++ exception inside libcaffe (" + where + ")";
  }
}

// MXNet prints every message the library ever queued (MXerrorMsgs keeps them all), so an old
// error would reappear in front of each new one: the queue is emptied before a new message.
// MXerrorMsgs keeps its list private; this reads it through the standard's explicit-instantiation
// access rule instead of editing MXNet's header.
struct MessagesTag {
  typedef std::vector<std::stringstream*> MXerrorMsgs::*type;
  friend type member(MessagesTag);
};
template <typename Tag, typename Tag::type M>
struct Expose {
  friend typename Tag::type member(Tag) { return M; }
};
template struct Expose<MessagesTag, &MXerrorMsgs::messages>;

std::mutex message_mutex;

void replace_messages(const string& message) {
  std::lock_guard<std::mutex> lock(message_mutex);
  std::vector<std::stringstream*>& queued = MXerrorMsgs::get()->*member(MessagesTag());
  for (auto* m : queued) delete m;
  queued.clear();
  MX_ERROR_MSG << message;
}

// "layer 'name' (Type)" for messages, from the prototxt (only on the error path).
string context_of(const string& prototxt) {
  try {
    return gcb::LayerContext(gcb::parse_layer_text(prototxt));
  } catch (...) {
    return "a Caffe layer";
  }
}

// Runs fn, turning an exception into MXNet's error message and MX_FAIL. The message names the
// layer (Caffe's own errors already do).
template <typename Fn>
MXReturnValue guarded(const char* where, const string* prototxt, Fn fn) {
  try {
    fn();
    return MX_SUCCESS;
  } catch (...) {
    string message = describe(std::current_exception(), where);
    if (prototxt != nullptr && message.compare(0, 6, "layer ") != 0 &&
        message.find(" layer") == string::npos) {
      message = context_of(*prototxt) + ": " + message;
    }
    replace_messages("gluon_caffe: " + message);
    return MX_FAIL;
  }
}

// Setting a layer up runs its fillers, which draw from Caffe's RNG of the calling thread (Caffe
// keeps one per thread). Runners are set up on a thread of their own, so a user's seeded
// thread only draws for the parameters it initializes (as in gluon_caffe.nn's Python side).
template <typename Fn>
void off_thread(Fn fn) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) std::rethrow_exception(error);
}

Shapes to_shapes(const vector<vector<unsigned int> >& in, int n) {
  Shapes s;
  for (int i = 0; i < n; ++i) s.emplace_back(in[i].begin(), in[i].end());
  return s;
}

string key_of(const OpAttrs& a, const Shapes& shapes, bool is_double) {
  std::ostringstream k;
  k << a.num_out << '|' << (is_double ? 'd' : 'f');
  for (auto& s : shapes) {
    k << '|';
    for (int d : s) k << d << ',';
  }
  k << '|' << a.prototxt;
  return k.str();
}

// ---------------------------------------------------------------- set-ups and the runner pool
struct SetupInfo {
  string prototxt;
  int num_out = 1;
  Shapes inputs, top_shapes, param_shapes;
  vector<double> loss_weights;
  vector<bool> allow_backward;
};

std::mutex registry_mutex;
std::map<string, std::shared_ptr<const SetupInfo> > setups;
std::map<string, vector<std::unique_ptr<gcb::LayerRunner> > > idle_runners;
const size_t kIdlePerKey = 8;
// Bounds for workloads whose shapes keep changing (image pyramids, variable batches): the caches
// are refilled on demand, so dropping entries costs a set-up, never a result.
const size_t kMaxSetups = 512;
const size_t kMaxIdleKeys = 64;

// Called with registry_mutex held, before inserting under `key`.
void make_room(const string& key) {
  if (setups.size() >= kMaxSetups && !setups.count(key)) setups.erase(setups.begin());
  if (idle_runners.size() >= kMaxIdleKeys && !idle_runners.count(key)) idle_runners.erase(idle_runners.begin());
}

std::unique_ptr<gcb::LayerRunner> new_runner(const OpAttrs& a, const Shapes& shapes, bool is_double) {
  std::unique_ptr<gcb::LayerRunner> runner;
  off_thread([&] {
    runner.reset(gcb::make_layer_runner(gcb::parse_layer_text(a.prototxt), is_double));
    runner->setup(shapes, a.num_out);
  });
  return runner;
}

std::shared_ptr<const SetupInfo> setup_info(const OpAttrs& a, const Shapes& shapes) {
  string key = key_of(a, shapes, false);
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = setups.find(key);
    if (it != setups.end()) return it->second;
  }
  std::unique_ptr<gcb::LayerRunner> runner = new_runner(a, shapes, false);
  if (runner->num_params() != a.num_blobs()) {
    throw gcb::ShapeError(runner->name().empty() ? runner->type() + " layer" : "layer '" + runner->name() + "' (" + runner->type() + ")" +
                          string(": has ") + std::to_string(runner->num_params()) +
                          " parameter blobs, the operator declares " + std::to_string(a.num_blobs()));
  }
  auto info = std::make_shared<SetupInfo>();
  info->prototxt = a.prototxt;
  info->num_out = a.num_out;
  info->inputs = shapes;
  info->top_shapes = runner->top_shapes();
  info->param_shapes = runner->param_shapes();
  for (int i = 0; i < a.num_out; ++i) info->loss_weights.push_back(runner->loss_weight(i));
  for (int i = 0; i < a.num_data; ++i) info->allow_backward.push_back(runner->allow_force_backward(i));
  std::lock_guard<std::mutex> lock(registry_mutex);
  make_room(key);
  setups[key] = info;
  auto& idle = idle_runners[key];
  if (idle.size() < kIdlePerKey) idle.push_back(std::move(runner));
  return info;
}

std::unique_ptr<gcb::LayerRunner> lease(const OpAttrs& a, const Shapes& shapes, bool is_double, const string& key) {
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = idle_runners.find(key);
    if (it != idle_runners.end() && !it->second.empty()) {
      std::unique_ptr<gcb::LayerRunner> r = std::move(it->second.back());
      it->second.pop_back();
      return r;
    }
  }
  return new_runner(a, shapes, is_double);
}

void give_back(const string& key, std::unique_ptr<gcb::LayerRunner> runner) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  make_room(key);
  auto& idle = idle_runners[key];
  if (idle.size() < kIdlePerKey) idle.push_back(std::move(runner));
}

vector<unsigned int> mx_shape(const vector<int>& s) {
  // MXNet's legacy shapes have no 0-d arrays: a scalar blob (a loss) is (1,).
  if (s.empty()) return {1};
  return vector<unsigned int>(s.begin(), s.end());
}

// ---------------------------------------------------------------- the stateful operator
template <typename Dtype>
class CaffeOpState : public CustomStatefulOp {
 public:
  CaffeOpState(const OpAttrs& a, const Shapes& shapes, std::shared_ptr<const SetupInfo> info)
      : a_(a), shapes_(shapes), info_(std::move(info)), blob_at_(a.blob_inputs()) {
    key_ = key_of(a_, shapes_, sizeof(Dtype) == 8);
    runner_ = lease(a_, shapes_, sizeof(Dtype) == 8, key_);
    for (auto& s : info_->top_shapes) {
      size_t n = 1;
      for (int d : s) n *= d;
      top_counts_.push_back(n);
    }
  }
  ~CaffeOpState() override {
    // A runner whose call failed half-way may hold half-updated state: let it go.
    if (runner_ && !broken_) give_back(key_, std::move(runner_));
  }

  MXReturnValue Forward(std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                        const OpResource&) override {
    std::lock_guard<std::mutex> lock(mutex_);
    MXReturnValue ok = guarded("forward", &a_.prototxt, [&] { forward(*inputs, *outputs); });
    if (ok != MX_SUCCESS) broken_ = true;
    return ok;
  }

  MXReturnValue Backward(std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                         const OpResource&) override {
    std::lock_guard<std::mutex> lock(mutex_);
    MXReturnValue ok = guarded("backward", &a_.prototxt, [&] { backward(*inputs, *outputs); });
    if (ok != MX_SUCCESS) broken_ = true;
    return ok;
  }

 private:
  void check_shapes(const std::vector<MXTensor>& in) {
    for (int i = 0; i < a_.num_data; ++i) {
      const auto& s = in[i].shape;
      bool same = s.size() == shapes_[i].size();
      for (size_t j = 0; same && j < s.size(); ++j) same = s[j] == shapes_[i][j];
      if (!same) throw gcb::ShapeError("the operator was set up for other input shapes");
    }
  }

  void set_phase(const std::vector<MXTensor>& in, int offset = 0) {
    int phase = a_.phase;
    if (phase < 0) {
      phase = 1;  // a layer that does not depend on the phase runs as in TEST
      if (a_.phase_input) {
        const MXTensor& flag = in[offset + a_.num_inputs() - 1];
        double v = flag.dtype == kFloat64 ? *static_cast<const double*>(flag.data_ptr)
                                          : *static_cast<const float*>(flag.data_ptr);
        phase = v != 1.0 ? 0 : 1;
      }
    }
    if (runner_->phase() != phase) runner_->set_phase(phase);
  }

  void set_params(const std::vector<MXTensor>& in, int offset) {
    for (int b = 0; b < a_.num_blobs(); ++b) {
      void* p = in[offset + blob_at_[b]].data_ptr;
      if (p == nullptr) throw gcb::ShapeError("parameter blob " + std::to_string(b) + " has no memory");
      runner_->set_param_data(b, p);
    }
  }

  void forward(const std::vector<MXTensor>& in, const std::vector<MXTensor>& out) {
    check_shapes(in);
    set_phase(in);
    set_params(in, 0);
    bottoms_.assign(a_.num_data, nullptr);
    for (int i = 0; i < a_.num_data; ++i) bottoms_[i] = in[i].data_ptr;
    tops_.assign(a_.num_out, nullptr);
    for (int i = 0; i < a_.num_out; ++i) tops_[i] = out[i].data_ptr;
    runner_->forward(bottoms_, tops_);
    ran_forward_ = true;
  }

  // inputs: output gradients, the forward's inputs, the forward's outputs; outputs: input gradients.
  void backward(const std::vector<MXTensor>& in, const std::vector<MXTensor>& out) {
    if (!ran_forward_) throw gcb::ShapeError("backward without a forward on this operator state");
    const int no = a_.num_out, nd = a_.num_data, ni = a_.num_inputs();
    set_phase(in, no);
    set_params(in, no);
    bottoms_.assign(nd, nullptr);
    for (int i = 0; i < nd; ++i) bottoms_[i] = in[no + i].data_ptr;
    tops_.assign(no, nullptr);
    for (int i = 0; i < no; ++i) tops_[i] = in[no + ni + i].data_ptr;
    // Gradients arriving at the outputs; a loss seeds its own (loss_weight x grad_scale).
    vector<void*> top_diffs(no, nullptr);
    scratch_.resize(no);
    for (int i = 0; i < no; ++i) {
      double lw = a_.loss ? info_->loss_weights[i] : 0.0;
      const Dtype* og = static_cast<const Dtype*>(in[i].data_ptr);
      size_t n = top_counts_[i];
      if (lw != 0 || (a_.loss && !a_.top_grad) || og == nullptr) {
        vector<Dtype>& buf = scratch_[i];
        buf.resize(n);
        Dtype scale = static_cast<Dtype>(lw * a_.grad_scale);
        for (size_t j = 0; j < n; ++j) buf[j] = (a_.top_grad && og != nullptr) ? og[j] * scale : scale;
        top_diffs[i] = buf.data();
      } else {
        top_diffs[i] = const_cast<Dtype*>(og);
      }
    }
    vector<void*> bottom_diffs(nd, nullptr);
    vector<bool> down(nd, false);
    for (int i = 0; i < nd; ++i) {
      void* g = out[i].data_ptr;
      if (g == nullptr) continue;
      if (!info_->allow_backward[i] || (i == 0 && runner_->type() == "Embed")) {
        // Caffe has no gradient for a label or an index: it is zero, as for any constant input.
        // (lib_api passes no req, so MXNet's buffer is there whether or not anyone reads it.)
        std::memset(g, 0, count(out[i]) * sizeof(Dtype));
        continue;
      }
      bottom_diffs[i] = g;
      down[i] = true;
    }
    for (int b = 0; b < a_.num_blobs(); ++b) {
      const MXTensor& g = out[blob_at_[b]];
      bool learn = !a_.aux[b] && a_.param_req[b] != 'n' && g.data_ptr != nullptr;
      runner_->set_param_propagate_down(b, learn);
      if (!learn) continue;
      runner_->set_param_diff(b, g.data_ptr);
      // Caffe adds into parameter diffs: that is grad_req "add"; "write" starts from zero.
      if (a_.param_req[b] != 'a') std::memset(g.data_ptr, 0, count(g) * sizeof(Dtype));
    }
    // The phase flag's gradient, if MXNet asks for it, is zero.
    if (a_.phase_input) {
      const MXTensor& g = out[ni - 1];
      if (g.data_ptr != nullptr) std::memset(g.data_ptr, 0, count(g) * sizeof(Dtype));
    }
    runner_->backward(bottoms_, tops_, top_diffs, bottom_diffs, down);
  }

  static size_t count(const MXTensor& t) {
    size_t n = 1;
    for (auto d : t.shape) n *= d;
    return n;
  }

  OpAttrs a_;
  Shapes shapes_;
  std::shared_ptr<const SetupInfo> info_;
  vector<int> blob_at_;
  string key_;
  std::unique_ptr<gcb::LayerRunner> runner_;
  vector<size_t> top_counts_;
  vector<void*> bottoms_, tops_;
  vector<vector<Dtype> > scratch_;
  std::mutex mutex_;
  bool broken_ = false;
  bool ran_forward_ = false;
};

// ---------------------------------------------------------------- registration callbacks
const string* prototxt_in(const AttrMap& attrs) {
  auto it = attrs.find("prototxt");
  return it == attrs.end() ? nullptr : &it->second;
}

MXReturnValue parse(const AttrMap& attrs, int* num_in, int* num_out) {
  return guarded("attributes", prototxt_in(attrs), [&] {
    OpAttrs a = arity(attrs);
    *num_in = a.num_inputs();
    *num_out = a.num_out;
  });
}

MXReturnValue infer_type(const AttrMap& attrs, std::vector<int>* in, std::vector<int>* out) {
  return guarded("dtype", prototxt_in(attrs), [&] {
    OpAttrs a = parse_attrs(attrs);
    // The phase flag (last input) keeps its own type; everything else is the layer's dtype.
    int n = a.num_inputs() - (a.phase_input ? 1 : 0);
    int t = (*in)[0];
    for (int i = 0; i < n; ++i)
      if ((*in)[i] != kUNSET && t == kUNSET) t = (*in)[i];
    if (t == kUNSET) return;  // not known yet; MXNet asks again
    if (t != kFloat32 && t != kFloat64) {
      throw gcb::ShapeError("dtype code " + std::to_string(t) +
                            ": Caffe computes in float32 or float64");
    }
    for (int i = 0; i < n; ++i) (*in)[i] = t;
    if (a.phase_input && (*in)[n] == kUNSET) (*in)[n] = kFloat32;
    for (auto& x : *out) x = t;
  });
}

MXReturnValue infer_shape(const AttrMap& attrs, std::vector<std::vector<unsigned int> >* in,
                          std::vector<std::vector<unsigned int> >* out) {
  return guarded("shape", prototxt_in(attrs), [&] {
    OpAttrs a = parse_attrs(attrs);
    Shapes shapes = to_shapes(*in, a.num_data);
    for (auto& s : shapes) {
      bool known = !s.empty();
      for (int d : s) known = known && d > 0;
      if (!known) throw gcb::ShapeError("an input shape is unknown");
    }
    auto info = setup_info(a, shapes);
    vector<int> at = a.blob_inputs();
    for (int b = 0; b < a.num_blobs(); ++b) (*in)[at[b]] = mx_shape(info->param_shapes[b]);
    if (a.phase_input) (*in)[a.num_inputs() - 1] = {1};
    for (int i = 0; i < a.num_out; ++i) (*out)[i] = mx_shape(info->top_shapes[i]);
  });
}

MXReturnValue mutate_inputs(const AttrMap& attrs, std::vector<int>* indices) {
  return guarded("aux", prototxt_in(attrs), [&] {
    OpAttrs a = arity(attrs);
    vector<int> at = a.blob_inputs();
    for (int b = 0; b < a.num_blobs(); ++b)
      if (a.aux[b]) indices->push_back(at[b]);
  });
}

MXReturnValue create_state(const AttrMap& attrs, const MXContext& ctx,
                           const std::vector<std::vector<unsigned int> >& in_shapes,
                           const std::vector<int> in_types, CustomStatefulOp** state) {
  return guarded("create", prototxt_in(attrs), [&] {
    if (ctx.dev_type != "cpu")
      throw gcb::UnsupportedError("context " + ctx.dev_type + ", but libcaffe is built CPU-only; use mx.cpu()");
    OpAttrs a = parse_attrs(attrs);
    Shapes shapes = to_shapes(in_shapes, a.num_data);
    auto info = setup_info(a, shapes);
    if (in_types[0] == kFloat64) {
      *state = CustomStatefulOp::create<CaffeOpState<double> >(a, shapes, info);
    } else {
      *state = CustomStatefulOp::create<CaffeOpState<float> >(a, shapes, info);
    }
  });
}

REGISTER_OP(gluon_caffe_CaffeOp)
    .setParseAttrs(parse)
    .setInferType(infer_type)
    .setInferShape(infer_shape)
    .setMutateInputs(mutate_inputs)
    .setCreateOpState(create_state, "cpu");

}  // namespace

// For gluon_caffe.nn's CaffeFiller: input shapes of a set-up seen by this library's shape
// inference whose blob `index` has shape `dims`, as "2,3,4;5" in `out`. Returns the text's
// length, 0 when no set-up matches, -1 when `out` is too small.
extern "C" int gluon_caffe_op_setup_inputs(const char* prototxt, int num_out, int index,
                                           const int* dims, int ndim, char* out, int size) {
  vector<int> want(dims, dims + ndim);
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (const auto& kv : setups) {
    const SetupInfo& info = *kv.second;
    if (info.prototxt != prototxt || info.num_out != num_out) continue;
    if (index >= static_cast<int>(info.param_shapes.size())) continue;
    vector<unsigned int> have = mx_shape(info.param_shapes[index]);
    if (vector<int>(have.begin(), have.end()) != want) continue;
    std::ostringstream text;
    for (size_t i = 0; i < info.inputs.size(); ++i) {
      text << (i ? ";" : "");
      for (size_t j = 0; j < info.inputs[i].size(); ++j) text << (j ? "," : "") << info.inputs[i][j];
    }
    string t = text.str();
    if (static_cast<int>(t.size()) + 1 > size) return -1;
    std::memcpy(out, t.c_str(), t.size() + 1);
    return static_cast<int>(t.size());
  }
  return 0;
}

MXReturnValue initialize(int version) {
  if (version >= 10700) return MX_SUCCESS;
  MX_ERROR_MSG << "gluon_caffe's operator library needs MXNet >= 1.7, found " << version;
  return MX_FAIL;
}
