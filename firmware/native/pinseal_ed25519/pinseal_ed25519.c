// _pinseal_ed25519: Ed25519 (RFC 8032) and SHA-512 in C for pinseal's MicroPython images (firmware/native).
//
// Only this glue is ours. The field, group and scalar arithmetic and the SHA-512 block function are the
// public-domain SUPERCOP crypto_sign/ed25519/ref code from PyPI's ed25519 1.5 sdist, brought in at build
// time by tools/pinseal_build/fetch_ed25519_ref.py (see ../README.md); its ed25519.c is not used, because its
// crypto_sign/crypto_sign_open copy the whole message into a caller's buffer. Here signing and verifying
// hash the message where it lies (a streaming SHA-512 over the ref block function), so a call allocates
// nothing on the heap but its result; the stack holds the rest (see ../README.md for how much).
//
// Semantics are those of the firmware's pure-Python pinseal.crypto.ed25519, so that both paths give the
// same answers on the same vectors:
// - sign(key, *parts): key is a 32-byte seed, or 64 bytes seed || public key (the SUPERCOP/NaCl secret
//   key: it skips deriving the public key, a full base-point multiplication). The message is the parts'
//   concatenation. The public key in a 64-byte key is trusted: a wrong one yields signatures that leak the
//   key, so only pass one this module derived (pinseal.crypto.ed25519_native does).
// - verify(public_key, message, signature) -> bool, strict as RFC 8032 section 5.1.7: S < L, a canonical
//   A (y < p, and not x = 0 with the sign bit set), R compared as an encoding. Wrong lengths raise
//   ValueError (the Python wrapper turns bad input into False, as the pure path does).
// - public_key(seed) -> 32 bytes; sha512(*parts) -> 64 bytes.
#include <string.h>

#include "py/runtime.h"
#include "py/objstr.h"

#include "ge25519.h"
#include "sc25519.h"

// sha512-blocks.c: folds every whole 128-byte block of `in` into the big-endian state; returns the rest.
extern int crypto_hashblocks(unsigned char *statebytes, const unsigned char *in, unsigned long long inlen);

#define SEED_BYTES (32)
#define PUBLIC_BYTES (32)
#define SIG_BYTES (64)
#define HASH_BYTES (64)

// FIPS 180-4 section 5.3.5, big-endian.
static const uint8_t sha512_iv[64] = {
    0x6a, 0x09, 0xe6, 0x67, 0xf3, 0xbc, 0xc9, 0x08, 0xbb, 0x67, 0xae, 0x85, 0x84, 0xca, 0xa7, 0x3b,
    0x3c, 0x6e, 0xf3, 0x72, 0xfe, 0x94, 0xf8, 0x2b, 0xa5, 0x4f, 0xf5, 0x3a, 0x5f, 0x1d, 0x36, 0xf1,
    0x51, 0x0e, 0x52, 0x7f, 0xad, 0xe6, 0x82, 0xd1, 0x9b, 0x05, 0x68, 0x8c, 0x2b, 0x3e, 0x6c, 0x1f,
    0x1f, 0x83, 0xd9, 0xab, 0xfb, 0x41, 0xbd, 0x6b, 0x5b, 0xe0, 0xcd, 0x19, 0x13, 0x7e, 0x21, 0x79,
};

// The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
static const uint8_t order_l[32] = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
};

// p = 2^255 - 19, little-endian.
static const uint8_t field_p[32] = {
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
};

// Secrets leave the stack when a call ends; volatile so the compiler cannot drop the stores.
static void wipe(void *p, size_t n) {
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--) {
        *v++ = 0;
    }
}

// Whether the 256-bit little-endian number x is below the little-endian bound (public data: not constant
// time).
static bool below(const uint8_t *x, const uint8_t *bound) {
    for (int i = 31; i >= 0; i--) {
        if (x[i] != bound[i]) {
            return x[i] < bound[i];
        }
    }
    return false;
}

// ---------------------------------------------------------------------------------------------- SHA-512
// Streaming, over the ref block function: state, one partial block, the length so far.
typedef struct {
    uint8_t state[64];
    uint8_t block[128];
    size_t used;
    uint64_t total;
} sha512_ctx;

static void sha512_init(sha512_ctx *c) {
    memcpy(c->state, sha512_iv, sizeof(c->state));
    c->used = 0;
    c->total = 0;
}

