/* tinyarch int8 kernels optimised for Cortex-M7 (ARMv7E-M DSP SIMD), bit-identical to reference.c.
 *
 * Same symbols and results as reference.c; a build links one of the two. The SIMD helpers come from
 * acle_compat.h: single DSP instructions on ARM, portable C elsewhere (so the host tests run this
 * file too). Techniques:
 *
 * - Conv, pointwise and fully connected share one micro-kernel: a dot product of one input vector
 *   with four weight rows. Four int8 inputs come from one (unaligned) 32-bit load and are widened to
 *   two int16 pairs with SXTB16 (bytes 0, 2) and SXTB16 ROR #8 (bytes 1, 3); each weight word is
 *   widened the same way so that the pairs line up, and SMLAD does two multiply-accumulates. The
 *   widened input is shared by four output channels.
 * - Conv runs one block of four output channels at a time over the whole image. The input offset
 *   is folded into a per-channel constant (bias + offset * sum of the channel's weights), so the
 *   dot products of interior pixels need no offset at all. Border pixels instead add the offset
 *   while widening (SXTAB16) and cover only the valid taps: for each kernel row those form one
 *   contiguous run of taps * in_c bytes in both input and weights, so there is no im2col and no
 *   per-tap bounds check.
 * - Depthwise works on blocks of four channels: the block's weights are widened once into a small
 *   stack table, each tap loads four channels with one 32-bit load, widens them adding the offset
 *   (SXTAB16) and accumulates with SMLABB/SMLATT. The window is clipped once per output pixel.
 * - In-place depthwise keeps only (pad_top + 1) output rows of a channel block in the scratch ring
 *   and writes each row back once the input rows it overwrites are no longer needed, so the
 *   four-channel path is used whenever 4 * (pad_top + 1) <= h.
 * - Requantisation folds TFLM's two roundings into one 64-bit multiply-add with a per-channel
 *   constant and one shift of the high word (rq_apply), exactly equal to the double rounding.
 * - Mean sums four channels per load in int16 lanes (SXTAB16), flushed every 256 pixels.
 *
 * Integer accumulations are modulo 2^32 exactly as in the reference, so reordering them does not
 * change any result. Multipliers must be non-negative, as QuantizeMultiplier makes them for the
 * positive scales of a TFLite model.
 */
#include <stddef.h>
#include <string.h>

#include "acle_compat.h"
#include "tinyarch_kernels.h"

/* Four int8 values are loaded as one word with byte 0 in the low bits. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "optimized_m7.c assumes a little-endian target"
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

static inline int32_t clamp(int32_t v, int32_t lo, int32_t hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* --- requantisation ------------------------------------------------------------------------------ */

/* One multiplier and shift, prepared for rq_apply. */
typedef struct {
    int32_t mult;
    int32_t left;  /* left shift applied to x first (multipliers above one) */
    int32_t e1;    /* right shift minus one; -1 when there is no right shift */
    int64_t round; /* 2^30 + 2^(30 + right shift) */
} rq_t;

static inline rq_t rq_init(int32_t mult, int32_t shift) {
    rq_t r;
    r.mult = mult;
    r.left = shift > 0 ? shift : 0;
    r.e1 = shift < 0 ? -shift - 1 : -1;
    r.round = ((int64_t)1 << 30) + (shift < 0 ? (int64_t)1 << (30 - shift) : 0);
    return r;
}

/* TFLM's double-rounding MultiplyByQuantizedMultiplier, i.e. rounding_divide_by_pot(
 * rounding_doubling_high_mul(x << left, mult), e) as in reference.c, in one rounding step.
 *
 * With y = x * mult and e >= 1 the right shift: the high mul is v = floor((y + 2^30) / 2^31) and
 * the divide is floor((v + 2^(e-1) - [v < 0]) / 2^e); nested floors of integer divisions combine,
 * so the result is floor((y + 2^30 + 2^(30+e) - [v < 0] * 2^31) / 2^(31+e)). [v < 0] is
 * [y < -2^30]; replacing it by [x < 0] changes nothing, because when x < 0 but y >= -2^30 both
 * forms give 0. As 31 + e >= 32 the division is the high word shifted by e - 1. */
