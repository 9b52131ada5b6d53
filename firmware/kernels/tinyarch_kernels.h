/* tinyarch int8 kernels: TensorFlow Lite Micro's int8 arithmetic on NHWC tensors, in portable C99.
 *
 * Every kernel reproduces TFLM's reference kernel bit for bit given the parameters that
 * tools/deploy/tflm_params.py derives from the .tflite scales and zero points exactly as TFLM's
 * Prepare does. A build compiles exactly one of reference.c (plain C99) or optimized_m7.c (Cortex-M7
 * DSP SIMD, with portable fallbacks from acle_compat.h elsewhere); both define these symbols and give
 * identical bytes. Multipliers and shifts are TFLM's (QuantizeMultiplier: real = mult * 2^(shift - 31),
 * mult >= 0), and requantisation is TFLM's default double rounding.
 */
#ifndef TINYARCH_KERNELS_H
#define TINYARCH_KERNELS_H

#include <stdint.h>

/* Output stage shared by conv, depthwise and fully connected. */
typedef struct {
    int32_t input_offset;  /* minus the input zero point; padding reads as the zero point */
    int32_t output_offset; /* the output zero point */
    int32_t act_min;       /* clamp after requantisation (fused ReLU / ReLU6 or the int8 range) */
    int32_t act_max;
    /* NULL, or a 256-entry table applied after the clamp: out = lut[v + 128]. A table must map
     * every value outside [act_min, act_max] as the clamp would (tflm_params.output_table folds the
     * clamp in), so optimised kernels may saturate to int8 and look up in one step. */
    const int8_t *lut;
} ta_output_t;

/* One output channel's constants, in one record so that one load brings all three. `bias` is
 * TFLM's bias plus input_offset * (sum of the channel's weights), folded at code generation
 * (tflm_params.channel_table): with padding read as the input zero point, every output is then
 * bias + sum(weight * input) over its whole window, exactly TFLM's value. */
typedef struct {
    int32_t bias;
    int32_t mult;
    int32_t shift;
} ta_channel_t;

/* Convolution, TFLite "SAME" padding given as top/left offsets. weights: OHWI
 * [out_c][kernel][kernel][in_c]. scratch: ta_conv_scratch bytes, 4-byte aligned (none for a
 * stride-1 1x1 convolution, which may pass NULL). */
void ta_conv_s8(const int8_t *in, int in_h, int in_w, int in_c, const int8_t *weights, const ta_channel_t *ch,
                int8_t *out, int out_h, int out_w, int out_c, int kernel, int stride, int pad_top, int pad_left,
                const ta_output_t *q, void *scratch);

/* Depthwise convolution, depth multiplier 1. weights: [kernel][kernel][c]. scratch:
 * ta_depthwise_scratch bytes, 4-byte aligned (a ring of `kernel` padded input rows of one channel). */
void ta_depthwise_s8(const int8_t *in, int in_h, int in_w, int c, const int8_t *weights, const ta_channel_t *ch,
                     int8_t *out, int out_h, int out_w, int kernel, int stride, int pad_top, int pad_left,
                     const ta_output_t *q, void *scratch);

/* Stride-1 depthwise that overwrites its input: each input row is copied into the scratch ring
 * before the output row that overwrites it is written. scratch as for ta_depthwise_s8. */
void ta_depthwise_inplace_s8(int8_t *io, int h, int w, int c, const int8_t *weights, const ta_channel_t *ch,
                             int kernel, int pad_top, int pad_left, const ta_output_t *q, void *scratch);

/* Working memory, in bytes, of the two kernels above (tools/opgraph.py computes the same). */
#define TA_ROUND2(n) (((n) + 1) & ~1)
#define ta_conv_scratch(kernel, stride, in_c) \
    ((kernel) == 1 && (stride) == 1 ? 0 : 4 * TA_ROUND2((kernel) * (kernel) * (in_c)))
#define ta_depthwise_ring_row(kernel, stride, out_w) TA_ROUND2((stride) * TA_ROUND2(out_w) + (kernel) + 2)
#define ta_depthwise_scratch(kernel, stride, out_w) (2 * (kernel) * ta_depthwise_ring_row(kernel, stride, out_w))

/* Fully connected: weights [out_n][in_n]. */
void ta_fully_connected_s8(const int8_t *in, int in_n, const int8_t *weights, const ta_channel_t *ch, int8_t *out,
                           int out_n, const ta_output_t *q);

typedef struct {
    int32_t input1_offset, input1_mult, input1_shift;
    int32_t input2_offset, input2_mult, input2_shift;
    int32_t left_shift;
    int32_t output_offset, output_mult, output_shift;
    int32_t act_min, act_max;
} ta_add_t;

/* Element-wise add of two tensors of n elements; out may alias a or b. */
void ta_add_s8(const int8_t *a, const int8_t *b, int8_t *out, int n, const ta_add_t *p);

/* input1 is x (the [1,H,W,C] tensor), input2 is s (the [1,1,1,C] scale). */
typedef struct {
    int32_t input1_offset, input2_offset;
    int32_t output_offset, output_mult, output_shift;
    int32_t act_min, act_max;
} ta_mul_t;

/* out[p][ch] = x[p][ch] * s[ch] for hw positions of c channels (squeeze-and-excite scale); out may alias x. */
void ta_mul_channel_s8(const int8_t *x, const int8_t *s, int8_t *out, int hw, int c, const ta_mul_t *p);

/* mult and shift already include the division by h * w, folded in as TFLM's MEAN kernel does
 * (tflm_params.mean_params), so one requantisation maps the zero-point-corrected sum to the output. */
typedef struct {
    int32_t input_zero_point, output_zero_point;
    int32_t mult, shift;
} ta_mean_t;

/* Mean over height and width of an h x w x c tensor into c outputs (TFLite MEAN, axes 1 and 2). */
void ta_mean_hw_s8(const int8_t *in, int h, int w, int c, int8_t *out, const ta_mean_t *p);

#endif
