/* tinyarch int8 kernels optimised for Cortex-M7 (ARMv7E-M DSP SIMD), bit-identical to reference.c.
 *
 * Same symbols and results as reference.c; a build links one of the two. The SIMD helpers come from
 * acle_compat.h: single DSP instructions on ARM, portable C elsewhere (so the host tests run this
 * file too). Techniques:
 *
 * - Conv, pointwise and fully connected share one micro-kernel: a dot product of one input vector
 *   with four weight rows. Four int8 inputs are loaded with one (unaligned) 32-bit load and widened
 *   to two int16 pairs with SXTAB16, which adds the input offset at the same time; each weight word
 *   is widened with SXTB16 (and ROR for the odd bytes, matching the input pairing), and SMLAD does
 *   two multiply-accumulates. The widened input is shared by the four output channels.
 * - Conv needs no im2col: for each kernel row the valid taps form one contiguous run of
 *   (taps * in_c) bytes in both input and weights, so the padding is handled by clipping the run
 *   once per output pixel and the inner loop has no bounds checks.
 * - Depthwise works on blocks of four channels: the block's weights are widened once into a small
 *   stack table, every tap loads four channels with one 32-bit load and accumulates them with
 *   SMLABB/SMLATT. Window clipping is computed per output pixel, outside the tap loops.
 * - In-place depthwise keeps only (pad_top + 1) output rows of a channel block in the scratch ring
 *   and writes each row back once the input rows it would overwrite are no longer needed, so the
 *   four-channel path is used whenever 4 * (pad_top + 1) <= h.
 * - Mean sums four channels per load in int16 lanes (SXTAB16), flushed every 256 pixels.
 *
 * Integer accumulations are modulo 2^32 exactly as in the reference, so reordering them does not
 * change any result.
 */
#include <stddef.h>
#include <string.h>

#include "acle_compat.h"
#include "tinyarch_kernels.h"

#ifndef TA_SINGLE_ROUNDING
#define TA_SINGLE_ROUNDING 0
#endif

/* Largest depthwise kernel (taps) whose widened weights are kept on the stack: 7x7. */
#define TA_DW_MAX_TAPS 49

