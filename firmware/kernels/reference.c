/* tinyarch int8 kernels, plain C99 reference versions.
 *
 * Each function follows the integer arithmetic of TFLM's int8 reference kernel so that results
 * agree bit for bit; conv, depthwise and fully connected start from the folded bias of ta_channel_t
 * and read padding as the input zero point, which gives TFLM's sums exactly. optimized_m7.c defines the same symbols; a build links one of the
 * two. Assumes two's complement integers and arithmetic right shifts of negative values (true of
 * GCC and Clang on every target tinyarch supports).
 *
 * Requantisation uses TFLM's default "double rounding" (gemmlowp) arithmetic, which is what the
 * tflite_micro Python package and the default TFLM build use. Compiling with
 * -DTA_SINGLE_ROUNDING=1 switches to TFLM's single-rounding variant instead (for checks only).
 */
#include <stddef.h>

#include "tinyarch_kernels.h"

#ifndef TA_SINGLE_ROUNDING
#define TA_SINGLE_ROUNDING 0
#endif

#if !TA_SINGLE_ROUNDING
/* High 32 bits of 2*a*b, rounded to nearest (gemmlowp's saturating rounding doubling high mul). */
static int32_t rounding_doubling_high_mul(int32_t a, int32_t b) {
    int64_t product, nudge;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    product = (int64_t)a * (int64_t)b;
    nudge = product >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((product + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero. */
static int32_t rounding_divide_by_pot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}
#endif

/* x * multiplier * 2^(shift - 31), TFLM's MultiplyByQuantizedMultiplier for a 32-bit x. */
static int32_t requantize(int32_t x, int32_t multiplier, int32_t shift) {
#if TA_SINGLE_ROUNDING
    const int total = 31 - (int)shift;
    const int64_t round = (int64_t)1 << (total - 1);
    return (int32_t)(((int64_t)x * multiplier + round) >> total);
#else
    const int left = shift > 0 ? (int)shift : 0;
    const int right = shift > 0 ? 0 : (int)-shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left);
    return rounding_divide_by_pot(rounding_doubling_high_mul(shifted, multiplier), right);
#endif
}

static int32_t clamp(int32_t v, int32_t lo, int32_t hi) {
    if (v < lo) {
        v = lo;
    }
    if (v > hi) {
        v = hi;
    }
    return v;
}

/* Requantise an accumulator, add the output zero point, clamp, then the optional table. */
static int8_t output_stage(int32_t acc, int32_t multiplier, int32_t shift, const ta_output_t *q) {
    int32_t v = requantize(acc, multiplier, shift) + q->output_offset;
    v = clamp(v, q->act_min, q->act_max);
    if (q->lut != NULL) {
        v = q->lut[v + 128];
    }
    return (int8_t)v;
}

/* Input value at (iy, ix) of channel ch, or the zero point outside the image (see ta_channel_t). */
static int32_t input_at(const int8_t *in, int in_h, int in_w, int c, int iy, int ix, int ch, const ta_output_t *q) {
    if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
        return -q->input_offset;
    }
    return in[((size_t)iy * in_w + ix) * c + ch];
}

void ta_conv_s8(const int8_t *in, int in_h, int in_w, int in_c, const int8_t *weights, const ta_channel_t *ch,
                int8_t *out, int out_h, int out_w, int out_c, int kernel, int stride, int pad_top, int pad_left,
                const ta_output_t *q, void *scratch) {
    int oy, ox, oc, ky, kx, ic;
    (void)scratch;
    for (oy = 0; oy < out_h; ++oy) {
        for (ox = 0; ox < out_w; ++ox) {
            for (oc = 0; oc < out_c; ++oc) {
                int32_t acc = ch[oc].bias;
                for (ky = 0; ky < kernel; ++ky) {
                    for (kx = 0; kx < kernel; ++kx) {
                        const int iy = oy * stride - pad_top + ky, ix = ox * stride - pad_left + kx;
                        const int8_t *pw = weights + (((size_t)oc * kernel + ky) * kernel + kx) * in_c;
                        for (ic = 0; ic < in_c; ++ic) {
                            acc += (int32_t)pw[ic] * input_at(in, in_h, in_w, in_c, iy, ix, ic, q);
                        }
                    }
                }
                out[((size_t)oy * out_w + ox) * out_c + oc] = output_stage(acc, ch[oc].mult, ch[oc].shift, q);
            }
        }
    }
}

/* One output value of a depthwise convolution for channel c0 of a c-channel input. */
static int32_t depthwise_acc(const int8_t *in, int in_h, int in_w, int c, int c0, const int8_t *weights, int kernel,
                             int y0, int x0, const ta_output_t *q) {
    int32_t acc = 0;
    int ky, kx;
    for (ky = 0; ky < kernel; ++ky) {
        for (kx = 0; kx < kernel; ++kx) {
            const int32_t w = weights[((size_t)ky * kernel + kx) * c + c0];
            acc += w * input_at(in, in_h, in_w, c, y0 + ky, x0 + kx, c0, q);
        }
    }
    return acc;
}

