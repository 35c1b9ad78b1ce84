/*
 * plugin_harness.h: drives the mq_deploy IPluginV3 plugins the way TensorRT does, without TensorRT.
 *
 * libmq_plugin_harness is built from the plugin sources against the TensorRT headers only (it
 * links no libnvinfer, and registers nothing): each call creates a plugin through its creator from
 * a PluginFieldCollection typed as the ONNX parser types node attributes (INT as kINT32, length 1),
 * runs the build-phase queries (output types, output shapes through a constant-folding
 * IExprBuilder, supportsFormatCombination over every type and format, workspace size at the profile
 * maximum, configurePlugin), round-trips the attributes through getFieldsToSerialize and
 * createPlugin(kRUNTIME), clones, attaches to a context, and finally calls onShapeChange and enqueue
 * on the caller's device buffers and stream. Any step that disagrees with the op contract fails the
 * call; mqh_error() says which, mqh_log() lists the steps run. Used by scripts/gpu_verify.
 */
#ifndef MQ_PLUGIN_HARNESS_H
#define MQ_PLUGIN_HARNESS_H

#include <stdint.h>

#define MQH_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

/* One SelectiveScan problem; every field int64 so the layout is the same in C and ctypes. */
typedef struct mqh_scan_problem {
    int64_t dtype;          /* mq_dtype of x, delta, B, C, z, y */
    int64_t delta_softplus; /* node attribute, 0/1 */
    int64_t reverse;        /* node attribute, 0/1 */
    int64_t batch;
    int64_t seqlen;
    int64_t dim;
    int64_t dstate;
    int64_t max_batch;      /* optimization-profile maximum (>= the run's extents) */
    int64_t max_seqlen;
} mqh_scan_problem;

/* Build phase only; returns the workspace bytes the plugin reserves at the profile maximum, or -1. */
MQH_API int64_t mqh_scan_build(const mqh_scan_problem* problem);

/* Whole lifecycle, then enqueue. inputs: the 9 device pointers in contract order (x, delta, A, B,
 * C, D, delta_bias, z, gate_scale); outputs: y, final_state; workspace: at least mqh_scan_build()
 * bytes. Returns 0 when every step passed and enqueue returned 0 (the work is queued on stream). */
MQH_API int32_t mqh_scan_run(const mqh_scan_problem* problem, const void* const* inputs, void* const* outputs,
    void* workspace, void* stream);

/* One SSDScan problem (Mamba-2); int64 fields, then the two float attributes as doubles. */
typedef struct mqh_ssd_problem {
    int64_t dtype;          /* mq_dtype of x, dt, B, C, y */
    int64_t head_dim;       /* node attributes */
    int64_t n_groups;
    int64_t dt_softplus;
    int64_t batch;
    int64_t seqlen;
    int64_t heads;
    int64_t dstate;
    int64_t max_batch;      /* optimization-profile maximum (>= the run's extents) */
    int64_t max_seqlen;
    double dt_min;          /* node attributes (FLOAT, sent as kFLOAT32 by the parser) */
    double dt_max;
} mqh_ssd_problem;

/* Build phase only; the workspace bytes the plugin reserves at the profile maximum, or -1. */
MQH_API int64_t mqh_ssd_build(const mqh_ssd_problem* problem);

/* Whole lifecycle, then enqueue. inputs: the 7 device pointers in contract order (x, dt, A, B, C,
 * D, dt_bias); outputs: y, final_state; workspace: at least mqh_ssd_build() bytes. 0 on success. */
MQH_API int32_t mqh_ssd_run(const mqh_ssd_problem* problem, const void* const* inputs, void* const* outputs,
    void* workspace, void* stream);

/* SSDScan's negative checks, as mqh_self_test's. Launches nothing. */
MQH_API int32_t mqh_ssd_self_test(void);

/* HadamardTransform: x of shape dims[0..rank) and dtype (mq_dtype), signs [n] float32, y like x. */
MQH_API int32_t mqh_hadamard_run(int64_t dtype, int32_t rank, const int64_t* dims, const void* x, const float* signs,
    void* y, void* stream);

/* HadamardQuantize: as mqh_hadamard_run plus scale (one element of dtype, device memory); y int8 like x. */
MQH_API int32_t mqh_hadamard_quantize_run(int64_t dtype, int32_t rank, const int64_t* dims, const void* x,
    const float* signs, const void* scale, void* y, void* stream);

/* Negative checks (bad attributes, types, shapes, arity, unsupported sizes): each must be refused
 * cleanly, and a few valid controls accepted. Returns the number that went otherwise; mqh_log()
 * lists them all. Launches nothing, so it also runs on a machine without a GPU. */
MQH_API int32_t mqh_self_test(void);

MQH_API const char* mqh_log(void);   /* steps of the last call, one per line */
MQH_API const char* mqh_error(void); /* first failure of the last call, "" if none */

#ifdef __cplusplus
}
#endif

#endif /* MQ_PLUGIN_HARNESS_H */
