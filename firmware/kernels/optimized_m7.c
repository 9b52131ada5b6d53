/* tinyarch int8 kernels optimised for Cortex-M7 (ARMv7E-M DSP SIMD), bit-identical to reference.c.
 *
 * Same symbols and results as reference.c; a build links one of the two. The SIMD helpers come from
 * acle_compat.h: single DSP instructions on ARM, portable C elsewhere (so the host tests run this
 * file too). Techniques:
 *
 * - The input offset is folded into each channel's bias at code generation (ta_channel_t), and
 *   padding reads as the input zero point, so no inner loop adds an offset or clips a window.
 * - Pointwise convolution and fully connected share a 2x2 micro-kernel: two pixels by two output
 *   channels per pass. Four int8 values come from one 32-bit load and are widened to two int16
 *   pairs with SXTB16 (bytes 0, 2) and SXTB16 ROR #8 (bytes 1, 3); each widened weight word serves
 *   both pixels and each widened input word both channels, so one pass of four inputs costs
 *   4 loads, 8 widenings and 8 SMLADs for 16 multiply-accumulates.
 * - Other convolutions (the stem) build an int16 im2col of two pixels, in the same (0, 2), (1, 3)
 *   order as the widened weights and with the zero point as padding, and run the same 2x2 blocking.
 * - Depthwise works one channel at a time on a ring of `kernel` padded input rows widened to int16
 *   (the zero point as padding), and computes two outputs per pass with SMLAD over pairs of taps:
 *   for stride 1 the same input pairs serve both outputs, one with the even and one with the odd
 *   tap pairing. Kernel sizes 3, 5 and 7 at strides 1 and 2 are compiled as specialised, fully
 *   unrolled instances; the ring is also what lets a stride-1 depthwise overwrite its input.
 * - Requantisation folds TFLM's two roundings into one 64-bit multiply-add with a per-channel
 *   constant and one shift of the high word (rq_fast), exactly equal to the double rounding, for
 *   the usual right shifts; other shifts take the general path (rq_apply) for the whole operator.
 * - The clamp and the activation table are one step: saturate to int8, then look up a table that
 *   maps values outside the clamp range as the clamp would (a model's table, or one built on the
 *   stack from the range).
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

#define INLINE static inline __attribute__((always_inline))

/* Largest depthwise kernel side with a specialised, register-blocked instance. */
#define TA_DW_MAX_KERNEL 7

INLINE uint32_t load32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
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

/* The largest right shift for which rq_fast folds the output zero point in exactly: the 64-bit
 * sum y + round + zero * 2^(32 + e1) then stays below 2^63 in magnitude for every int32 x. */
#define TA_FAST_MAX_RIGHT_SHIFT 24

/* A channel's constants for rq_fast: rq_t whose round also carries zero * 2^(32 + e1), so that
 * the high word shifted by e1 is the requantised value plus the output zero point. */
static inline rq_t rq_init_fast(int32_t mult, int32_t shift, int32_t zero) {
    rq_t r = rq_init(mult, shift);
    r.round += (int64_t)zero * ((int64_t)1 << (32 + r.e1));
    return r;
}

/* rq_apply plus the output zero point, for 1 <= right shift <= TA_FAST_MAX_RIGHT_SHIFT and no
 * left shift, in five instructions (AND, SUBS, SBC, SMLAL, ASR) and no branch. */
INLINE int32_t rq_fast(int32_t x, const rq_t *r) {
    const int64_t t = r->round - (int64_t)((uint32_t)x & 0x80000000u) + (int64_t)x * r->mult;
    return (int32_t)(t >> 32) >> r->e1;
}

/* Whether one multiplier and shift suit rq_fast. */
static int shift_is_fast(int32_t shift) {
    return shift < 0 && shift >= -TA_FAST_MAX_RIGHT_SHIFT;
}

/* Whether every channel's shift suits rq_fast. */
static int all_fast(const ta_channel_t *ch, int n) {
    int i;
    for (i = 0; i < n; ++i) {
        if (!shift_is_fast(ch[i].shift)) {
            return 0;
        }
    }
    return 1;
}

/* The output stage of conv, depthwise and fully connected: the output zero point, then clamp and
 * table in one lookup. `table` points at entry 128 of a 256-entry table. */
