/* Sensirion SHT3x-DIS at command level (datasheet "SHT3x-DIS", version 6), as a Wokwi custom chip.
 *
 * Single-shot measurements without clock stretching (0x2400 / 0x240B / 0x2416) and with it (0x2C06 / 0x2C0D /
 * 0x2C10), soft reset (0x30A2), status register (0xF32D) and clear status (0x3041); every 16-bit word is
 * followed by its CRC-8 (polynomial 0x31, init 0xFF, section 4.12). Without clock stretching a read before the
 * measurement is done is not acknowledged (4.3); with clock stretching the chip answers at once (the Chips API
 * cannot hold SCL), with the values of that moment.
 *
 * Attributes: temperature (degC), humidity (%RH), fault (0 none, 1 nack: address acknowledged but not data,
 * reads give the idle 0xFF; 2 stuck: the chip holds SDA low; 3 missing: the address is not acknowledged;
 * 4 crc: both CRC bytes of a measurement are wrong), address (default 0x44). Values are read when the
 * measurement is read out. Not modelled: periodic mode, ART, the heater, alert limits, noise.
 */
#include <stdio.h>
#include <stdlib.h>

#include "pinseal_chip_api.h"

#define CMD_SOFT_RESET 0x30a2
#define CMD_READ_STATUS 0xf32d
#define CMD_CLEAR_STATUS 0x3041
#define RESET_NS 1500000ULL /* soft reset time, max (table 4) */
#define STATUS_RESET_DETECTED 0x0010
#define STATUS_CMD_FAILED 0x0002

enum { FAULT_NONE = 0, FAULT_NACK = 1, FAULT_STUCK = 2, FAULT_MISSING = 3, FAULT_CRC = 4 };

CHIP_EXPORT("pinseal_sht3x_crc8") uint8_t crc8(uint8_t b0, uint8_t b1) {
    uint8_t crc = 0xff;
    const uint8_t bytes[2] = {b0, b1};
    for (int j = 0; j < 2; j++) {
        crc ^= bytes[j];
        for (int i = 0; i < 8; i++) crc = crc & 0x80 ? (uint8_t)((crc << 1) ^ 0x31) : (uint8_t)(crc << 1);
    }
    return crc;
}

static uint16_t clamp16(double v) {
    double r = __builtin_round(v);
    return r < 0 ? 0 : r > 65535 ? 65535 : (uint16_t)r;
}

/* Physical values -> the 16-bit signals (4.13): T = -45 + 175 * S_T / 65535, RH = 100 * S_RH / 65535. */
CHIP_EXPORT("pinseal_sht3x_raw_t") uint16_t raw_t(double t) { return clamp16(((t + 45) * 65535) / 175); }
CHIP_EXPORT("pinseal_sht3x_raw_h") uint16_t raw_h(double h) { return clamp16((h * 65535) / 100); }

/* Measurement duration, maximum, ns (table 4) for a single-shot command, 0 if it is none. */
static uint64_t single_shot_ns(uint16_t cmd, bool *stretch) {
    *stretch = (cmd >> 8) == 0x2c;
    switch (cmd) {
        case 0x2400: case 0x2c06: return 15000000; /* high repeatability */
        case 0x240b: case 0x2c0d: return 6000000;  /* medium */
        case 0x2416: case 0x2c10: return 4000000;  /* low */
        default: return 0;
    }
}

typedef struct {
    bool pending;     /* a measurement was started and not read yet */
    bool stretch;
    uint64_t ready_ns;
    uint8_t out[6];   /* what the current read transfer returns */
    uint32_t out_len, out_pos;
    bool status_queued; /* a status read command waits for its read */
    uint16_t status;
    uint64_t busy_until; /* soft reset in progress: nothing is acknowledged */
    uint8_t cmd[2];
    uint32_t cmd_len;
    bool sda_held;
    pin_t sda;
    uint32_t attr_t, attr_h, attr_fault;
} chip_t;

static void put_word(uint8_t *out, uint16_t v, bool corrupt) {
    out[0] = v >> 8;
    out[1] = v & 0xff;
    out[2] = crc8(out[0], out[1]) ^ (corrupt ? 0xff : 0);
}

static uint32_t fault_now(chip_t *c) {
    uint32_t fault = attr_read(c->attr_fault);
    bool hold = fault == FAULT_STUCK;
    if (hold != c->sda_held) {
        pin_mode(c->sda, hold ? OUTPUT_LOW : INPUT);
        c->sda_held = hold;
    }
    return fault;
}

