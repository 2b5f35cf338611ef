/* op_reference.h - plain scalar references of the ops in kernels/ops.h, in
 * double precision, on host arrays, written from each op's definition
 * (PyTorch's and diffusers' semantics) rather than from a backend. */
#ifndef SDXL_TESTS_OPS_OP_REFERENCE_H
#define SDXL_TESTS_OPS_OP_REFERENCE_H

#include "tests/ops/op_cases.h"

/* the timesteps the embedding cases embed */
extern const float op_temb_t[8];

void ref_linear(float *y, float *const *in, const op_case *c);
void ref_conv(float *y, float *const *in, const op_case *c);
void ref_group_norm(float *y, float *const *in, const op_case *c);
void ref_layer_norm(float *y, float *const *in, const op_case *c);
void ref_attention(float *y, float *const *in, const op_case *c);
void ref_act(float *y, float *const *in, const op_case *c);
void ref_geglu(float *y, float *const *in, const op_case *c);
void ref_upsample(float *y, float *const *in, const op_case *c);
void ref_add(float *y, float *const *in, const op_case *c);
void ref_channel_bias(float *y, float *const *in, const op_case *c);
void ref_scale(float *y, float *const *in, const op_case *c);
void ref_concat(float *y, float *const *in, const op_case *c);
void ref_to_nlc(float *y, float *const *in, const op_case *c);
void ref_to_nchw(float *y, float *const *in, const op_case *c);
void ref_copy(float *y, float *const *in, const op_case *c);
void ref_temb(float *y, float *const *in, const op_case *c);
void ref_embed(float *y, float *const *in, const op_case *c);
void ref_gather(float *y, float *const *in, const op_case *c);

#endif
