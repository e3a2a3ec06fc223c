// Declared here, defined in pinseal_monocypher.c (which is monocypher.c plus this function).
#ifndef PINSEAL_MONOCYPHER_H
#define PINSEAL_MONOCYPHER_H

#include <stdint.h>

// out = the encoding of [s]B - [h]A, or -1 if public_key does not decode to a point on the curve
// (public data only: variable time). s and h must be below L (the caller checks s; h is reduced).
int pinseal_eddsa_sb_minus_ha(uint8_t out[32], const uint8_t public_key[32], const uint8_t s[32],
    const uint8_t h[32]);

#endif