/* A write that ended after one byte: an incomplete command (status bit 1). */
static void end_command(chip_t *c) {
    if (c->cmd_len == 1) c->status |= STATUS_CMD_FAILED;
    c->cmd_len = 0;
}

/* The two command bytes are in: run it; false = not acknowledged (the second byte is NACKed). */
static bool command(chip_t *c, uint16_t cmd) {
    uint64_t now = get_sim_nanos();
    bool stretch;
    uint64_t duration = single_shot_ns(cmd, &stretch);
    if (duration) {
        if (c->pending && now < c->ready_ns) return false; /* busy measuring */
        c->pending = true;
        c->stretch = stretch;
        c->ready_ns = now + duration;
        c->status_queued = false;
        return true;
    }
    if (cmd == CMD_SOFT_RESET) {
        c->pending = false;
        c->status_queued = false;
        c->status = STATUS_RESET_DETECTED;
        c->busy_until = now + RESET_NS;
        return true;
    }
    if (cmd == CMD_READ_STATUS) {
        c->status_queued = true;
        return true;
    }
    if (cmd == CMD_CLEAR_STATUS) {
        c->status &= ~(STATUS_CMD_FAILED | STATUS_RESET_DETECTED);
        return true;
    }
    c->status |= STATUS_CMD_FAILED;
    return false; /* unknown command */
}

static bool on_connect(void *user_data, uint32_t address, bool read) {
    chip_t *c = user_data;
    (void)address;
    end_command(c); /* a repeated START ends a write as a STOP does */
    uint32_t fault = fault_now(c);
    if (fault == FAULT_STUCK || fault == FAULT_MISSING) return false;
    if (!read || fault == FAULT_NACK) return true;
    uint64_t now = get_sim_nanos();
    c->out_pos = 0;
    if (c->status_queued) {
        put_word(c->out, c->status, false);
        c->out_len = 3;
        c->status_queued = false;
        return true;
    }
    if (!c->pending) return false; /* nothing measured: the read header is not acknowledged */
    if (now < c->ready_ns && !c->stretch) return false; /* not ready yet */
    bool corrupt = fault == FAULT_CRC;
    put_word(c->out, raw_t(attr_read_float(c->attr_t)), corrupt);
    put_word(c->out + 3, raw_h(attr_read_float(c->attr_h)), corrupt);
    c->out_len = 6;
    c->pending = false;
    return true;
}

static uint8_t on_read(void *user_data) {
    chip_t *c = user_data;
    if (attr_read(c->attr_fault) == FAULT_NACK) return 0xff;
    if (c->out_pos < c->out_len) return c->out[c->out_pos++];
    return 0xff; /* past the data the bus reads its idle level */
}

static bool on_write(void *user_data, uint8_t data) {
    chip_t *c = user_data;
    if (attr_read(c->attr_fault) == FAULT_NACK) return false;
    if (get_sim_nanos() < c->busy_until) return false; /* resetting */
    c->out_len = 0; /* a new command drops unread output */
    if (c->cmd_len >= 2) {
        c->status |= STATUS_CMD_FAILED; /* a command is two bytes */
        return false;
    }
    c->cmd[c->cmd_len++] = data;
    if (c->cmd_len < 2) return true;
    bool ack = command(c, (uint16_t)(c->cmd[0] << 8 | c->cmd[1]));
    c->cmd_len = 2;
    return ack;
}

static void on_disconnect(void *user_data) {
    chip_t *c = user_data;
    end_command(c);
    c->out_len = 0;
}

void chip_init(void) {
    chip_t *c = calloc(1, sizeof(chip_t));
    c->status = STATUS_RESET_DETECTED; /* bit 4: system reset detected (after power-on) */
    c->attr_t = attr_init_float("temperature", 20);
    c->attr_h = attr_init_float("humidity", 50);
    c->attr_fault = attr_init("fault", FAULT_NONE);
    uint32_t address = attr_init("address", 0x44);
    c->sda = pin_init("SDA", INPUT);
    const i2c_config_t i2c = {
        .user_data = c,
        .address = attr_read(address),
        .scl = pin_init("SCL", INPUT),
        .sda = c->sda,
        .connect = on_connect,
        .read = on_read,
        .write = on_write,
        .disconnect = on_disconnect,
    };
    i2c_init(&i2c);
    printf("sht3x: ready at 0x%02x\n", (unsigned)attr_read(address));
}