typedef struct {
    int32_t zero;
    const int8_t *table;
} out_params;

/* The clamp to [lo, hi] as a table in `buf` (256 bytes), returned at its entry 128. */
static const int8_t *clamp_table(int8_t *buf, int32_t lo, int32_t hi) {
    int i;
    for (i = 0; i < 256; ++i) {
        buf[i] = (int8_t)clamp(i - 128, lo, hi);
    }
    return buf + 128;
}

/* q's table, or `buf` filled with the clamp as a table when q has none. */
static out_params out_params_of(const ta_output_t *q, int8_t *buf) {
    out_params o;
    o.zero = q->output_offset;
    o.table = q->lut != NULL ? q->lut + 128 : clamp_table(buf, q->act_min, q->act_max);
    return o;
}


/* A channel's requantisation for output_stage: fast ones carry the zero point. */
INLINE rq_t channel_rq(const ta_channel_t *c, int fast, out_params o) {
    return fast ? rq_init_fast(c->mult, c->shift, o.zero) : rq_init(c->mult, c->shift);
}

/* Requantised acc plus the output zero point (which fast constants carry already), clamped and
 * looked up in the table. */
INLINE int8_t output_stage(int32_t acc, const rq_t *r, int fast, out_params o) {
    const int32_t v = fast ? rq_fast(acc, r) : rq_apply(acc, r) + o.zero;
    return o.table[ta_ssat8(v)];
}

/* --- convolution and fully connected ---------------------------------------------------------- */

/* Two output channels' constants, prepared once per channel pair. */
typedef struct {
    int32_t bias[2];
    rq_t rq[2];
} pair_params;

INLINE pair_params pair_params_of(const ta_channel_t *ch, int n, int fast, out_params o) {
    pair_params p;
    int j;
    for (j = 0; j < 2; ++j) {
        const ta_channel_t *c = ch + (j < n ? j : 0);
        p.bias[j] = c->bias;
        p.rq[j] = channel_rq(c, fast, o);
    }
    return p;
}

/* acc[0], acc[1] += rows w, w + ws against int8 pixel x; acc[2], acc[3] the same for pixel
 * x + xs. A stride of 0 reruns the same row or pixel (a lone last channel or pixel; its results
 * are dropped). Where xs and ws are one value (pointwise: both n) the loop needs no spills. */
/* Four inputs of two pixels (xa, xb) against two weight rows (w0, w1): 8 widenings, 8 SMLADs. */
#define TA_MAC_2X2_S8(xa, xb, w0, w1)                                                   \
    do {                                                                                \
        const uint32_t xa02 = ta_sxtb16(xa), xa13 = ta_sxtb16_ror8(xa);                 \
        const uint32_t xb02 = ta_sxtb16(xb), xb13 = ta_sxtb16_ror8(xb);                 \
        uint32_t w02 = ta_sxtb16(w0), w13 = ta_sxtb16_ror8(w0);                         \
        a0 = ta_smlad(w02, xa02, a0);                                                   \
        a0 = ta_smlad(w13, xa13, a0);                                                   \
        b0 = ta_smlad(w02, xb02, b0);                                                   \
        b0 = ta_smlad(w13, xb13, b0);                                                   \
        w02 = ta_sxtb16(w1);                                                            \
        w13 = ta_sxtb16_ror8(w1);                                                       \
        a1 = ta_smlad(w02, xa02, a1);                                                   \
        a1 = ta_smlad(w13, xa13, a1);                                                   \
        b1 = ta_smlad(w02, xb02, b1);                                                   \
        b1 = ta_smlad(w13, xb13, b1);                                                   \
    } while (0)

/* The last n % 4 products of a 2x2 dot product, one at a time, and the accumulators written back. */
#define TA_TAIL_2X2(x, xs, w, ws, n)                                                    \
    do {                                                                                \
        int i_;                                                                         \
        for (i_ = (n) & 3; i_ > 0; --i_) {                                              \
            const int32_t xa_ = (x)[0], xb_ = (x)[xs], w0_ = (w)[0], w1_ = (w)[ws];     \
            a0 += w0_ * xa_;                                                            \
            a1 += w1_ * xa_;                                                            \
            b0 += w0_ * xb_;                                                            \
            b1 += w1_ * xb_;                                                            \
            ++(x);                                                                      \
            ++(w);                                                                      \
        }                                                                               \
        acc[0] = a0;                                                                    \
        acc[1] = a1;                                                                    \
        acc[2] = b0;                                                                    \
        acc[3] = b1;                                                                    \
    } while (0)