static inline uint32_t load32(const int8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The input offset in both halfwords, for SXTAB16. */
static inline uint32_t pack_offset(int32_t offset) {
    return ((uint32_t)offset & 0xFFFFu) * 0x00010001u;
}

static inline int32_t lo16(uint32_t x) {
    return (int32_t)(int16_t)(uint16_t)(x & 0xFFFFu);
}

static inline int32_t hi16(uint32_t x) {
    return (int32_t)(int16_t)(uint16_t)(x >> 16);
}

static inline int imin(int a, int b) {
    return a < b ? a : b;
}

static inline int imax(int a, int b) {
    return a > b ? a : b;
}

/* TFLM's MultiplyByQuantizedMultiplier for a 32-bit x and multiplier >= 0. The doubling high
 * multiply with gemmlowp's nudge equals (x * m + 2^30) >> 31 for every sign of x * m, and the
 * rounding right shift (ties away from zero) is done with a mask compare, all without division. */
static inline int32_t requantize(int32_t x, int32_t multiplier, int32_t shift) {
#if TA_SINGLE_ROUNDING
    const int total = 31 - (int)shift;
    return (int32_t)(((int64_t)x * multiplier + ((int64_t)1 << (total - 1))) >> total);
#else
    int32_t v;
    if (shift > 0) {
        x = (int32_t)((uint32_t)x << shift);
    }
    v = (int32_t)(((int64_t)x * multiplier + ((int64_t)1 << 30)) >> 31);
    if (shift < 0) {
        const int e = (int)-shift;
        const uint32_t mask = (1u << e) - 1u;
        const uint32_t threshold = (mask >> 1) + (v < 0 ? 1u : 0u);
        v = (v >> e) + (((uint32_t)v & mask) > threshold ? 1 : 0);
    }
    return v;
#endif
}

static inline int32_t clamp(int32_t v, int32_t lo, int32_t hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* The output stage's parameters copied into locals: stores through int8_t pointers may alias
 * anything, so values read through q would otherwise be reloaded after every output byte. */
typedef struct {
    int32_t zero, lo, hi;
    const int8_t *lut;
} out_params;

static inline out_params out_params_of(const ta_output_t *q) {
    out_params o;
    o.zero = q->output_offset;
    o.lo = q->act_min;
    o.hi = q->act_max;
    o.lut = q->lut;
    return o;
}

static inline int8_t output_stage(int32_t acc, int32_t multiplier, int32_t shift, out_params o) {
    int32_t v = clamp(requantize(acc, multiplier, shift) + o.zero, o.lo, o.hi);
    if (o.lut != NULL) {
        v = o.lut[v + 128];
    }
    return (int8_t)v;
}

/* acc[j] += sum_i w[j * wstride + i] * (x[i] + offset) for j = 0..3 and i < n. */
static inline void dot_4rows(const int8_t *x, const int8_t *w, size_t wstride, int n, uint32_t offset2,
                             int32_t offset, int32_t *acc) {
    /* Two row pointers plus the row stride keep the loop within the core's registers. */
    const int8_t *wa = w;
    const int8_t *wb = w + 2 * wstride;
    const int8_t *xend = x + (n & ~3);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int i;
    while (x != xend) {
        const uint32_t xv = load32(x);
        const uint32_t x02 = ta_sxtab16(offset2, xv);
        const uint32_t x13 = ta_sxtab16_ror8(offset2, xv);
        uint32_t wv;
        x += 4;
        wv = load32(wa);
        a0 = ta_smlad(ta_sxtb16(wv), x02, a0);
        a0 = ta_smlad(ta_sxtb16_ror8(wv), x13, a0);
        wv = load32(wa + wstride);
        a1 = ta_smlad(ta_sxtb16(wv), x02, a1);
        a1 = ta_smlad(ta_sxtb16_ror8(wv), x13, a1);
        wv = load32(wb);
        a2 = ta_smlad(ta_sxtb16(wv), x02, a2);
        a2 = ta_smlad(ta_sxtb16_ror8(wv), x13, a2);
        wv = load32(wb + wstride);
        a3 = ta_smlad(ta_sxtb16(wv), x02, a3);
        a3 = ta_smlad(ta_sxtb16_ror8(wv), x13, a3);
        wa += 4;
        wb += 4;
    }
    for (i = n & 3; i > 0; --i) {
        const int32_t xv = (int32_t)*x++ + offset;
        a0 += (int32_t)wa[0] * xv;
        a1 += (int32_t)wa[wstride] * xv;
        a2 += (int32_t)wb[0] * xv;
        a3 += (int32_t)wb[wstride] * xv;
        ++wa;
        ++wb;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* acc + sum_i w[i] * (x[i] + offset) for i < n. */
static inline int32_t dot_1row(const int8_t *x, const int8_t *w, int n, uint32_t offset2, int32_t offset,
                               int32_t acc) {
    int i;
    for (i = n >> 2; i > 0; --i) {
        const uint32_t xv = load32(x);
        const uint32_t wv = load32(w);
        x += 4;
        w += 4;
        acc = ta_smlad(ta_sxtb16(wv), ta_sxtab16(offset2, xv), acc);
        acc = ta_smlad(ta_sxtb16_ror8(wv), ta_sxtab16_ror8(offset2, xv), acc);
    }
    for (i = n & 3; i > 0; --i) {
        acc += (int32_t)*w++ * ((int32_t)*x++ + offset);
    }
    return acc;
}

void ta_conv_s8(const int8_t *in, int in_h, int in_w, int in_c, const int8_t *weights, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int8_t *out, int out_h, int out_w, int out_c,
                int kernel, int stride, int pad_top, int pad_left, const ta_output_t *q) {
    const size_t wstride = (size_t)kernel * kernel * in_c; /* bytes per output channel */
    const size_t in_row = (size_t)in_w * in_c;
    const size_t w_row = (size_t)kernel * in_c;
    const int32_t offset = q->input_offset;
    const uint32_t offset2 = pack_offset(offset);
    const out_params op = out_params_of(q);
    int oy, ox, oc, ky;
    for (oy = 0; oy < out_h; ++oy) {
        const int y0 = oy * stride - pad_top;
        const int ky0 = imax(0, -y0);
        const int rows = imin(kernel, in_h - y0) - ky0;
        for (ox = 0; ox < out_w; ++ox) {
            const int x0 = ox * stride - pad_left;
            const int kx0 = imax(0, -x0);
            const int taps = imin(kernel, in_w - x0) - kx0;
            const int run = taps * in_c; /* contiguous valid bytes per kernel row */
            const int8_t *xstart = in + (ptrdiff_t)(y0 + ky0) * (ptrdiff_t)in_row + (ptrdiff_t)(x0 + kx0) * in_c;
            const int8_t *wstart = weights + ((size_t)ky0 * kernel + kx0) * in_c;
            int8_t *o = out + ((size_t)oy * out_w + ox) * out_c;
            const int nrows = taps > 0 ? rows : 0;
            for (oc = 0; oc + 4 <= out_c; oc += 4) {
                int32_t acc[4] = {0, 0, 0, 0};
                const int8_t *xp = xstart;
                const int8_t *wp = wstart + (size_t)oc * wstride;
                int j;
                if (bias != NULL) {
                    acc[0] = bias[oc];
                    acc[1] = bias[oc + 1];
                    acc[2] = bias[oc + 2];
                    acc[3] = bias[oc + 3];
                }
                for (ky = nrows; ky > 0; --ky) {
                    dot_4rows(xp, wp, wstride, run, offset2, offset, acc);
                    xp += in_row;
                    wp += w_row;
                }
                for (j = 0; j < 4; ++j) {
                    o[oc + j] = output_stage(acc[j], mult[oc + j], shift[oc + j], op);
                }
            }
            for (; oc < out_c; ++oc) {
                int32_t acc = bias != NULL ? bias[oc] : 0;
                const int8_t *xp = xstart;
                const int8_t *wp = wstart + (size_t)oc * wstride;
                for (ky = nrows; ky > 0; --ky) {
                    acc = dot_1row(xp, wp, run, offset2, offset, acc);
                    xp += in_row;
                    wp += w_row;
                }
                o[oc] = output_stage(acc, mult[oc], shift[oc], op);
            }
        }
    }
}

void ta_fully_connected_s8(const int8_t *in, int in_n, const int8_t *weights, const int32_t *bias,
                           const int32_t *mult, const int32_t *shift, int8_t *out, int out_n, const ta_output_t *q) {
    const int32_t offset = q->input_offset;
    const uint32_t offset2 = pack_offset(offset);
    const out_params op = out_params_of(q);
    int o = 0, j;
    for (; o + 4 <= out_n; o += 4) {
        int32_t acc[4] = {0, 0, 0, 0};
        if (bias != NULL) {
            for (j = 0; j < 4; ++j) {
                acc[j] = bias[o + j];
            }
        }
        dot_4rows(in, weights + (size_t)o * in_n, (size_t)in_n, in_n, offset2, offset, acc);
        for (j = 0; j < 4; ++j) {
            out[o + j] = output_stage(acc[j], mult[o + j], shift[o + j], op);
        }
    }
    for (; o < out_n; ++o) {
        const int32_t acc = dot_1row(in, weights + (size_t)o * in_n, in_n, offset2, offset, bias != NULL ? bias[o] : 0);
        out[o] = output_stage(acc, mult[o], shift[o], op);
    }
}

/* Geometry and quantisation shared by the depthwise row kernels. */
typedef struct {
    const int8_t *in; /* input, already advanced to the first channel of the block */
    int in_h, in_w, c, kernel, stride, pad_top, pad_left, out_w;
    int32_t offset;
    out_params op;
} dw_args;

/* One output row of four channels. wx: the block's weights widened per tap to the int16 pairs
 * (ch0, ch2), (ch1, ch3). b, m, s: the block's bias, multipliers and shifts. Results go to dst,
 * dst + step, ... (four bytes each). */
static void dw_row4(const dw_args *a, int oy, const uint32_t *wx, const int32_t *b, const int32_t *m,
                    const int32_t *s, int8_t *dst, size_t step) {
    const int c = a->c;
    const int k = a->kernel;
    const int in_w = a->in_w;
    const int stride = a->stride;
    const int pad_left = a->pad_left;
    const int out_w = a->out_w;
    const size_t in_row = (size_t)in_w * c;
    const int y0 = oy * stride - a->pad_top;
    const int ky0 = imax(0, -y0);
    const int rows = imin(k, a->in_h - y0) - ky0;
    const int8_t *in_rows = a->in + (ptrdiff_t)(y0 + ky0) * (ptrdiff_t)in_row;
    const uint32_t *w_rows = wx + 2 * ky0 * k;
    const uint32_t offset2 = pack_offset(a->offset);
    const out_params op = a->op;
    const int32_t b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
    const int32_t m0 = m[0], m1 = m[1], m2 = m[2], m3 = m[3];
    const int32_t s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
    int ox, ky, kx;
    for (ox = 0; ox < out_w; ++ox) {
        const int x0 = ox * stride - pad_left;
        const int kx0 = imax(0, -x0);
        const int taps = imin(k, in_w - x0) - kx0;
        const int8_t *xrow = in_rows + (ptrdiff_t)(x0 + kx0) * c;
        const uint32_t *wrow = w_rows + 2 * kx0;
        int32_t a0 = b0, a1 = b1, a2 = b2, a3 = b3;
        for (ky = taps > 0 ? rows : 0; ky > 0; --ky) {
            const int8_t *xp = xrow;
            const uint32_t *wp = wrow;
            for (kx = taps; kx > 0; --kx) {
                const uint32_t xv = load32(xp);
                const uint32_t x02 = ta_sxtab16(offset2, xv);
                const uint32_t x13 = ta_sxtab16_ror8(offset2, xv);
                a0 = ta_smlabb(x02, wp[0], a0);
                a2 = ta_smlatt(x02, wp[0], a2);
                a1 = ta_smlabb(x13, wp[1], a1);
                a3 = ta_smlatt(x13, wp[1], a3);
                xp += c;
                wp += 2;
            }
            xrow += in_row;
            wrow += 2 * k;
        }
        dst[0] = output_stage(a0, m0, s0, op);
        dst[1] = output_stage(a1, m1, s1, op);
        dst[2] = output_stage(a2, m2, s2, op);
        dst[3] = output_stage(a3, m3, s3, op);
        dst += step;
    }
}

/* One output row of a single channel; w: that channel's first weight, taps c bytes apart. */
static void dw_row1(const dw_args *a, int oy, const int8_t *w, int32_t b, int32_t m, int32_t s, int8_t *dst,
                    size_t step) {
    const int c = a->c;
    const int k = a->kernel;
    const int in_w = a->in_w;
    const size_t in_row = (size_t)in_w * c;
    const int y0 = oy * a->stride - a->pad_top;
    const int ky0 = imax(0, -y0);
    const int rows = imin(k, a->in_h - y0) - ky0;
    const int8_t *in_rows = a->in + (ptrdiff_t)(y0 + ky0) * (ptrdiff_t)in_row;
    const int8_t *w_rows = w + (ptrdiff_t)ky0 * k * c;
    const int32_t offset = a->offset;
    const out_params op = a->op;
    int ox, ky, kx;
    for (ox = 0; ox < a->out_w; ++ox) {
        const int x0 = ox * a->stride - a->pad_left;
        const int kx0 = imax(0, -x0);
        const int taps = imin(k, in_w - x0) - kx0;
        const int8_t *xrow = in_rows + (ptrdiff_t)(x0 + kx0) * c;
        const int8_t *wrow = w_rows + (ptrdiff_t)kx0 * c;
        int32_t acc = b;
        for (ky = taps > 0 ? rows : 0; ky > 0; --ky) {
            const int8_t *xp = xrow;
            const int8_t *wp = wrow;
            for (kx = taps; kx > 0; --kx) {
                acc += (int32_t)*wp * ((int32_t)*xp + offset);
                xp += c;
                wp += c;
            }
            xrow += in_row;
            wrow += (ptrdiff_t)k * c;
        }
        *dst = output_stage(acc, m, s, op);
        dst += step;
    }
}

/* Widen the weights of channels c0..c0+3 for dw_row4. */
static void dw_widen(const int8_t *weights, int taps, int c, int c0, uint32_t *wx) {
    int t;
    for (t = 0; t < taps; ++t) {
        const uint32_t wv = load32(weights + (size_t)t * c + c0);
        wx[2 * t] = ta_sxtb16(wv);
        wx[2 * t + 1] = ta_sxtb16_ror8(wv);
    }
}

static void dw_block_params(const int32_t *bias, const int32_t *mult, const int32_t *shift, int c0, int n,
                            int32_t *b, int32_t *m, int32_t *s) {
    int j;
    for (j = 0; j < n; ++j) {
        b[j] = bias != NULL ? bias[c0 + j] : 0;
        m[j] = mult[c0 + j];
        s[j] = shift[c0 + j];
    }
}

static void dw_args_init(dw_args *a, int in_h, int in_w, int c, int kernel, int stride, int pad_top, int pad_left,
                         int out_w, const ta_output_t *q) {
    a->in = NULL;
    a->in_h = in_h;
    a->in_w = in_w;
    a->c = c;
    a->kernel = kernel;
    a->stride = stride;
    a->pad_top = pad_top;
    a->pad_left = pad_left;
    a->out_w = out_w;
    a->offset = q->input_offset;
    a->op = out_params_of(q);
}

void ta_depthwise_s8(const int8_t *in, int in_h, int in_w, int c, const int8_t *weights, const int32_t *bias,
                     const int32_t *mult, const int32_t *shift, int8_t *out, int out_h, int out_w, int kernel,
                     int stride, int pad_top, int pad_left, const ta_output_t *q) {
    const int taps = kernel * kernel;
    const size_t out_row = (size_t)out_w * c;
    dw_args a;
    int32_t b[4], m[4], s[4];
    int c0 = 0, oy;
    dw_args_init(&a, in_h, in_w, c, kernel, stride, pad_top, pad_left, out_w, q);
    if (taps <= TA_DW_MAX_TAPS) {
        uint32_t wx[2 * TA_DW_MAX_TAPS];
        for (; c0 + 4 <= c; c0 += 4) {
            a.in = in + c0;
            dw_widen(weights, taps, c, c0, wx);
            dw_block_params(bias, mult, shift, c0, 4, b, m, s);
            for (oy = 0; oy < out_h; ++oy) {
                dw_row4(&a, oy, wx, b, m, s, out + oy * out_row + c0, (size_t)c);
            }
        }
    }
    for (; c0 < c; ++c0) {
        a.in = in + c0;
        dw_block_params(bias, mult, shift, c0, 1, b, m, s);
        for (oy = 0; oy < out_h; ++oy) {
            dw_row1(&a, oy, weights + c0, b[0], m[0], s[0], out + oy * out_row + c0, (size_t)c);
        }
    }
}

/* Copy one row of n-channel pixels from the packed scratch ring back into the c-channel tensor. */
static void write_back(const int8_t *src, int8_t *dst, int w, int n, int c) {
    int x;
    for (x = 0; x < w; ++x) {
        memcpy(dst + (size_t)x * c, src + (size_t)x * n, (size_t)n);
    }
}

void ta_depthwise_inplace_s8(int8_t *io, int h, int w, int c, const int8_t *weights, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift, int kernel, int pad_top, int pad_left,
                             const ta_output_t *q, int8_t *scratch) {
    /* Output row r may replace input row r once output row r + delay is done. */
    const int delay = imax(pad_top, 0);
    const int ring = imin(delay + 1, h);
    const int taps = kernel * kernel;
    const size_t row = (size_t)w * c;
    dw_args a;
    int32_t b[4], m[4], s[4];
    int c0 = 0, r;
    dw_args_init(&a, h, w, c, kernel, 1, pad_top, pad_left, w, q);
    if (taps <= TA_DW_MAX_TAPS && 4 * ring <= h) {
        uint32_t wx[2 * TA_DW_MAX_TAPS];
        const size_t slot = (size_t)w * 4;
        for (; c0 + 4 <= c; c0 += 4) {
            a.in = io + c0;
            dw_widen(weights, taps, c, c0, wx);
            dw_block_params(bias, mult, shift, c0, 4, b, m, s);
            for (r = 0; r < h; ++r) {
                dw_row4(&a, r, wx, b, m, s, scratch + (size_t)(r % ring) * slot, 4);
                if (r >= delay) {
                    write_back(scratch + (size_t)((r - delay) % ring) * slot, io + (r - delay) * row + c0, w, 4, c);
                }
            }
            for (r = imax(0, h - delay); r < h; ++r) {
                write_back(scratch + (size_t)(r % ring) * slot, io + r * row + c0, w, 4, c);
            }
        }
    }
    for (; c0 < c; ++c0) {
        a.in = io + c0;
        dw_block_params(bias, mult, shift, c0, 1, b, m, s);
        for (r = 0; r < h; ++r) {
            dw_row1(&a, r, weights + c0, b[0], m[0], s[0], scratch + (size_t)(r % ring) * w, 1);
            if (r >= delay) {
                write_back(scratch + (size_t)((r - delay) % ring) * w, io + (r - delay) * row + c0, w, 1, c);
            }
        }
        for (r = imax(0, h - delay); r < h; ++r) {
            write_back(scratch + (size_t)(r % ring) * w, io + r * row + c0, w, 1, c);
        }
    }
}

void ta_add_s8(const int8_t *a, const int8_t *b, int8_t *out, int n, const ta_add_t *p) {
    const int32_t off1 = p->input1_offset, m1 = p->input1_mult, s1 = p->input1_shift;
    const int32_t off2 = p->input2_offset, m2 = p->input2_mult, s2 = p->input2_shift;
    const int32_t mo = p->output_mult, so = p->output_shift, zo = p->output_offset;
    const int ls = (int)p->left_shift;
    int i;
    for (i = 0; i < n; ++i) {
        const int32_t x1 = (int32_t)((uint32_t)(off1 + a[i]) << ls);
        const int32_t x2 = (int32_t)((uint32_t)(off2 + b[i]) << ls);
        const int32_t sum = requantize(x1, m1, s1) + requantize(x2, m2, s2);
        out[i] = (int8_t)clamp(requantize(sum, mo, so) + zo, p->act_min, p->act_max);
    }
}

void ta_mul_channel_s8(const int8_t *x, const int8_t *s, int8_t *out, int hw, int c, const ta_mul_t *p) {
    const int32_t off1 = p->input1_offset, off2 = p->input2_offset;
    const int32_t m = p->output_mult, sh = p->output_shift, zo = p->output_offset;
    const int32_t lo = p->act_min, hi = p->act_max;
    int i, ch;
    for (i = 0; i < hw; ++i) {
        const int8_t *xp = x + (size_t)i * c;
        int8_t *op = out + (size_t)i * c;
        for (ch = 0; ch < c; ++ch) {
            const int32_t prod = (off1 + xp[ch]) * (off2 + s[ch]);
            op[ch] = (int8_t)clamp(requantize(prod, m, sh) + zo, lo, hi);
        }
    }
}

static inline int8_t mean_out(int32_t sum, int n, const ta_mean_t *p) {
    sum -= p->input_zero_point * n;
    return (int8_t)clamp(requantize(sum, p->mult, p->shift) + p->output_zero_point, -128, 127);
}

void ta_mean_hw_s8(const int8_t *in, int h, int w, int c, int8_t *out, const ta_mean_t *p) {
    const int n = h * w;
    int c0 = 0, i;
    for (; c0 + 4 <= c; c0 += 4) {
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        const int8_t *ptr = in + c0;
        int left = n;
        while (left > 0) {
            /* 256 int8 values always fit an int16 lane. */
            int chunk = imin(left, 256);
            uint32_t e = 0, o = 0;
            left -= chunk;
            for (; chunk > 0; --chunk) {
                const uint32_t v = load32(ptr);
                e = ta_sxtab16(e, v);
                o = ta_sxtab16_ror8(o, v);
                ptr += c;
            }
            s0 += lo16(e);
            s2 += hi16(e);
            s1 += lo16(o);
            s3 += hi16(o);
        }
        out[c0] = mean_out(s0, n, p);
        out[c0 + 1] = mean_out(s1, n, p);
        out[c0 + 2] = mean_out(s2, n, p);
        out[c0 + 3] = mean_out(s3, n, p);
    }
    for (; c0 < c; ++c0) {
        int32_t sum = 0;
        for (i = 0; i < n; ++i) {
            sum += in[(size_t)i * c + c0];
        }
        out[c0] = mean_out(sum, n, p);
    }
}
