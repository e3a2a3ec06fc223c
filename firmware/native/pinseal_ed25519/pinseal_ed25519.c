// _pinseal_ed25519: Ed25519 (RFC 8032) and SHA-512 in C for pinseal's MicroPython images (firmware/native).
//
// Only this glue (and pinseal_monocypher.c's one function) is ours. The field, group and scalar arithmetic
// and SHA-512 are Monocypher 4.0.3's (src/monocypher.c, src/optional/monocypher-ed25519.c; CC0-1.0 or
// BSD-2-Clause), extracted at build time from the snapshot pinned in micropython/builds/pins.json into
// build/sources/monocypher/ (see ../README.md). Monocypher's crypto_ed25519_sign/check take the message as
// one buffer; here signing and verifying hash the message's parts where they lie (Monocypher's streaming
// SHA-512 and its EdDSA building blocks), so a call allocates nothing on the heap but its result.
//
// Semantics are those of the firmware's pure-Python pinseal.crypto.ed25519, so that both paths give the
// same answers on the same vectors:
// - sign(key, *parts): key is a 32-byte seed, or 64 bytes seed || public key (the NaCl/Monocypher secret
//   key: it skips deriving the public key, a full base-point multiplication). The message is the parts'
//   concatenation. The public key in a 64-byte key is trusted: a wrong one yields signatures that leak the
//   key, so only pass one this module derived (pinseal.crypto.ed25519_native does).
// - verify(public_key, message, signature) -> bool, strict as RFC 8032 section 5.1.7: S < L, a canonical
//   A (y < p, and not x = 0 with the sign bit set), R compared as an encoding, cofactorless. Stricter than
//   crypto_ed25519_check, which accepts y >= p and checks [8](SB - kA - R) = 0 (see pinseal_monocypher.c).
//   Wrong lengths raise ValueError (the Python wrapper turns bad input into False, as the pure path does).
// - public_key(seed) -> 32 bytes; sha512(*parts) -> 64 bytes.
#include <string.h>

#include "py/runtime.h"
#include "py/objstr.h"

#include "monocypher.h"
#include "optional/monocypher-ed25519.h"
#include "pinseal_monocypher.h"

#define SEED_BYTES (32)
#define PUBLIC_BYTES (32)
#define SIG_BYTES (64)
#define HASH_BYTES (64)

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