INLINE void dot_2x2_s8(const int8_t *x, int xs, const int8_t *w, int ws, int n, int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    const void *xp = x, *wp = w;
    const void *const end8 = w + (n & ~7);
    while (wp != end8) { /* eight inputs per pass: half the loop overhead */
        uint32_t xb = load32((const int8_t *)xp + xs), xa = ta_load32_next(&xp);
        uint32_t w1 = load32((const int8_t *)wp + ws), w0 = ta_load32_next(&wp);
        TA_MAC_2X2_S8(xa, xb, w0, w1);
        xb = load32((const int8_t *)xp + xs);
        xa = ta_load32_next(&xp);
        w1 = load32((const int8_t *)wp + ws);
        w0 = ta_load32_next(&wp);
        TA_MAC_2X2_S8(xa, xb, w0, w1);
    }
    if (n & 4) {
        const uint32_t xb = load32((const int8_t *)xp + xs), xa = ta_load32_next(&xp);
        const uint32_t w1 = load32((const int8_t *)wp + ws), w0 = ta_load32_next(&wp);
        TA_MAC_2X2_S8(xa, xb, w0, w1);
    }
    x = (const int8_t *)xp;
    w = (const int8_t *)wp;
    TA_TAIL_2X2(x, xs, w, ws, n);
}

/* As dot_2x2_s8 for int16 pixels of an im2col, whose groups of four are stored in the order
 * (0, 2, 1, 3) of the widened weights; a tail of n % 4 is stored plainly. */
INLINE void dot_2x2_s16(const int16_t *x, int xs, const int8_t *w, int ws, int n, int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    const int8_t *end = w + (n & ~3);
    while (w != end) {
        const uint32_t xa02 = load32(x), xa13 = load32(x + 2);
        const uint32_t xb02 = load32(x + xs), xb13 = load32(x + xs + 2);
        uint32_t wv = load32(w), w02 = ta_sxtb16(wv), w13 = ta_sxtb16_ror8(wv);
        a0 = ta_smlad(w02, xa02, a0);
        a0 = ta_smlad(w13, xa13, a0);
        b0 = ta_smlad(w02, xb02, b0);
        b0 = ta_smlad(w13, xb13, b0);
        wv = load32(w + ws);
        w02 = ta_sxtb16(wv);
        w13 = ta_sxtb16_ror8(wv);
        a1 = ta_smlad(w02, xa02, a1);
        a1 = ta_smlad(w13, xa13, a1);
        b1 = ta_smlad(w02, xb02, b1);
        b1 = ta_smlad(w13, xb13, b1);
        x += 4;
        w += 4;
    }
    TA_TAIL_2X2(x, xs, w, ws, n);
}

/* Requantise a 2x2 block and store the np pixels by nc channels that exist. */
INLINE void store_2x2(const int32_t *acc, const pair_params *pp, int np, int nc, int fast, out_params o, int8_t *dst,
                      int out_c) {
    dst[0] = output_stage(acc[0], &pp->rq[0], fast, o);
    if (nc == 2) {
        dst[1] = output_stage(acc[1], &pp->rq[1], fast, o);
    }
    if (np == 2) {
        dst[out_c] = output_stage(acc[2], &pp->rq[0], fast, o);
        if (nc == 2) {
            dst[out_c + 1] = output_stage(acc[3], &pp->rq[1], fast, o);
        }
    }
}

INLINE void start_2x2(int32_t *acc, const pair_params *pp) {
    acc[0] = acc[2] = pp->bias[0];
    acc[1] = acc[3] = pp->bias[1];
}

/* Every output channel of `count` contiguous pixels of n channels (pointwise, or fully connected
 * with count 1), two pixels by two channels at a time. */
