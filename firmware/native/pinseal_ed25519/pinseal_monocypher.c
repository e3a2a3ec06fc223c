// The one piece of verification Monocypher 4 does not expose: [s]B - [h]A as an encoding, so that
// pinseal_ed25519.c can compare it with R byte for byte (cofactorless, RFC 8032 section 5.1.7 step 3
// without the optional factor 8).
//
// Monocypher's own crypto_eddsa_check_equation checks [8](sB - hA - R) = 0: it accepts an R that differs
// from sB - hA by a point of small order, and an R or A encoded with y >= p. The firmware's pure-Python
// verify, and the gateway's, reject both; the native path must give the same answer on every input, so
// this file computes the sum with Monocypher's own group arithmetic (static in monocypher.c, hence the
// include: this translation unit *is* monocypher.c plus the function below; monocypher.c is not compiled
// again on its own) and leaves the comparison and the encoding checks to the glue. The ladder below is
// crypto_eddsa_check_equation's first half (Monocypher 4.0.3, CC0-1.0), unchanged.
//
// monocypher.c comes from the pinned snapshot (micropython/builds/pins.json), extracted at build time into
// build/sources/monocypher/; it is not in this repository.
#include "monocypher.c"

#include "pinseal_monocypher.h"

int pinseal_eddsa_sb_minus_ha(uint8_t out[32], const uint8_t public_key[32], const uint8_t s[32],
    const uint8_t h[32]) {
    ge minus_A;  // -public_key, then the sum
    if (ge_frombytes_neg_vartime(&minus_A, public_key)) {
        return -1;  // not on the curve
    }
    // look-up table for minus_A: -A, -3A
    ge_cached lutA[P_W_SIZE];
    {
        ge minus_A2, tmp;
        ge_double(&minus_A2, &minus_A, &tmp);
        ge_cache(&lutA[0], &minus_A);
        FOR (i, 1, P_W_SIZE) {
            ge_add(&tmp, &minus_A2, &lutA[i - 1]);
            ge_cache(&lutA[i], &tmp);
        }
    }
    // sum = [s]B - [h]A: one double-and-add ladder, both scalars in sliding windows
    slide_ctx h_slide;
    slide_init(&h_slide, h);
    slide_ctx s_slide;
    slide_init(&s_slide, s);
    int i = MAX(h_slide.next_check, s_slide.next_check);
    ge *sum = &minus_A;
    ge_zero(sum);
    while (i >= 0) {
        ge tmp;
        ge_double(sum, sum, &tmp);
        int h_digit = slide_step(&h_slide, P_W_WIDTH, i, h);
        int s_digit = slide_step(&s_slide, B_W_WIDTH, i, s);
        if (h_digit > 0) {
            ge_add(sum, sum, &lutA[h_digit / 2]);
        }
        if (h_digit < 0) {
            ge_sub(sum, sum, &lutA[-h_digit / 2]);
        }
        fe t1, t2;
        if (s_digit > 0) {
            ge_madd(sum, sum, b_window + s_digit / 2, t1, t2);
        }
        if (s_digit < 0) {
            ge_msub(sum, sum, b_window + -s_digit / 2, t1, t2);
        }
        i--;
    }
    ge_tobytes(out, sum);
    return 0;
}