void ta_depthwise_s8(const int8_t *in, int in_h, int in_w, int c, const int8_t *weights, const ta_channel_t *ch,
                     int8_t *out, int out_h, int out_w, int kernel, int stride, int pad_top, int pad_left,
                     const ta_output_t *q, void *scratch) {
    int oy, ox, c0;
    (void)scratch;
    for (oy = 0; oy < out_h; ++oy) {
        for (ox = 0; ox < out_w; ++ox) {
            for (c0 = 0; c0 < c; ++c0) {
                const int32_t acc = ch[c0].bias + depthwise_acc(in, in_h, in_w, c, c0, weights, kernel,
                                                                oy * stride - pad_top, ox * stride - pad_left, q);
                out[((size_t)oy * out_w + ox) * c + c0] = output_stage(acc, ch[c0].mult, ch[c0].shift, q);
            }
        }
    }
}

/* Per channel, input rows are copied into a ring of `kernel` rows before the output row that
 * overwrites them is written; the rows an output row reads are the last `kernel` copied. */
void ta_depthwise_inplace_s8(int8_t *io, int h, int w, int c, const int8_t *weights, const ta_channel_t *ch,
                             int kernel, int pad_top, int pad_left, const ta_output_t *q, void *scratch) {
    const int row = ta_depthwise_ring_row(kernel, 1, w);
    int16_t *ring = (int16_t *)scratch;
    int c0, y, x, ky, kx;
    for (c0 = 0; c0 < c; ++c0) {
        int next = 0; /* the next input row to copy */
        for (y = 0; y < h; ++y) {
            for (; next < h && next <= y - pad_top + kernel - 1; ++next) {
                for (x = 0; x < w; ++x) {
                    ring[(next % kernel) * row + x] = io[((size_t)next * w + x) * c + c0];
                }
            }
            for (x = 0; x < w; ++x) {
                int32_t acc = ch[c0].bias;
                for (ky = 0; ky < kernel; ++ky) {
                    const int iy = y - pad_top + ky;
                    for (kx = 0; kx < kernel; ++kx) {
                        const int ix = x - pad_left + kx;
                        const int32_t v = iy < 0 || iy >= h || ix < 0 || ix >= w ? -q->input_offset
                                                                               : ring[(iy % kernel) * row + ix];
                        acc += (int32_t)weights[((size_t)ky * kernel + kx) * c + c0] * v;
                    }
                }
                io[((size_t)y * w + x) * c + c0] = output_stage(acc, ch[c0].mult, ch[c0].shift, q);
            }
        }
    }
}

void ta_fully_connected_s8(const int8_t *in, int in_n, const int8_t *weights, const ta_channel_t *ch, int8_t *out,
                           int out_n, const ta_output_t *q) {
    int o, i;
    for (o = 0; o < out_n; ++o) {
        const int8_t *row = weights + (size_t)o * in_n;
        int32_t acc = ch[o].bias;
        for (i = 0; i < in_n; ++i) {
            acc += (int32_t)row[i] * in[i];
        }
        out[o] = output_stage(acc, ch[o].mult, ch[o].shift, q);
    }
}

void ta_add_s8(const int8_t *a, const int8_t *b, int8_t *out, int n, const ta_add_t *p) {
    int i;
    for (i = 0; i < n; ++i) {
        const int32_t x1 = (int32_t)((uint32_t)(p->input1_offset + a[i]) << p->left_shift);
        const int32_t x2 = (int32_t)((uint32_t)(p->input2_offset + b[i]) << p->left_shift);
        const int32_t sum = requantize(x1, p->input1_mult, p->input1_shift) +
                            requantize(x2, p->input2_mult, p->input2_shift);
        const int32_t v = requantize(sum, p->output_mult, p->output_shift) + p->output_offset;
        out[i] = (int8_t)clamp(v, p->act_min, p->act_max);
    }
}

void ta_mul_channel_s8(const int8_t *x, const int8_t *s, int8_t *out, int hw, int c, const ta_mul_t *p) {
    int i, ch;
    for (i = 0; i < hw; ++i) {
        for (ch = 0; ch < c; ++ch) {
            const size_t k = (size_t)i * c + ch;
            const int32_t prod = (p->input1_offset + x[k]) * (p->input2_offset + s[ch]);
            const int32_t v = requantize(prod, p->output_mult, p->output_shift) + p->output_offset;
            out[k] = (int8_t)clamp(v, p->act_min, p->act_max);
        }
    }
}

void ta_mean_hw_s8(const int8_t *in, int h, int w, int c, int8_t *out, const ta_mean_t *p) {
    const int n = h * w;
    int ch, i;
    for (ch = 0; ch < c; ++ch) {
        int32_t sum = 0;
        for (i = 0; i < n; ++i) {
            sum += in[(size_t)i * c + ch];
        }
        sum -= p->input_zero_point * n;
        out[ch] = (int8_t)clamp(requantize(sum, p->mult, p->shift) + p->output_zero_point, -128, 127);
    }
}