INLINE void pointwise(const int8_t *in, int count, int n, const int8_t *weights, const ta_channel_t *ch, int8_t *out,
                      int out_c, int fast, out_params o) {
    int oc, p;
    for (oc = 0; oc < out_c; oc += 2) {
        const int nc = imin(2, out_c - oc);
        const int ws = nc == 2 ? n : 0;
        const int8_t *w = weights + (size_t)oc * n;
        const pair_params pp = pair_params_of(ch + oc, nc, fast, o);
        const int8_t *x = in;
        int8_t *dst = out + oc;
        int32_t acc[4];
        if (nc == 2) {
            for (p = 0; p + 2 <= count; p += 2, x += 2 * n, dst += 2 * out_c) {
                start_2x2(acc, &pp);
                dot_2x2_s8(x, n, w, n, n, acc);
                store_2x2(acc, &pp, 2, 2, fast, o, dst, out_c);
            }
        } else {
            for (p = 0; p + 2 <= count; p += 2, x += 2 * n, dst += 2 * out_c) {
                start_2x2(acc, &pp);
                dot_2x2_s8(x, n, w, 0, n, acc);
                store_2x2(acc, &pp, 2, 1, fast, o, dst, out_c);
            }
        }
        if (p < count) {
            start_2x2(acc, &pp);
            dot_2x2_s8(x, 0, w, ws, n, acc);
            store_2x2(acc, &pp, 1, nc, fast, o, dst, out_c);
        }
    }
}

typedef struct {
    const int8_t *in;
    int in_h, in_w, in_c, kernel, stride, pad_top, pad_left, out_w;
    int16_t zp; /* the input zero point, for padding */
} conv_geometry;

/* The int16 im2col column of output pixel (oy, ox): its k * k * in_c inputs in weight order, the
 * zero point for padding, each group of four stored as (0, 2, 1, 3). The column is first gathered
 * as int8 (whole kernel rows at a time where they lie inside the image), then widened in place
 * from the end, where each int16 write lands past the int8 bytes still to be read. */
static void im2col(const conv_geometry *g, int oy, int ox, int16_t *col) {
    const int k = g->kernel, c = g->in_c, run = k * c, n = k * run, groups = n & ~3;
    const int y0 = oy * g->stride - g->pad_top, x0 = ox * g->stride - g->pad_left;
    const int rows_inside = x0 >= 0 && x0 + k <= g->in_w;
    const int8_t zp = (int8_t)g->zp;
    int8_t *s8 = (int8_t *)col;
    int ky, kx, i;
    for (ky = 0; ky < k; ++ky) {
        const int iy = y0 + ky;
        const int8_t *src = g->in + ((ptrdiff_t)iy * g->in_w + x0) * c;
        int8_t *dst = s8 + ky * run;
        if (iy < 0 || iy >= g->in_h) {
            for (i = 0; i < run; ++i) {
                dst[i] = zp;
            }
        } else if (rows_inside) {
            for (i = 0; i < run; ++i) {
                dst[i] = src[i];
            }
        } else {
            for (kx = 0; kx < k; ++kx) {
                const int inside = x0 + kx >= 0 && x0 + kx < g->in_w;
                for (i = 0; i < c; ++i) {
                    dst[kx * c + i] = inside ? src[kx * c + i] : zp;
                }
            }
        }
    }
    for (i = n - 1; i >= groups; --i) {
        col[i] = s8[i];
    }
    for (i = groups - 4; i >= 0; i -= 4) {
        const uint32_t v = load32(s8 + i), even = ta_sxtb16(v), odd = ta_sxtb16_ror8(v);
        memcpy(col + i, &even, sizeof even);
        memcpy(col + i + 2, &odd, sizeof odd);
    }
}

/* Output channels whose constants conv_im2col prepares at once (on the stack). */
#define TA_CONV_CHANNEL_CHUNK 32

/* Any convolution through an im2col of two pixels at a time (the stem, strided 1x1): for each
 * chunk of output channels, every pixel pair's columns are built once and serve the chunk. */