static inline int32_t rq_apply(int32_t x, const rq_t *r) {
    int64_t t;
    x = (int32_t)((uint32_t)x << r->left);
    if (r->e1 < 0) {
        return (int32_t)(((int64_t)x * r->mult + r->round) >> 31);
    }
    t = (int64_t)x * r->mult + (r->round - (int64_t)((uint32_t)x & 0x80000000u));
    return (int32_t)(t >> 32) >> r->e1;
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

static inline int8_t output_stage(int32_t acc, const rq_t *r, out_params o) {
    int32_t v = clamp(rq_apply(acc, r) + o.zero, o.lo, o.hi);
    if (o.lut != NULL) {
        v = o.lut[v + 128];
    }
    return (int8_t)v;
}

/* --- dot products -------------------------------------------------------------------------------- */

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

/* As dot_4rows without the input offset (it is folded into the accumulators' start values); one
 * register fewer, so the loop runs without spills. */
static inline void dot_4rows_raw(const int8_t *x, const int8_t *w, size_t wstride, int n, int32_t *acc) {
    const int8_t *wa = w;
    const int8_t *wb = w + 2 * wstride;
    const int8_t *xend = x + (n & ~3);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int i;
    while (x != xend) {
        const uint32_t xv = load32(x);
        const uint32_t x02 = ta_sxtb16(xv);
        const uint32_t x13 = ta_sxtb16_ror8(xv);
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
        const int32_t xv = *x++;
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

/* acc + sum_i w[i] * (x[i] + offset) for i < n (offset2: the offset in both halfwords). */
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

/* --- convolution and fully connected ---------------------------------------------------------- */

typedef struct {
    const int8_t *in;
    int in_h, in_w, in_c, kernel, stride, pad_top, pad_left, out_h, out_w, out_c;
    int32_t offset;
    out_params op;
} conv_args;

/* Output channels oc..oc+n-1 (n = 4 or 1) of every pixel. */
static void conv_block(const conv_args *a, const int8_t *weights, const int32_t *bias, const int32_t *mult,
                       const int32_t *shift, int8_t *out, int oc, int n) {
    const int k = a->kernel, in_c = a->in_c;
    const size_t wstride = (size_t)k * k * in_c; /* bytes per output channel */
    const size_t in_row = (size_t)a->in_w * in_c;
    const size_t w_row = (size_t)k * in_c;
    const uint32_t offset2 = pack_offset(a->offset);
    const int8_t *wblock = weights + (size_t)oc * wstride;
    const out_params op = a->op;
    /* Folding the offset costs a pass over the weights: worth it from two pixels on. */
    const int fold = a->out_h * a->out_w > 1;
    int32_t b[4], full[4];
    rq_t rq[4];
    int j, oy, ox, ky;
    for (j = 0; j < n; ++j) {
        const int8_t *wj = wblock + j * wstride;
        int32_t sum = 0;
        size_t i;
        for (i = 0; fold && i < wstride; ++i) {
            sum += wj[i];
        }
        b[j] = bias != NULL ? bias[oc + j] : 0;
        full[j] = (int32_t)((uint32_t)b[j] + (uint32_t)a->offset * (uint32_t)sum);
        rq[j] = rq_init(mult[oc + j], shift[oc + j]);
    }
    if (fold && n == 4 && k == 1 && a->pad_top == 0 && a->pad_left == 0) { /* pointwise */
        const size_t step = (size_t)a->stride * in_c;
        const size_t skip = ((size_t)a->stride * a->in_w - (size_t)a->out_w * a->stride) * in_c;
        const int8_t *xp = a->in;
        int8_t *o = out + oc;
        for (oy = 0; oy < a->out_h; ++oy) {
            for (ox = 0; ox < a->out_w; ++ox) {
                int32_t acc[4];
                acc[0] = full[0];
                acc[1] = full[1];
                acc[2] = full[2];
                acc[3] = full[3];
                dot_4rows_raw(xp, wblock, wstride, in_c, acc);
                o[0] = output_stage(acc[0], &rq[0], op);
                o[1] = output_stage(acc[1], &rq[1], op);
                o[2] = output_stage(acc[2], &rq[2], op);
                o[3] = output_stage(acc[3], &rq[3], op);
                xp += step;
                o += a->out_c;
            }
            xp += skip;
        }
        return;
    }
    for (oy = 0; oy < a->out_h; ++oy) {
        const int y0 = oy * a->stride - a->pad_top;
        const int ky0 = imax(0, -y0);
        const int rows = imin(k, a->in_h - y0) - ky0;
        for (ox = 0; ox < a->out_w; ++ox) {
            const int x0 = ox * a->stride - a->pad_left;
            const int kx0 = imax(0, -x0);
            const int taps = imin(k, a->in_w - x0) - kx0;
            const int8_t *xp = a->in + (ptrdiff_t)(y0 + ky0) * (ptrdiff_t)in_row + (ptrdiff_t)(x0 + kx0) * in_c;
            const int8_t *wp = wblock + ((size_t)ky0 * k + kx0) * in_c;
            int8_t *o = out + ((size_t)oy * a->out_w + ox) * a->out_c + oc;
            int32_t acc[4];
            if (fold && rows == k && taps == k) { /* whole window inside the image */
                const int run = k * in_c;
                if (n == 4) {
                    acc[0] = full[0];
                    acc[1] = full[1];
                    acc[2] = full[2];
                    acc[3] = full[3];
                    for (ky = k; ky > 0; --ky) {
                        dot_4rows_raw(xp, wp, wstride, run, acc);
                        xp += in_row;
                        wp += w_row;
                    }
                } else {
                    acc[0] = full[0];
                    for (ky = k; ky > 0; --ky) {
                        acc[0] = dot_1row(xp, wp, run, 0, 0, acc[0]);
                        xp += in_row;
                        wp += w_row;
                    }
                }
            } else { /* clipped window: valid taps only, with the offset */
                const int run = taps * in_c;
                const int nrows = taps > 0 ? rows : 0;
                if (n == 4) {
                    acc[0] = b[0];
                    acc[1] = b[1];
                    acc[2] = b[2];
                    acc[3] = b[3];
                    for (ky = nrows; ky > 0; --ky) {
                        dot_4rows(xp, wp, wstride, run, offset2, a->offset, acc);
                        xp += in_row;
                        wp += w_row;
                    }
                } else {
                    acc[0] = b[0];
                    for (ky = nrows; ky > 0; --ky) {
                        acc[0] = dot_1row(xp, wp, run, offset2, a->offset, acc[0]);
                        xp += in_row;
                        wp += w_row;
                    }
                }
            }
            for (j = 0; j < n; ++j) {
                o[j] = output_stage(acc[j], &rq[j], op);
            }
        }
    }
}

void ta_conv_s8(const int8_t *in, int in_h, int in_w, int in_c, const int8_t *weights, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int8_t *out, int out_h, int out_w, int out_c,
                int kernel, int stride, int pad_top, int pad_left, const ta_output_t *q) {
    conv_args a;
    int oc;
    a.in = in;
    a.in_h = in_h;
    a.in_w = in_w;
    a.in_c = in_c;
    a.kernel = kernel;
    a.stride = stride;
    a.pad_top = pad_top;
    a.pad_left = pad_left;
    a.out_h = out_h;
    a.out_w = out_w;
    a.out_c = out_c;
    a.offset = q->input_offset;
    a.op = out_params_of(q);
    for (oc = 0; oc + 4 <= out_c; oc += 4) {
        conv_block(&a, weights, bias, mult, shift, out, oc, 4);
    }
    for (; oc < out_c; ++oc) {
        conv_block(&a, weights, bias, mult, shift, out, oc, 1);
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
            const rq_t r = rq_init(mult[o + j], shift[o + j]);
            out[o + j] = output_stage(acc[j], &r, op);
        }
    }
    for (; o < out_n; ++o) {
        const int32_t acc = dot_1row(in, weights + (size_t)o * in_n, in_n, offset2, offset, bias != NULL ? bias[o] : 0);
        const rq_t r = rq_init(mult[o], shift[o]);
        out[o] = output_stage(acc, &r, op);
    }
}

/* --- depthwise ---------------------------------------------------------------------------------- */

/* Geometry and quantisation shared by the depthwise kernels. */
typedef struct {
    const int8_t *in; /* input, already advanced to the first channel of the block */
    int in_h, in_w, c, kernel, stride, pad_top, pad_left, out_w;
    int32_t offset;
    out_params op;
} dw_args;

/* The kernel rows of output row oy that fall inside the input. */
typedef struct {
    const int8_t *in; /* first valid input row, channel of the block */
    int first;        /* first valid kernel row */
    int rows;         /* number of valid kernel rows */
} dw_rows;

static inline dw_rows dw_rows_of(const dw_args *a, int oy) {
    dw_rows r;
    const int y0 = oy * a->stride - a->pad_top;
    r.first = imax(0, -y0);
    r.rows = imin(a->kernel, a->in_h - y0) - r.first;
    r.in = a->in + (ptrdiff_t)(y0 + r.first) * a->in_w * a->c;
    return r;
}

/* Accumulate the window of the output pixel whose window starts at input column x0, for four
 * channels. wx: the block's weights widened per tap to the int16 pairs (ch0, ch2), (ch1, ch3). */
static inline void dw_pixel4(const dw_args *a, dw_rows r, const uint32_t *wx, int x0, uint32_t offset2, int32_t *acc) {
    const int c = a->c;
    const int k = a->kernel;
    const size_t in_row = (size_t)a->in_w * c;
    const int kx0 = imax(0, -x0);
    const int taps = imin(k, a->in_w - x0) - kx0;
    const int8_t *xrow = r.in + (ptrdiff_t)(x0 + kx0) * c;
    const uint32_t *wrow = wx + 2 * (r.first * k + kx0);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int ky, kx;
    for (ky = taps > 0 ? r.rows : 0; ky > 0; --ky) {
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
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* The same for a single channel; w: that channel's first weight, taps c bytes apart. */
static inline int32_t dw_pixel1(const dw_args *a, dw_rows r, const int8_t *w, int x0, int32_t acc) {
    const int c = a->c;
    const int k = a->kernel;
    const size_t in_row = (size_t)a->in_w * c;
    const int kx0 = imax(0, -x0);
    const int taps = imin(k, a->in_w - x0) - kx0;
    const int8_t *xrow = r.in + (ptrdiff_t)(x0 + kx0) * c;
    const int8_t *wrow = w + (ptrdiff_t)(r.first * k + kx0) * c;
    const int32_t offset = a->offset;
    int ky, kx;
    for (ky = taps > 0 ? r.rows : 0; ky > 0; --ky) {
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
    return acc;
}

/* One channel block (n = 4 or 1 channels from c0) of one output row, to dst, dst + step, ... */
static void dw_row(const dw_args *a, int oy, const uint32_t *wx, const int8_t *w1, const int32_t *b, const rq_t *rq,
                   int n, int8_t *dst, size_t step) {
    const dw_rows r = dw_rows_of(a, oy);
    const uint32_t offset2 = pack_offset(a->offset);
    const out_params op = a->op;
    int ox, x0 = -a->pad_left;
    for (ox = 0; ox < a->out_w; ++ox, x0 += a->stride) {
        if (n == 4) {
            int32_t acc[4];
            acc[0] = b[0];
            acc[1] = b[1];
            acc[2] = b[2];
            acc[3] = b[3];
            dw_pixel4(a, r, wx, x0, offset2, acc);
            dst[0] = output_stage(acc[0], &rq[0], op);
            dst[1] = output_stage(acc[1], &rq[1], op);
            dst[2] = output_stage(acc[2], &rq[2], op);
            dst[3] = output_stage(acc[3], &rq[3], op);
        } else {
            dst[0] = output_stage(dw_pixel1(a, r, w1, x0, b[0]), &rq[0], op);
        }
        dst += step;
    }
}

/* Widen the weights of channels c0..c0+3 for dw_pixel4. */
static void dw_widen(const int8_t *weights, int taps, int c, int c0, uint32_t *wx) {
    int t;
    for (t = 0; t < taps; ++t) {
        const uint32_t wv = load32(weights + (size_t)t * c + c0);
        wx[2 * t] = ta_sxtb16(wv);
        wx[2 * t + 1] = ta_sxtb16_ror8(wv);
    }
}

static void dw_block_params(const int32_t *bias, const int32_t *mult, const int32_t *shift, int c0, int n,
                            int32_t *b, rq_t *rq) {
    int j;
    for (j = 0; j < n; ++j) {
        b[j] = bias != NULL ? bias[c0 + j] : 0;
        rq[j] = rq_init(mult[c0 + j], shift[c0 + j]);
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
    uint32_t wx[2 * TA_DW_MAX_TAPS];
    dw_args a;
    int32_t b[4];
    rq_t rq[4];
    int c0 = 0, oy, n;
    dw_args_init(&a, in_h, in_w, c, kernel, stride, pad_top, pad_left, out_w, q);
    for (; c0 < c; c0 += n) {
        n = c - c0 >= 4 && taps <= TA_DW_MAX_TAPS ? 4 : 1;
        a.in = in + c0;
        if (n == 4) {
            dw_widen(weights, taps, c, c0, wx);
        }
        dw_block_params(bias, mult, shift, c0, n, b, rq);
        for (oy = 0; oy < out_h; ++oy) {
            dw_row(&a, oy, wx, weights + c0, b, rq, n, out + oy * out_row + c0, (size_t)c);
        }
    }
}

/* Copy n = 4 or 1 bytes. */
static inline void put(int8_t *dst, const int8_t *src, int n) {
    if (n == 4) {
        memcpy(dst, src, 4);
    } else {
        *dst = *src;
    }
}

/* In place, stride 1. Outputs are produced in raster order into a ring of `ring` pixels of n bytes in
 * the scratch. Input pixel p is last read by output pixel p + delay (delay = pad_top * w + pad_left),
 * so with ring = delay + 1 the ring entry about to be reused always holds an output whose input
 * is dead: it is written back just before. */
void ta_depthwise_inplace_s8(int8_t *io, int h, int w, int c, const int8_t *weights, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift, int kernel, int pad_top, int pad_left,
                             const ta_output_t *q, int8_t *scratch) {
    const int taps = kernel * kernel;
    const int hw = h * w;
    const int delay = imax(pad_top, 0) * w + imax(pad_left, 0);
    const int ring = imin(delay + 1, hw);
    uint32_t wx[2 * TA_DW_MAX_TAPS];
    dw_args a;
    int32_t b[4];
    rq_t rq[4];
    int c0, n, y, x;
    dw_args_init(&a, h, w, c, kernel, 1, pad_top, pad_left, w, q);
    for (c0 = 0; c0 < c; c0 += n) {
        const uint32_t offset2 = pack_offset(a.offset);
        const out_params op = a.op;
        int p = 0, slot = 0;
        n = c - c0 >= 4 && taps <= TA_DW_MAX_TAPS && 4 * ring <= hw ? 4 : 1;
        a.in = io + c0;
        if (n == 4) {
            dw_widen(weights, taps, c, c0, wx);
        }
        dw_block_params(bias, mult, shift, c0, n, b, rq);
        for (y = 0; y < h; ++y) {
            const dw_rows r = dw_rows_of(&a, y);
            for (x = 0; x < w; ++x, ++p) {
                int8_t *dst = scratch + slot * n;
                if (n == 4) {
                    int32_t acc[4];
                    acc[0] = b[0];
                    acc[1] = b[1];
                    acc[2] = b[2];
                    acc[3] = b[3];
                    dw_pixel4(&a, r, wx, x - pad_left, offset2, acc);
                    dst[0] = output_stage(acc[0], &rq[0], op);
                    dst[1] = output_stage(acc[1], &rq[1], op);
                    dst[2] = output_stage(acc[2], &rq[2], op);
                    dst[3] = output_stage(acc[3], &rq[3], op);
                } else {
                    dst[0] = output_stage(dw_pixel1(&a, r, weights + c0, x - pad_left, b[0]), &rq[0], op);
                }
                slot = slot + 1 == ring ? 0 : slot + 1;
                if (p >= delay) { /* the next slot holds output p - delay, whose input is now dead */
                    put(io + (size_t)(p - delay) * c + c0, scratch + slot * n, n);
                }
            }
        }
        for (p = imax(0, hw - delay); p < hw; ++p) {
            put(io + (size_t)p * c + c0, scratch + (p % ring) * n, n);
        }
    }
}

/* --- element-wise and pooling --------------------------------------------------------------------- */

void ta_add_s8(const int8_t *a, const int8_t *b, int8_t *out, int n, const ta_add_t *p) {
    const rq_t r1 = rq_init(p->input1_mult, p->input1_shift);
    const rq_t r2 = rq_init(p->input2_mult, p->input2_shift);
    const rq_t ro = rq_init(p->output_mult, p->output_shift);
    const int32_t off1 = p->input1_offset, off2 = p->input2_offset, zo = p->output_offset;
    const int32_t lo = p->act_min, hi = p->act_max;
    const int ls = (int)p->left_shift;
    int i;
    for (i = 0; i < n; ++i) {
        const int32_t x1 = (int32_t)((uint32_t)(off1 + a[i]) << ls);
        const int32_t x2 = (int32_t)((uint32_t)(off2 + b[i]) << ls);
        const int32_t sum = rq_apply(x1, &r1) + rq_apply(x2, &r2);
        out[i] = (int8_t)clamp(rq_apply(sum, &ro) + zo, lo, hi);
    }
}

void ta_mul_channel_s8(const int8_t *x, const int8_t *s, int8_t *out, int hw, int c, const ta_mul_t *p) {
    const rq_t r = rq_init(p->output_mult, p->output_shift);
    const int32_t off1 = p->input1_offset, off2 = p->input2_offset, zo = p->output_offset;
    const int32_t lo = p->act_min, hi = p->act_max;
    int i, ch;
    for (i = 0; i < hw; ++i) {
        const int8_t *xp = x + (size_t)i * c;
        int8_t *op = out + (size_t)i * c;
        for (ch = 0; ch < c; ++ch) {
            const int32_t prod = (off1 + xp[ch]) * (off2 + s[ch]);
            op[ch] = (int8_t)clamp(rq_apply(prod, &r) + zo, lo, hi);
        }
    }
}

void ta_mean_hw_s8(const int8_t *in, int h, int w, int c, int8_t *out, const ta_mean_t *p) {
    const int n = h * w;
    const rq_t r = rq_init(p->mult, p->shift);
    const int32_t zsum = p->input_zero_point * n, zo = p->output_zero_point;
    int32_t s[4];
    int c0 = 0, i, j;
    for (; c0 + 4 <= c; c0 += 4) {
        const int8_t *ptr = in + c0;
        int left = n;
        s[0] = s[1] = s[2] = s[3] = 0;
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
            s[0] += lo16(e);
            s[2] += hi16(e);
            s[1] += lo16(o);
            s[3] += hi16(o);
        }
        for (j = 0; j < 4; ++j) {
            out[c0 + j] = (int8_t)clamp(rq_apply(s[j] - zsum, &r) + zo, -128, 127);
        }
    }
    for (; c0 < c; ++c0) {
        int32_t sum = 0;
        for (i = 0; i < n; ++i) {
            sum += in[(size_t)i * c + c0];
        }
        out[c0] = (int8_t)clamp(rq_apply(sum - zsum, &r) + zo, -128, 127);
    }
}
