# The one declaration of the C++ API gluon_caffe uses: libcaffe's types and the bridge (bridge.hpp).
# Every call that can fail ends in `except +translate_exception`.
from cpython.ref cimport PyObject
from libcpp cimport bool
from libcpp.string cimport string
from libcpp.vector cimport vector


cdef extern from "bridge.hpp" namespace "gcb" nogil:
    void translate_exception()


cdef extern from "caffe/proto/caffe.pb.h" namespace "caffe" nogil:
    cdef cppclass LayerParameter:
        LayerParameter()
        const string& name()
        const string& type()
        int bottom_size()
        int top_size()
        bool SerializeToString(string*)
        bool ParseFromString(const string&)

    cdef cppclass NetParameter:
        NetParameter()
        int layer_size()
        bool SerializeToString(string*)
        bool ParseFromString(const string&)


cdef extern from "bridge.hpp" namespace "gcb" nogil:
    ctypedef vector[vector[int]] Shapes

    void set_error_factory(PyObject*)
    void init_logging() except +translate_exception
    void set_log_level(int) except +translate_exception
    int log_level()
    void set_random_seed(unsigned int) except +translate_exception
    int protobuf_version()
    vector[string] layer_types() except +translate_exception

    LayerParameter parse_layer_text(const string&) except +translate_exception
    NetParameter parse_net_text(const string&, const string&) except +translate_exception
    bool net_text_to_binary(const string&, string*) except +translate_exception

    cdef cppclass LayerRunner:
        string type()
        string name()
        int exact_num_bottoms()
        int min_num_bottoms()
        int max_num_bottoms()
        int exact_num_tops()
        int min_num_tops()
        int max_num_tops()
        bool is_set_up()
        void setup(const Shapes&, int) except +translate_exception
        Shapes reshape(const Shapes&) except +translate_exception
        Shapes top_shapes()
        Shapes param_shapes()
        int num_params()
        void* param_data(int) except +translate_exception
        void* param_diff(int) except +translate_exception
        void set_param_data(int, void*) except +translate_exception
        void set_param_diff(int, void*) except +translate_exception
        void zero_param_diffs() except +translate_exception
        void set_param_propagate_down(int, bool) except +translate_exception
        bool param_propagate_down(int) except +translate_exception
        double loss_weight(int)
        int phase()
        void set_phase(int) except +translate_exception
        double forward(const vector[void*]&, const vector[void*]&) except +translate_exception
        void backward(const vector[void*]&, const vector[void*]&, const vector[void*]&,
                      const vector[void*]&, const vector[bool]&) except +translate_exception
        bool allow_force_backward(int)
        double param_lr_mult(int)
        double param_decay_mult(int)

    cdef cppclass NetRunner:
        string name()
        vector[string] blob_names()
        vector[string] layer_names()
        string layer_type(const string&) except +translate_exception
        vector[string] input_names()
        vector[string] output_names()
        vector[int] blob_shape(const string&) except +translate_exception
        void reshape_blob(const string&, const vector[int]&) except +translate_exception
        void* blob_data(const string&) except +translate_exception
        void* blob_diff(const string&) except +translate_exception
        void reshape() except +translate_exception
        double forward() except +translate_exception
        void clear_diffs() except +translate_exception
        double blob_loss_weight(const string&) except +translate_exception
        void backward() except +translate_exception
        int num_params(const string&) except +translate_exception
        vector[int] param_shape(const string&, int) except +translate_exception
        void* param_data(const string&, int) except +translate_exception
        void* param_diff(const string&, int) except +translate_exception
        void copy_trained(const string&) except +translate_exception
        void save(const string&) except +translate_exception

    LayerRunner* make_layer_runner(const LayerParameter&, bool) except +translate_exception
    NetRunner* make_net_runner(const NetParameter&, bool, int) except +translate_exception