INLINE void conv_im2col(const conv_geometry *g, int out_h, const int8_t *weights, const ta_channel_t *ch,
                        int8_t *out, int out_c, int fast, out_params o, int16_t *cols) {
    const int n = g->kernel * g->kernel * g->in_c, n2 = TA_ROUND2(n);
    const int count = out_h * g->out_w;
    pair_params pp[TA_CONV_CHANNEL_CHUNK / 2];
    int c0, p, oc;
    for (c0 = 0; c0 < out_c; c0 += TA_CONV_CHANNEL_CHUNK) {
        const int c1 = imin(out_c, c0 + TA_CONV_CHANNEL_CHUNK);
        int oy = 0, ox = 0;
        for (oc = c0; oc < c1; oc += 2) {
            pp[(oc - c0) / 2] = pair_params_of(ch + oc, imin(2, c1 - oc), fast, o);
        }
        for (p = 0; p < count; p += 2) {
            const int np = imin(2, count - p);
            int8_t *dst = out + (size_t)p * out_c;
            im2col(g, oy, ox, cols);
            if (++ox == g->out_w) {
                ox = 0;
                ++oy;
            }
            if (np == 2) {
                im2col(g, oy, ox, cols + n2);
                if (++ox == g->out_w) {
                    ox = 0;
                    ++oy;
                }
            }
            for (oc = c0; oc < c1; oc += 2) {
                const int nc = imin(2, c1 - oc);
                const pair_params *q = &pp[(oc - c0) / 2];
                int32_t acc[4];
                start_2x2(acc, q);
                dot_2x2_s16(cols, np == 2 ? n2 : 0, weights + (size_t)oc * n, nc == 2 ? n : 0, n, acc);
                store_2x2(acc, q, np, nc, fast, o, dst + oc, out_c);
            }
        }
    }
}

void ta_conv_s8(const int8_t *in, int in_h, int in_w, int in_c, const int8_t *weights, const ta_channel_t *ch,
                int8_t *out, int out_h, int out_w, int out_c, int kernel, int stride, int pad_top, int pad_left,
                const ta_output_t *q, void *scratch) {
    int8_t table[256];
    const out_params o = out_params_of(q, table);
    const int fast = all_fast(ch, out_c);
    if (kernel == 1 && stride == 1) {
        if (fast) {
            pointwise(in, out_h * out_w, in_c, weights, ch, out, out_c, 1, o);
        } else {
            pointwise(in, out_h * out_w, in_c, weights, ch, out, out_c, 0, o);
        }
        return;
    }
    {
        conv_geometry g;
        g.in = in;
        g.in_h = in_h;
        g.in_w = in_w;
        g.in_c = in_c;
        g.kernel = kernel;
        g.stride = stride;
        g.pad_top = pad_top;
        g.pad_left = pad_left;
        g.out_w = out_w;
        g.zp = (int16_t)-q->input_offset;
        if (fast) {
            conv_im2col(&g, out_h, weights, ch, out, out_c, 1, o, (int16_t *)scratch);
        } else {
            conv_im2col(&g, out_h, weights, ch, out, out_c, 0, o, (int16_t *)scratch);
        }
    }
}

void ta_fully_connected_s8(const int8_t *in, int in_n, const int8_t *weights, const ta_channel_t *ch, int8_t *out,
                           int out_n, const ta_output_t *q) {
    int8_t table[256];
    const out_params o = out_params_of(q, table);
    /* one pixel: the general shift path costs nothing worth specialising here */
    pointwise(in, 1, in_n, weights, ch, out, out_n, 0, o);
}

/* --- depthwise ---------------------------------------------------------------------------------- */

typedef struct {
    const int8_t *in; /* input; the output too when in place */
    int in_h, in_w, c;
    const int8_t *weights;
    int8_t *out;
    int out_h, out_w, kernel, stride, pad_top, pad_left;
    int16_t zp;      /* the input zero point, for padding */
    int16_t *ring;   /* `kernel` rows of `row` int16: padded input rows of one channel */
    int row;
} dw_job;

/* Widen padded input row py of channel c0 into its ring slot, the zero point outside the image. */
static void dw_fill(const dw_job *j, int c0, int py) {
    int16_t *dst = j->ring + (py % j->kernel) * j->row;
    int16_t *const end = dst + j->row;
    const int iy = py - j->pad_top;
    const int16_t zp = j->zp;
    if (iy >= 0 && iy < j->in_h) {
        const int8_t *src = j->in + (size_t)iy * j->in_w * j->c + c0;
        const int c = j->c;
        int x;
        for (x = j->pad_left; x > 0; --x) {
            *dst++ = zp;
        }
        for (x = imin(j->in_w, j->row - j->pad_left); x >= 4; x -= 4) {
            dst[0] = src[0];
            dst[1] = src[c];
            dst[2] = src[2 * c];
            dst[3] = src[3 * c];
            dst += 4;
            src += 4 * c;
        }
        for (; x > 0; --x) {
            *dst++ = *src;
            src += c;
        }
    }
    while (dst != end) {
        *dst++ = zp;
    }
}