// Whether the encoding's y (sign bit cleared) is 1 or p - 1: the two points with x = 0.
static bool x_is_zero(const uint8_t *pk) {
    bool one = pk[0] == 1;
    bool minus_one = pk[0] == 0xec;
    for (int i = 1; i < 32; i++) {
        uint8_t b = i == 31 ? (pk[i] & 0x7f) : pk[i];
        one = one && b == 0;
        minus_one = minus_one && b == field_p[i];
    }
    return one || minus_one;
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

static void hash_parts(crypto_sha512_ctx *c, size_t n_parts, const mp_obj_t *parts) {
    for (size_t i = 0; i < n_parts; i++) {
        mp_buffer_info_t info;
        mp_get_buffer_raise(parts[i], &info, MP_BUFFER_READ);
        crypto_sha512_update(c, info.buf, info.len);
    }
}

// SHA-512(seed), its first half clamped: the secret scalar a in h[0..31], the nonce prefix in h[32..63].
static void expand_seed(const uint8_t *seed, uint8_t h[HASH_BYTES]) {
    crypto_sha512(h, seed, SEED_BYTES);
    crypto_eddsa_trim_scalar(h, h);
}

// out = SHA-512(head || head2 || parts) mod L. In its own frame, as the base-point multiplication: the
// hash's stack and the points' never coexist.
static MP_NOINLINE void hash_to_scalar(uint8_t out[32], const uint8_t *head, size_t head_len,
    const uint8_t *head2, size_t head2_len, size_t n_parts, const mp_obj_t *parts) {
    uint8_t digest[HASH_BYTES];
    crypto_sha512_ctx c;
    crypto_sha512_init(&c);
    crypto_sha512_update(&c, head, head_len);
    crypto_sha512_update(&c, head2, head2_len);
    hash_parts(&c, n_parts, parts);
    crypto_sha512_final(&c, digest);  // wipes c
    crypto_eddsa_reduce(out, digest);
    crypto_wipe(digest, sizeof(digest));
}

// ---------------------------------------------------------------------------------------------- the API
// sha512(*parts) -> the 64-byte digest of the parts' concatenation.
static mp_obj_t mod_sha512(size_t n_args, const mp_obj_t *args) {
    crypto_sha512_ctx c;
    uint8_t out[HASH_BYTES];
    crypto_sha512_init(&c);
    hash_parts(&c, n_args, args);
    crypto_sha512_final(&c, out);
    return mp_obj_new_bytes(out, HASH_BYTES);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR(mod_sha512_obj, 0, mod_sha512);

// public_key(seed) -> the 32-byte public key of a 32-byte seed (RFC 8032 section 5.1.5).
static mp_obj_t mod_public_key(mp_obj_t seed_obj) {
    const uint8_t *seed = buffer_of(seed_obj, SEED_BYTES, "seed");
    uint8_t h[HASH_BYTES];
    uint8_t pk[PUBLIC_BYTES];
    expand_seed(seed, h);
    crypto_eddsa_scalarbase(pk, h);
    crypto_wipe(h, sizeof(h));
    return mp_obj_new_bytes(pk, PUBLIC_BYTES);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mod_public_key_obj, mod_public_key);

// sign(key, *parts) -> the 64-byte signature of the parts' concatenation (RFC 8032 section 5.1.6), as
// Monocypher's crypto_ed25519_sign computes it, over parts.
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
    uint8_t h[HASH_BYTES];  // a (clamped) || prefix
    uint8_t pk[PUBLIC_BYTES];
    uint8_t r[32];
    uint8_t k[32];
    uint8_t sig[SIG_BYTES];

    expand_seed(seed, h);
    if (key.len == SEED_BYTES) {
        crypto_eddsa_scalarbase(pk, h);
    } else {
        memcpy(pk, seed + SEED_BYTES, PUBLIC_BYTES);
    }
    // r = SHA-512(prefix || M) mod L; R = [r]B
    hash_to_scalar(r, h + 32, 32, NULL, 0, n_args - 1, args + 1);
    crypto_eddsa_scalarbase(sig, r);
    // k = SHA-512(R || A || M) mod L; S = (k * a + r) mod L
    hash_to_scalar(k, sig, 32, pk, PUBLIC_BYTES, n_args - 1, args + 1);
    crypto_eddsa_mul_add(sig + 32, k, h, r);

    crypto_wipe(h, sizeof(h));
    crypto_wipe(r, sizeof(r));
    return mp_obj_new_bytes(sig, SIG_BYTES);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR(mod_sign_obj, 1, mod_sign);

// k = SHA-512(R || A || M) mod L. Its own frame: the hash's stack and the points' never coexist.
static MP_NOINLINE void challenge(uint8_t k[32], const uint8_t *sig, const uint8_t *pk, const uint8_t *msg,
    size_t msg_len) {
    uint8_t digest[HASH_BYTES];
    crypto_sha512_ctx c;
    crypto_sha512_init(&c);
    crypto_sha512_update(&c, sig, 32);
    crypto_sha512_update(&c, pk, PUBLIC_BYTES);
    crypto_sha512_update(&c, msg, msg_len);
    crypto_sha512_final(&c, digest);
    crypto_eddsa_reduce(k, digest);
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
    if ((pk[31] & 0x80) && x_is_zero(pk)) {
        return mp_const_false;  // x = 0 with the sign bit set: no such encoding (section 5.1.3 step 4)
    }
    uint8_t k[32];
    challenge(k, sig, pk, msg.buf, msg.len);
    // [S]B - [k]A, which must encode to R exactly
    uint8_t encoded[32];
    if (pinseal_eddsa_sb_minus_ha(encoded, pk, sig + 32, k) != 0) {
        return mp_const_false;  // A is not on the curve
    }
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