static void sha512_update(sha512_ctx *c, const uint8_t *in, size_t n) {
    if (n == 0) {
        return;  // in may be NULL then
    }
    c->total += n;
    if (c->used) {
        size_t take = 128 - c->used;
        if (take > n) {
            take = n;
        }
        memcpy(c->block + c->used, in, take);
        c->used += take;
        in += take;
        n -= take;
        if (c->used < 128) {
            return;
        }
        crypto_hashblocks(c->state, c->block, 128);
        c->used = 0;
    }
    size_t whole = n & ~(size_t)127;
    if (whole) {
        crypto_hashblocks(c->state, in, whole);
    }
    memcpy(c->block, in + whole, n - whole);
    c->used = n - whole;
}

static void sha512_final(sha512_ctx *c, uint8_t out[HASH_BYTES]) {
    uint64_t bits = c->total << 3;
    c->block[c->used++] = 0x80;
    if (c->used > 112) {
        memset(c->block + c->used, 0, 128 - c->used);
        crypto_hashblocks(c->state, c->block, 128);
        c->used = 0;
    }
    memset(c->block + c->used, 0, 120 - c->used);  // bits 64..127 of the length stay 0: messages < 2^61 B
    for (int i = 0; i < 8; i++) {
        c->block[127 - i] = (uint8_t)(bits >> (8 * i));
    }
    crypto_hashblocks(c->state, c->block, 128);
    memcpy(out, c->state, HASH_BYTES);
    wipe(c, sizeof(*c));
}

// ---------------------------------------------------------------------------------------------- helpers
static const uint8_t *buffer_of(mp_obj_t obj, size_t want, const char *what) {
    mp_buffer_info_t info;
    mp_get_buffer_raise(obj, &info, MP_BUFFER_READ);
    if (want && info.len != want) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("%s must be %d bytes"), what, (int)want);
    }
    return info.buf;
}

static void hash_parts(sha512_ctx *c, size_t n_parts, const mp_obj_t *parts) {
    for (size_t i = 0; i < n_parts; i++) {
        mp_buffer_info_t info;
        mp_get_buffer_raise(parts[i], &info, MP_BUFFER_READ);
        sha512_update(c, info.buf, info.len);
    }
}

// SHA-512(seed) clamped: the secret scalar a in h[0..31], the nonce prefix in h[32..63].
static void expand_seed(const uint8_t *seed, uint8_t h[HASH_BYTES]) {
    sha512_ctx c;
    sha512_init(&c);
    sha512_update(&c, seed, SEED_BYTES);
    sha512_final(&c, h);
    h[0] &= 248;
    h[31] &= 127;
    h[31] |= 64;
}

static void public_from_expanded(const uint8_t h[HASH_BYTES], uint8_t pk[PUBLIC_BYTES]) {
    sc25519 a;
    ge25519 A;
    sc25519_from32bytes(&a, h);
    ge25519_scalarmult_base(&A, &a);
    ge25519_pack(pk, &A);
    wipe(&a, sizeof(a));
    wipe(&A, sizeof(A));
}