static inline uint32_t pack16(int32_t lo, int32_t hi) {
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* Two adjacent outputs of one channel from the ring rows r (kernel K, stride S, K odd and at most
 * TA_DW_MAX_KERNEL), with h = (K - 1) / 2 and X_i the input pair (x_2i, x_2i+1) from the first
 * output's first column:
 * - stride 1: out0 = sum_i<h E_i.X_i + w_K-1 * x_K-1 and out1 = w_0 * x_1 + sum_1<=i<=h O_i.X_i,
 *   E_i = (w_2i, w_2i+1) and O_i = (w_2i-1, w_2i), so the h + 1 pairs serve both outputs;
 * - stride 2: out0 = sum_i<=h E_i.X_i and out1 the same from X_i+1, with E_h = (w_K-1, 0).
 * wt holds each kernel row's E_0..E_h-1 then O_1..O_h (stride 1) or E_0..E_h (stride 2). */
INLINE void dw_pair(const int16_t *const *r, int col, const uint32_t *wt, int32_t *acc, const int K, const int S) {
    const int h = (K - 1) / 2, per_row = S == 1 ? 2 * h : h + 1;
    int32_t a0 = acc[0], a1 = acc[1];
    int ky, i;
#pragma GCC unroll 8
    for (ky = 0; ky < K; ++ky) {
        const int16_t *x = r[ky] + col;
        const uint32_t *w = wt + ky * per_row;
        uint32_t xp = load32(x);
        if (S == 1) {
            a1 = ta_smlabt(w[0], xp, a1);
#pragma GCC unroll 4
            for (i = 0; i < h; ++i) {
                a0 = ta_smlad(w[i], xp, a0);
                xp = load32(x + 2 * i + 2);
                a1 = ta_smlad(w[h + i], xp, a1);
            }
            a0 = ta_smlatb(w[2 * h - 1], xp, a0);
        } else {
#pragma GCC unroll 4
            for (i = 0; i <= h; ++i) {
                const uint32_t xn = load32(x + 2 * i + 2);
                a0 = ta_smlad(w[i], xp, a0);
                a1 = ta_smlad(w[i], xn, a1);
                xp = xn;
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* One channel of a kernel K, stride S depthwise, two outputs per pass (dw_pair). */
INLINE void dw_channel(const dw_job *j, int c0, const ta_channel_t *chan, out_params o, const int K, const int S) {
    const int h = (K - 1) / 2, per_row = S == 1 ? 2 * h : h + 1;
    const int out_h = j->out_h, out_w = j->out_w;
    const size_t step = (size_t)j->c;
    const rq_t rq = channel_rq(chan, 1, o);
    const int32_t bias = chan->bias;
    uint32_t wt[TA_DW_MAX_KERNEL * TA_DW_MAX_KERNEL];
    const int16_t *r[TA_DW_MAX_KERNEL];
    int8_t *row_out = j->out + c0;
    int ky, i, oy, ox, next = 0;
    for (ky = 0; ky < K; ++ky) {
        const int8_t *w = j->weights + (size_t)ky * K * step + c0;
        uint32_t *row = wt + ky * per_row;
#define W(t) ((t) < K ? (int32_t)w[(size_t)(t) * step] : 0)
        for (i = 0; i < h; ++i) {
            row[i] = pack16(W(2 * i), W(2 * i + 1));
        }
        for (i = h; i < per_row; ++i) { /* stride 1: O_1..O_h; stride 2: E_h */
            row[i] = S == 1 ? pack16(W(2 * (i - h) + 1), W(2 * (i - h) + 2)) : pack16(W(K - 1), 0);
        }
#undef W
    }
    for (oy = 0; oy < out_h; ++oy, row_out += (size_t)out_w * step) {
        int8_t *dst = row_out;
        for (; next <= oy * S + K - 1; ++next) {
            dw_fill(j, c0, next);
        }
        for (ky = 0; ky < K; ++ky) {
            r[ky] = j->ring + ((oy * S + ky) % K) * j->row;
        }
        for (ox = 0; ox + 2 <= out_w; ox += 2, dst += 2 * step) {
            int32_t acc[2];
            acc[0] = acc[1] = bias;
            dw_pair(r, ox * S, wt, acc, K, S);
            dst[0] = output_stage(acc[0], &rq, 1, o);
            dst[step] = output_stage(acc[1], &rq, 1, o);
        }
        if (ox < out_w) { /* the pair's second output lies in the ring's slack and is dropped */
            int32_t acc[2];
            acc[0] = acc[1] = bias;
            dw_pair(r, ox * S, wt, acc, K, S);
            dst[0] = output_stage(acc[0], &rq, 1, o);
        }
    }
}

/* Any kernel, stride and shift: one output at a time from the same ring. */
static void dw_channel_any(const dw_job *j, int c0, const ta_channel_t *chan, out_params o) {
    const int K = j->kernel, S = j->stride;
    const rq_t rq = rq_init(chan->mult, chan->shift);
    const size_t step = (size_t)j->c;
    int oy, ox, ky, kx, next = 0;
    for (oy = 0; oy < j->out_h; ++oy) {
        int8_t *dst = j->out + (size_t)oy * j->out_w * step + c0;
        for (; next <= oy * S + K - 1; ++next) {
            dw_fill(j, c0, next);
        }
        for (ox = 0; ox < j->out_w; ++ox, dst += step) {
            int32_t acc = chan->bias;
            for (ky = 0; ky < K; ++ky) {
                const int16_t *x = j->ring + ((oy * S + ky) % K) * j->row + ox * S;
                const int8_t *w = j->weights + (size_t)ky * K * step + c0;
                for (kx = 0; kx < K; ++kx) {
                    acc += (int32_t)w[(size_t)kx * step] * x[kx];
                }
            }
            *dst = output_stage(acc, &rq, 0, o);
        }
    }
}

static void dw_run(dw_job *j, const ta_channel_t *ch, const ta_output_t *q) {
    int8_t table[256];
    const out_params o = out_params_of(q, table);
    const int fast = all_fast(ch, j->c);
    const int key = fast ? j->kernel * 10 + j->stride : 0;
    int c0;
    j->zp = (int16_t)-q->input_offset;
    j->row = ta_depthwise_ring_row(j->kernel, j->stride, j->out_w);
    for (c0 = 0; c0 < j->c; ++c0) {
        switch (key) {
        case 31: dw_channel(j, c0, ch + c0, o, 3, 1); break;
        case 32: dw_channel(j, c0, ch + c0, o, 3, 2); break;
        case 51: dw_channel(j, c0, ch + c0, o, 5, 1); break;
        case 52: dw_channel(j, c0, ch + c0, o, 5, 2); break;
        case 71: dw_channel(j, c0, ch + c0, o, 7, 1); break;
        case 72: dw_channel(j, c0, ch + c0, o, 7, 2); break;
        default: dw_channel_any(j, c0, ch + c0, o); break;
        }
    }
}

void ta_depthwise_s8(const int8_t *in, int in_h, int in_w, int c, const int8_t *weights, const ta_channel_t *ch,
                     int8_t *out, int out_h, int out_w, int kernel, int stride, int pad_top, int pad_left,
                     const ta_output_t *q, void *scratch) {
    dw_job j;
    j.in = in;
    j.in_h = in_h;
    j.in_w = in_w;
    j.c = c;
    j.weights = weights;
    j.out = out;
    j.out_h = out_h;
    j.out_w = out_w;
    j.kernel = kernel;
    j.stride = stride;
    j.pad_top = pad_top;
    j.pad_left = pad_left;
    j.ring = (int16_t *)scratch;
    dw_run(&j, ch, q);
}

/* In place: output row oy of a channel is written after its input rows up to oy + K - 1 - pad_top
 * were widened into the ring, and no later output row reads an input row from anywhere else. */
void ta_depthwise_inplace_s8(int8_t *io, int h, int w, int c, const int8_t *weights, const ta_channel_t *ch,
                             int kernel, int pad_top, int pad_left, const ta_output_t *q, void *scratch) {
    ta_depthwise_s8(io, h, w, c, weights, ch, io, h, w, kernel, 1, pad_top, pad_left, q, scratch);
}

/* --- element-wise and pooling --------------------------------------------------------------------- */

/* Elements from which ta_add_s8 tabulates each input's rescaling (512 values) first. */
#define TA_ADD_TABLE_MIN 1024

/* out[i] = requantised t1[a[i]] + t2[b[i]], where t1, t2 give each input's rescaled value. */
INLINE void add_tabled(const int8_t *a, const int8_t *b, int8_t *out, int n, const int32_t *t1, const int32_t *t2,
                       const rq_t *ro, int fast, out_params o) {
    int i;
    for (i = 0; i < n; ++i) {
        out[i] = output_stage(t1[a[i]] + t2[b[i]], ro, fast, o);
    }
}

/* TFLM's int8 ADD: each input rescaled to a common scale, summed, requantised. The rescaling of an
 * int8 input has 256 possible results, so large adds look them up in two stack tables. */
void ta_add_s8(const int8_t *a, const int8_t *b, int8_t *out, int n, const ta_add_t *p) {
    const rq_t r1 = rq_init(p->input1_mult, p->input1_shift);
    const rq_t r2 = rq_init(p->input2_mult, p->input2_shift);
    const int32_t off1 = p->input1_offset, off2 = p->input2_offset;
    const int ls = (int)p->left_shift;
    const int fast = shift_is_fast(p->output_shift);
    const rq_t ro = fast ? rq_init_fast(p->output_mult, p->output_shift, p->output_offset)
                         : rq_init(p->output_mult, p->output_shift);
    int8_t clamp_buf[256];
    out_params o;
    int32_t t1[256], t2[256];
    int i;
    o.zero = p->output_offset;
    o.table = clamp_table(clamp_buf, p->act_min, p->act_max);
    if (n < TA_ADD_TABLE_MIN) {
        for (i = 0; i < n; ++i) {
            const int32_t x1 = (int32_t)((uint32_t)(off1 + a[i]) << ls);
            const int32_t x2 = (int32_t)((uint32_t)(off2 + b[i]) << ls);
            out[i] = output_stage(rq_apply(x1, &r1) + rq_apply(x2, &r2), &ro, fast, o);
        }
        return;
    }
    for (i = 0; i < 256; ++i) {
        t1[i] = rq_apply((int32_t)((uint32_t)(off1 + i - 128) << ls), &r1);
        t2[i] = rq_apply((int32_t)((uint32_t)(off2 + i - 128) << ls), &r2);
    }
    if (fast) {
        add_tabled(a, b, out, n, t1 + 128, t2 + 128, &ro, 1, o);
    } else {
        add_tabled(a, b, out, n, t1 + 128, t2 + 128, &ro, 0, o);
    }
}

INLINE void mul_channels(const int8_t *x, const int8_t *s, int8_t *out, int hw, int c, int32_t off1, int32_t off2,
                         const rq_t *r, int fast, out_params o) {
    int i, ch;
    for (i = 0; i < hw; ++i, x += c, out += c) {
        for (ch = 0; ch < c; ++ch) {
            out[ch] = output_stage((off1 + x[ch]) * (off2 + s[ch]), r, fast, o);
        }
    }
}

void ta_mul_channel_s8(const int8_t *x, const int8_t *s, int8_t *out, int hw, int c, const ta_mul_t *p) {
    const int fast = shift_is_fast(p->output_shift);
    const rq_t r = fast ? rq_init_fast(p->output_mult, p->output_shift, p->output_offset)
                        : rq_init(p->output_mult, p->output_shift);
    int8_t clamp_buf[256];
    out_params o;
    o.zero = p->output_offset;
    o.table = clamp_table(clamp_buf, p->act_min, p->act_max);
    if (fast) {
        mul_channels(x, s, out, hw, c, p->input1_offset, p->input2_offset, &r, 1, o);
    } else {
        mul_channels(x, s, out, hw, c, p->input1_offset, p->input2_offset, &r, 0, o);
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