// ---------------------------------------------------------------------------------------------- the API
// sha512(*parts) -> the 64-byte digest of the parts' concatenation.
static mp_obj_t mod_sha512(size_t n_args, const mp_obj_t *args) {
    sha512_ctx c;
    uint8_t out[HASH_BYTES];
    sha512_init(&c);
    hash_parts(&c, n_args, args);
    sha512_final(&c, out);
    return mp_obj_new_bytes(out, HASH_BYTES);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR(mod_sha512_obj, 0, mod_sha512);

// public_key(seed) -> the 32-byte public key of a 32-byte seed (RFC 8032 section 5.1.5).
static mp_obj_t mod_public_key(mp_obj_t seed_obj) {
    const uint8_t *seed = buffer_of(seed_obj, SEED_BYTES, "seed");
    uint8_t h[HASH_BYTES];
    uint8_t pk[PUBLIC_BYTES];
    expand_seed(seed, h);
    public_from_expanded(h, pk);
    wipe(h, sizeof(h));
    return mp_obj_new_bytes(pk, PUBLIC_BYTES);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mod_public_key_obj, mod_public_key);

// out = SHA-512(head || head2 || parts) mod L. In its own frame (as the point below): the hash's stack and
// the points' never coexist, which keeps a signature within ~5 KB of C stack on a Cortex-M0+.
static MP_NOINLINE void hash_to_scalar(sc25519 *out, const uint8_t *head, size_t head_len, const uint8_t *head2,
    size_t head2_len, size_t n_parts, const mp_obj_t *parts) {
    uint8_t digest[HASH_BYTES];
    sha512_ctx c;
    sha512_init(&c);
    sha512_update(&c, head, head_len);
    sha512_update(&c, head2, head2_len);
    hash_parts(&c, n_parts, parts);
    sha512_final(&c, digest);
    sc25519_from64bytes(out, digest);
    wipe(digest, sizeof(digest));
}

// encoded = the encoding of [r]B.
static MP_NOINLINE void base_point_times(uint8_t encoded[32], const sc25519 *r) {
    ge25519 R;
    ge25519_scalarmult_base(&R, r);
    ge25519_pack(encoded, &R);
    wipe(&R, sizeof(R));
}

// sign(key, *parts) -> the 64-byte signature of the parts' concatenation (RFC 8032 section 5.1.6).
static mp_obj_t mod_sign(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t key;
    mp_get_buffer_raise(args[0], &key, MP_BUFFER_READ);
    if (key.len != SEED_BYTES && key.len != SEED_BYTES + PUBLIC_BYTES) {
        mp_raise_ValueError(MP_ERROR_TEXT("key must be a 32-byte seed or 64 bytes seed || public key"));
    }
    // Every part is checked before any secret is derived: a TypeError leaves nothing on the stack.
    for (size_t i = 1; i < n_args; i++) {
        mp_buffer_info_t info;
        mp_get_buffer_raise(args[i], &info, MP_BUFFER_READ);
    }
    const uint8_t *seed = key.buf;
    uint8_t h[HASH_BYTES];
    uint8_t pk[PUBLIC_BYTES];
    uint8_t sig[SIG_BYTES];
    sc25519 a, r, k;

    expand_seed(seed, h);
    if (key.len == SEED_BYTES) {
        public_from_expanded(h, pk);
    } else {
        memcpy(pk, seed + SEED_BYTES, PUBLIC_BYTES);
    }
    // r = SHA-512(prefix || M) mod L; R = [r]B
    hash_to_scalar(&r, h + 32, 32, NULL, 0, n_args - 1, args + 1);
    base_point_times(sig, &r);
    // k = SHA-512(R || A || M) mod L; S = (r + k * a) mod L
    hash_to_scalar(&k, sig, 32, pk, PUBLIC_BYTES, n_args - 1, args + 1);
    sc25519_from32bytes(&a, h);
    sc25519_mul(&k, &k, &a);
    sc25519_add(&k, &k, &r);
    sc25519_to32bytes(sig + 32, &k);

    wipe(h, sizeof(h));
    wipe(&a, sizeof(a));
    wipe(&r, sizeof(r));
    wipe(&k, sizeof(k));
    return mp_obj_new_bytes(sig, SIG_BYTES);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR(mod_sign_obj, 1, mod_sign);

// ---------------------------------------------------------------------------------------------- verify
// ref's ge25519_double_scalarmult_vartime computes [k](-A) + [S]B in one pass but keeps 16 points on the
// stack (8.9 KB on a Cortex-M0+): more than all of the RP2 port's 8 KB C stack, under MicroPython's own
// frames. Verification instead takes [S]B from ref's fixed-base multiplication (1.8 KB) and [k](-A) by a
// width-3 NAF (a table of P and 3P) in extended coordinates with the ref field operations, about 2.5 KB at
// the deepest; it handles public data only, so it may take variable time.
// 2d, d = -121665/121666, little-endian.
static const uint8_t curve_2d[32] = {
    0x59, 0xf1, 0xb2, 0x26, 0x94, 0x9b, 0xd6, 0xeb, 0x56, 0xb1, 0x83, 0x82, 0x9a, 0x14, 0xe0, 0x00,
    0x30, 0xd1, 0xf3, 0xee, 0xf2, 0x80, 0x8e, 0x19, 0xe7, 0xfc, 0xdf, 0x56, 0xdc, 0xd9, 0x06, 0x24,
};

// r = p + q, or p - q if neg, on -x^2 + y^2 = 1 + d x^2 y^2 (add-2008-hwcd-3: complete for Ed25519; -q is
// (-X, Y, Z, -T)); r may alias p or q. p's T must be valid.
static void point_add(ge25519 *r, const ge25519 *p, const ge25519 *q, bool neg) {
    fe25519 a, b, c, d, t;
    fe25519_sub(&a, &p->y, &p->x);
    if (neg) {
        fe25519_add(&t, &q->y, &q->x);
    } else {
        fe25519_sub(&t, &q->y, &q->x);
    }
    fe25519_mul(&a, &a, &t);
    fe25519_add(&b, &p->y, &p->x);
    if (neg) {
        fe25519_sub(&t, &q->y, &q->x);
    } else {
        fe25519_add(&t, &q->y, &q->x);
    }
    fe25519_mul(&b, &b, &t);
    fe25519_unpack(&t, curve_2d);
    fe25519_mul(&c, &p->t, &q->t);
    fe25519_mul(&c, &c, &t);
    if (neg) {
        fe25519_neg(&c, &c);
    }
    fe25519_mul(&d, &p->z, &q->z);
    fe25519_add(&d, &d, &d);
    fe25519_sub(&t, &b, &a);  // E
    fe25519_add(&b, &b, &a);  // H
    fe25519_sub(&a, &d, &c);  // F
    fe25519_add(&d, &d, &c);  // G
    fe25519_mul(&r->x, &t, &a);
    fe25519_mul(&r->y, &d, &b);
    fe25519_mul(&r->t, &t, &b);
    fe25519_mul(&r->z, &a, &d);
}

// p = 2p (dbl-2008-hwcd with a = -1). T is computed only if want_t, i.e. an addition comes next: a
// doubling never reads it (one field multiplication saved per doubling).
static void point_double(ge25519 *p, bool want_t) {
    fe25519 a, b, c, e, h;
    fe25519_square(&a, &p->x);
    fe25519_square(&b, &p->y);
    fe25519_square(&c, &p->z);
    fe25519_add(&c, &c, &c);  // C = 2 Z^2
    fe25519_add(&e, &p->x, &p->y);
    fe25519_square(&e, &e);
    fe25519_add(&h, &a, &b);
    fe25519_sub(&e, &e, &h);  // E = (X + Y)^2 - A - B
    fe25519_neg(&h, &h);  // H = D - B = -A - B
    fe25519_sub(&b, &b, &a);  // G = D + B = B - A
    fe25519_sub(&c, &b, &c);  // F = G - C
    fe25519_mul(&p->x, &e, &c);
    fe25519_mul(&p->y, &b, &h);
    if (want_t) {
        fe25519_mul(&p->t, &e, &h);
    }
    fe25519_mul(&p->z, &c, &b);
}

// naf = the width-3 non-adjacent form of k (little-endian, < 2^253): digits in {0, +-1, +-3}, at most one
// nonzero in any three in a row, so [k]P takes ~64 additions of +-P or +-3P instead of ~127 of P.
static void wnaf3(int8_t naf[256], const uint8_t k[32]) {
    memset(naf, 0, 256);
    int carry = 0;
    int pos = 0;
    while (pos < 256) {
        int window = carry;
        for (int j = 0; j < 3 && pos + j < 256; j++) {
            window += ((k[(pos + j) >> 3] >> ((pos + j) & 7)) & 1) << j;
        }
        if ((window & 1) == 0) {
            pos++;  // this digit is 0; a carry moves on with it
            continue;
        }
        if (window < 4) {
            naf[pos] = (int8_t)window;
            carry = 0;
        } else {
            naf[pos] = (int8_t)(window - 8);
            carry = 1;
        }
        pos += 3;
    }
}

// acc = [k]P (k: 32 bytes little-endian, < 2^253), with a valid T. In a frame of its own: its table and
// digits (1.3 KB) are gone before ref's fixed-base multiplication runs.
static MP_NOINLINE void variable_base_mult(ge25519 *acc, const ge25519 *P, const uint8_t k[32]) {
    ge25519 odd[2];  // P, 3P
    int8_t naf[256];
    odd[0] = *P;
    odd[1] = *P;
    point_double(&odd[1], true);
    point_add(&odd[1], &odd[1], P, false);
    wnaf3(naf, k);
    fe25519_setzero(&acc->x);
    fe25519_setone(&acc->y);
    fe25519_setone(&acc->z);
    fe25519_setzero(&acc->t);
    int i = 255;
    while (i >= 0 && naf[i] == 0) {
        i--;
    }
    for (; i >= 0; i--) {
        int8_t digit = naf[i];
        point_double(acc, digit != 0 || i == 0);  // T for the addition below, or for the caller's
        if (digit) {
            point_add(acc, acc, &odd[(digit < 0 ? -digit : digit) >> 1], digit < 0);
        }
    }
}

// encoded = the encoding of [s]B + [k]P (k: 32 bytes little-endian, reduced mod L).
static MP_NOINLINE void double_mult(uint8_t encoded[32], const ge25519 *P, const uint8_t k[32],
    const sc25519 *s) {
    ge25519 acc, sB;
    variable_base_mult(&acc, P, k);
    ge25519_scalarmult_base(&sB, s);
    point_add(&acc, &acc, &sB, false);
    ge25519_pack(encoded, &acc);
}

// k = SHA-512(R || A || M) mod L, as 32 bytes. Its own frame: the hash's stack and the points' never
// coexist.
static MP_NOINLINE void challenge(uint8_t k[32], const uint8_t *sig, const uint8_t *pk, const uint8_t *msg,
    size_t msg_len) {
    uint8_t digest[HASH_BYTES];
    sha512_ctx c;
    sc25519 reduced;
    sha512_init(&c);
    sha512_update(&c, sig, 32);
    sha512_update(&c, pk, PUBLIC_BYTES);
    sha512_update(&c, msg, msg_len);
    sha512_final(&c, digest);
    sc25519_from64bytes(&reduced, digest);
    sc25519_to32bytes(k, &reduced);
}

// verify(public_key, message, signature) -> True iff the signature is valid (RFC 8032 section 5.1.7).
static mp_obj_t mod_verify(mp_obj_t pk_obj, mp_obj_t msg_obj, mp_obj_t sig_obj) {
    const uint8_t *pk = buffer_of(pk_obj, PUBLIC_BYTES, "public key");
    const uint8_t *sig = buffer_of(sig_obj, SIG_BYTES, "signature");
    mp_buffer_info_t msg;
    mp_get_buffer_raise(msg_obj, &msg, MP_BUFFER_READ);

    if (!below(sig + 32, order_l)) {
        return mp_const_false;  // S >= L: malleable, rejected
    }
    uint8_t y[32];
    memcpy(y, pk, 32);
    y[31] &= 0x7f;
    if (!below(y, field_p)) {
        return mp_const_false;  // y >= p: not a canonical encoding of A
    }
    ge25519 negA;
    if (ge25519_unpackneg_vartime(&negA, pk) != 0) {
        return mp_const_false;  // not on the curve
    }
    if ((pk[31] & 0x80) && fe25519_iszero(&negA.x)) {
        return mp_const_false;  // x = 0 with the sign bit set: no such encoding (section 5.1.3 step 4)
    }
    uint8_t k[32];
    challenge(k, sig, pk, msg.buf, msg.len);
    sc25519 s;
    sc25519_from32bytes(&s, sig + 32);
    // [S]B + [k](-A), which must encode to R exactly
    uint8_t encoded[32];
    double_mult(encoded, &negA, k, &s);
    return mp_obj_new_bool(memcmp(encoded, sig, 32) == 0);
}
static MP_DEFINE_CONST_FUN_OBJ_3(mod_verify_obj, mod_verify);

static const mp_rom_map_elem_t pinseal_ed25519_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__pinseal_ed25519) },
    { MP_ROM_QSTR(MP_QSTR_sha512), MP_ROM_PTR(&mod_sha512_obj) },
    { MP_ROM_QSTR(MP_QSTR_public_key), MP_ROM_PTR(&mod_public_key_obj) },
    { MP_ROM_QSTR(MP_QSTR_sign), MP_ROM_PTR(&mod_sign_obj) },
    { MP_ROM_QSTR(MP_QSTR_verify), MP_ROM_PTR(&mod_verify_obj) },
};
static MP_DEFINE_CONST_DICT(pinseal_ed25519_globals, pinseal_ed25519_globals_table);

const mp_obj_module_t pinseal_ed25519_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&pinseal_ed25519_globals,
};

MP_REGISTER_MODULE(MP_QSTR__pinseal_ed25519, pinseal_ed25519_module);
