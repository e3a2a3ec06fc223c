/* Bosch BME280 at register level (datasheet BST-BME280-DS002), as a Wokwi custom chip.
 *
 * Chip id, calibration NVM, soft reset, ctrl_hum / ctrl_meas / config, status and the raw ADC registers. The
 * raw values are found by INVERTING the datasheet's integer compensation (section 4.2.3:
 * BME280_compensate_T_int32, _P_int64, _H_int32, evaluated here in 64-bit so no intermediate overflows) for the
 * physical values the attributes ask for, so that a driver running that compensation gets them back within the
 * chip's quantisation: 16 + (oversampling - 1) bits for temperature and pressure (tables 4 and 5), 16 bits for
 * humidity.
 *
 * Attributes (diagram "attrs", or set at run time by the host): temperature (degC), pressure (Pa), humidity
 * (%RH), fault (0 none, 1 nack: address acknowledged but not data, reads give the idle 0xFF; 2 stuck: the chip
 * holds SDA low and acknowledges nothing; 3 missing: the address is not acknowledged). address (default 0x76).
 *
 * Time: a forced conversion ends on a timer at start + the datasheet's maximum measurement time (9.1); the data
 * registers take the attribute values read at that moment. Normal mode latches a fresh conversion at every read
 * transfer. Not modelled: the IIR filter, normal mode's standby timing, noise, self-heating, SPI.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pinseal_chip_api.h"

#define CHIP_ID 0x60
#define REG_CALIB00 0x88
#define REG_CHIP_ID 0xd0
#define REG_RESET 0xe0
#define REG_CTRL_HUM 0xf2
#define REG_STATUS 0xf3
#define REG_CTRL_MEAS 0xf4
#define REG_CONFIG 0xf5
#define REG_DATA 0xf7
#define RESET_WORD 0xb6
#define NVM_COPY_NS 2000000ULL /* status.im_update after power-on / soft reset (start-up time 2 ms, table 1) */

enum { FAULT_NONE = 0, FAULT_NACK = 1, FAULT_STUCK = 2, FAULT_MISSING = 3 };

/* A plausible calibration set: dig_T* / dig_P* are the worked example of Bosch's BMP280 datasheet (3.12, whose
 * compensation is the BME280's), dig_H* values typical of BME280 parts. */
typedef struct {
    int64_t T1, T2, T3, P1, P2, P3, P4, P5, P6, P7, P8, P9, H1, H2, H3, H4, H5, H6;
} calib_t;
static const calib_t CAL = {27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
                            75, 362, 0, 313, 50, 30};

/* --- the datasheet's integer compensation (4.2.3), in int64 ------------------------------------------- */
CHIP_EXPORT("pinseal_bme280_t_fine") int32_t t_fine_of(int32_t adc_t) {
    int64_t a = adc_t;
    int64_t var1 = (((a >> 3) - (CAL.T1 << 1)) * CAL.T2) >> 11;
    int64_t d = (a >> 4) - CAL.T1;
    int64_t var2 = (((d * d) >> 12) * CAL.T3) >> 14;
    return (int32_t)(var1 + var2);
}

/* Temperature in 0.01 degC. */
CHIP_EXPORT("pinseal_bme280_compensate_t") int32_t compensate_t(int32_t adc_t) {
    return (int32_t)(((int64_t)t_fine_of(adc_t) * 5 + 128) >> 8);
}

/* Pressure in Pa as Q24.8 (1/256 Pa), the int64 variant. Signed here: the inversion's search evaluates codes
 * far outside any real reading, where the datasheet's unsigned result would wrap round. */
static int64_t compensate_p(int32_t adc_p, int32_t t_fine) {
    int64_t var1 = (int64_t)t_fine - 128000;
    int64_t var2 = var1 * var1 * CAL.P6;
    var2 = var2 + ((var1 * CAL.P5) * 131072);
    var2 = var2 + (CAL.P4 * 34359738368LL);
    var1 = ((var1 * var1 * CAL.P3) >> 8) + ((var1 * CAL.P2) * 4096);
    var1 = ((((int64_t)1) << 47) + var1) * CAL.P1 >> 33;
    if (var1 == 0) return 0;
    int64_t p = 1048576 - adc_p;
    p = (((p << 31) - var2) * 3125) / var1; /* C division truncates toward zero, as the datasheet assumes */
    var1 = (CAL.P9 * (p >> 13) * (p >> 13)) >> 25;
    var2 = (CAL.P8 * p) >> 19;
    p = ((p + var1 + var2) >> 8) + (CAL.P7 << 4);
    return p;
}

CHIP_EXPORT("pinseal_bme280_compensate_p") double compensate_p_export(int32_t adc_p, int32_t t_fine) {
    return (double)compensate_p(adc_p, t_fine);
}

/* Relative humidity in %RH as unsigned Q22.10 (1/1024 %RH). */
CHIP_EXPORT("pinseal_bme280_compensate_h") uint32_t compensate_h(int32_t adc_h, int32_t t_fine) {
    int64_t v = (int64_t)t_fine - 76800;
    v = (((((int64_t)adc_h << 14) - (CAL.H4 << 20) - CAL.H5 * v) + 16384) >> 15) *
        (((((((v * CAL.H6) >> 10) * (((v * CAL.H3) >> 11) + 32768)) >> 10) + 2097152) * CAL.H2 + 8192) >> 14);
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * CAL.H1) >> 4);
    if (v < 0) v = 0;
    if (v > 419430400) v = 419430400;
    return (uint32_t)(v >> 12);
}

/* --- inversion ------------------------------------------------------------------------------------------ */
typedef struct {
    int kind; /* 0: T (output in 0.01 degC), 1: P (Q24.8), 2: H (Q22.10) */
    int shift;
    int32_t t_fine;
} search_t;

static double output(const search_t *s, int32_t k) {
    int32_t adc = k << s->shift;
    if (s->kind == 0) return compensate_t(adc);
    if (s->kind == 1) return (double)compensate_p(adc, s->t_fine);
    return compensate_h(adc, s->t_fine);
}

/* Smallest code k in [0, 2^bits) whose output (monotonic in k, increasing or not) reaches the target, then the
 * nearer of k and its lower neighbour: the raw value whose compensated output is closest to the target. */
static int32_t nearest_code(const search_t *s, int bits, double target, bool increasing) {
    int32_t lo = 0, hi = (1 << bits) - 1;
#define REACHED(k) (increasing ? output(s, k) >= target : output(s, k) <= target)
    if (!REACHED(hi)) return hi;
    while (lo < hi) {
        int32_t mid = (lo + hi) >> 1;
        if (REACHED(mid))
            hi = mid;
        else
            lo = mid + 1;
    }
#undef REACHED
    if (lo > 0 && __builtin_fabs(output(s, lo - 1) - target) <= __builtin_fabs(output(s, lo) - target)) return lo - 1;
    return lo;
}

/* Oversampling setting (osrs field 1..5 = x1..x16) -> ADC resolution in bits (tables 4 and 5). */
CHIP_EXPORT("pinseal_bme280_resolution_bits") int resolution_bits(int osrs) { return 15 + (osrs < 5 ? osrs : 5); }

typedef struct {
    int32_t adc_t, adc_p, adc_h;
} raw_t;

static raw_t raw_for(double t, double p, double h, int osrs_t, int osrs_p, int osrs_h) {
    raw_t r;
    int bits_t = resolution_bits(osrs_t ? osrs_t : 1);
    search_t st = {0, 20 - bits_t, 0};
    int32_t adc_t = nearest_code(&st, bits_t, t * 100, true) << st.shift;
    int32_t tf = t_fine_of(adc_t);
    int bits_p = resolution_bits(osrs_p ? osrs_p : 1);
    search_t sp = {1, 20 - bits_p, tf};
    int32_t adc_p = nearest_code(&sp, bits_p, p * 256, false) << sp.shift;
    search_t sh = {2, 0, tf};
    int32_t adc_h = nearest_code(&sh, 16, h * 1024, true);
    r.adc_t = osrs_t ? adc_t : 0x80000;
    r.adc_p = osrs_p ? adc_p : 0x80000;
    r.adc_h = osrs_h ? adc_h : 0x8000;
    return r;
}

/* For the tests: raw_for's three results in a static buffer (adc_t, adc_p, adc_h). */
static int32_t raw_out[3];
CHIP_EXPORT("pinseal_bme280_raw_for")
int32_t *raw_for_export(double t, double p, double h, int osrs_t, int osrs_p, int osrs_h) {
    raw_t r = raw_for(t, p, h, osrs_t, osrs_p, osrs_h);
    raw_out[0] = r.adc_t;
    raw_out[1] = r.adc_p;
    raw_out[2] = r.adc_h;
    return raw_out;
}

/* Measurement time in microseconds (datasheet 9.1, maximum): 1.25 + 2.3*T + (2.3*P + 0.575) + (2.3*H + 0.575)
 * ms, with the oversampling factors 0, 1, 2, 4, 8, 16. */
static const uint32_t OVERSAMPLING[8] = {0, 1, 2, 4, 8, 16, 16, 16};
CHIP_EXPORT("pinseal_bme280_measurement_us") uint32_t measurement_us(int osrs_t, int osrs_p, int osrs_h) {
    uint32_t t = OVERSAMPLING[osrs_t & 7], p = OVERSAMPLING[osrs_p & 7], h = OVERSAMPLING[osrs_h & 7];
    return 1250 + 2300 * t + (p ? 2300 * p + 575 : 0) + (h ? 2300 * h + 575 : 0);
}

/* --- the chip ------------------------------------------------------------------------------------------- */
typedef struct {
    uint8_t regs[256];
    uint8_t nvm[256];
    uint8_t pointer;
    uint8_t hum_latched;
    uint64_t nvm_until;
    bool converting;
    uint64_t conversion_done;
    int osrs_t, osrs_p, osrs_h;
    uint32_t write_index;
    uint8_t write_reg;
    bool sda_held;
    pin_t sda;
    uint32_t timer;
    uint32_t attr_t, attr_p, attr_h, attr_fault;
} chip_t;

static void put_u16(uint8_t *nvm, int addr, int64_t v) {
    nvm[addr] = v & 0xff;
    nvm[addr + 1] = (v >> 8) & 0xff;
}

static void calibration_bytes(uint8_t *nvm) {
    const int64_t tp[12] = {CAL.T1, CAL.T2, CAL.T3, CAL.P1, CAL.P2, CAL.P3,
                            CAL.P4, CAL.P5, CAL.P6, CAL.P7, CAL.P8, CAL.P9};
    for (int i = 0; i < 12; i++) put_u16(nvm, REG_CALIB00 + 2 * i, tp[i]);
    nvm[0xa0] = 0;
    nvm[0xa1] = CAL.H1 & 0xff;
    put_u16(nvm, 0xe1, CAL.H2);
    nvm[0xe3] = CAL.H3 & 0xff;
    nvm[0xe4] = (CAL.H4 >> 4) & 0xff;                      /* dig_H4 [11:4] */
    nvm[0xe5] = (CAL.H4 & 0x0f) | ((CAL.H5 & 0x0f) << 4); /* dig_H4 [3:0], dig_H5 [3:0] */
    nvm[0xe6] = (CAL.H5 >> 4) & 0xff;                      /* dig_H5 [11:4] */
    nvm[0xe7] = CAL.H6 & 0xff;
}

static void power_on(chip_t *c) {
    memcpy(c->regs, c->nvm, sizeof c->regs);
    c->regs[REG_CHIP_ID] = CHIP_ID;
    /* Data registers after reset: 0x80000 / 0x8000 (table 18). */
    static const uint8_t reset_data[8] = {0x80, 0, 0, 0x80, 0, 0, 0x80, 0};
    memcpy(&c->regs[REG_DATA], reset_data, 8);
    c->hum_latched = 0;
    c->nvm_until = get_sim_nanos() + NVM_COPY_NS;
    c->converting = false;
    timer_stop(c->timer);
}

static void latch(chip_t *c, int osrs_t, int osrs_p, int osrs_h) {
    raw_t r = raw_for(attr_read_float(c->attr_t), attr_read_float(c->attr_p), attr_read_float(c->attr_h), osrs_t,
                      osrs_p, osrs_h);
    uint8_t *d = &c->regs[REG_DATA];
    d[0] = (r.adc_p >> 12) & 0xff;
    d[1] = (r.adc_p >> 4) & 0xff;
    d[2] = (r.adc_p & 0x0f) << 4;
    d[3] = (r.adc_t >> 12) & 0xff;
    d[4] = (r.adc_t >> 4) & 0xff;
    d[5] = (r.adc_t & 0x0f) << 4;
    d[6] = (r.adc_h >> 8) & 0xff;
    d[7] = r.adc_h & 0xff;
}

/* The forced conversion's end: data registers updated with the values at this moment, back to sleep mode. */
static void conversion_done(void *user_data) {
    chip_t *c = user_data;
    if (!c->converting) return;
    latch(c, c->osrs_t, c->osrs_p, c->osrs_h);
    c->converting = false;
    c->regs[REG_CTRL_MEAS] &= ~0x03;
}

static void write_reg(chip_t *c, uint8_t reg, uint8_t value) {
    if (reg == REG_RESET) {
        if (value == RESET_WORD) power_on(c);
        return;
    }
    if (reg == REG_CTRL_HUM) {
        c->regs[reg] = value & 0x07;
    } else if (reg == REG_CONFIG) {
        c->regs[reg] = value & 0xfd;
    } else if (reg == REG_CTRL_MEAS) {
        c->regs[reg] = value;
        c->hum_latched = c->regs[REG_CTRL_HUM]; /* ctrl_hum takes effect on a write to ctrl_meas (5.4.3) */
        uint8_t mode = value & 0x03;
        timer_stop(c->timer);
        c->converting = false;
        if (mode == 0x01 || mode == 0x02) {
            c->osrs_t = (value >> 5) & 7;
            c->osrs_p = (value >> 2) & 7;
            c->osrs_h = c->hum_latched & 7;
            uint32_t us = measurement_us(c->osrs_t, c->osrs_p, c->osrs_h);
            c->converting = true;
            c->conversion_done = get_sim_nanos() + (uint64_t)us * 1000;
            timer_start(c->timer, us, false);
        }
    }
    /* other registers are read-only */
}

static uint8_t status(chip_t *c) {
    uint64_t now = get_sim_nanos();
    return (c->converting && now < c->conversion_done ? 0x08 : 0) | (now < c->nvm_until ? 0x01 : 0);
}

/* The SDA line follows the stuck fault: held low while it lasts, released after. */
static uint32_t fault_now(chip_t *c) {
    uint32_t fault = attr_read(c->attr_fault);
    bool hold = fault == FAULT_STUCK;
    if (hold != c->sda_held) {
        pin_mode(c->sda, hold ? OUTPUT_LOW : INPUT);
        c->sda_held = hold;
    }
    return fault;
}

static bool on_connect(void *user_data, uint32_t address, bool read) {
    chip_t *c = user_data;
    (void)address;
    uint32_t fault = fault_now(c);
    if (fault == FAULT_STUCK || fault == FAULT_MISSING) return false;
    c->write_index = 0;
    /* Normal mode: a fresh conversion at every read (burst reads are consistent: shadowing, 4.1). */
    if (read && !c->converting && (c->regs[REG_CTRL_MEAS] & 0x03) == 0x03)
        latch(c, (c->regs[REG_CTRL_MEAS] >> 5) & 7, (c->regs[REG_CTRL_MEAS] >> 2) & 7, c->hum_latched & 7);
    return true;
}

/* I2C read: from the register pointer, auto-incrementing. */
static uint8_t on_read(void *user_data) {
    chip_t *c = user_data;
    if (attr_read(c->attr_fault) == FAULT_NACK) return 0xff; /* nobody drives SDA: the idle level */
    uint8_t reg = c->pointer++;
    return reg == REG_STATUS ? status(c) : c->regs[reg];
}

/* I2C write (6.2.1): the first byte sets the register pointer; further bytes come in pairs of (register
 * address, data): there is no auto-increment on writes. */
static bool on_write(void *user_data, uint8_t data) {
    chip_t *c = user_data;
    if (attr_read(c->attr_fault) == FAULT_NACK) return false;
    uint32_t i = c->write_index++;
    if (i == 0) {
        c->pointer = data;
        c->write_reg = data;
    } else if (i % 2 == 1) {
        write_reg(c, c->write_reg, data);
    } else {
        c->write_reg = data;
    }
    return true;
}

static void on_disconnect(void *user_data) { ((chip_t *)user_data)->write_index = 0; }

void chip_init(void) {
    chip_t *c = calloc(1, sizeof(chip_t));
    calibration_bytes(c->nvm);
    c->attr_t = attr_init_float("temperature", 20);
    c->attr_p = attr_init_float("pressure", 101325);
    c->attr_h = attr_init_float("humidity", 50);
    c->attr_fault = attr_init("fault", FAULT_NONE);
    uint32_t address = attr_init("address", 0x76);
    const timer_config_t timer = {.user_data = c, .callback = conversion_done};
    c->timer = timer_init(&timer);
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
    power_on(c);
    printf("bme280: ready at 0x%02x\n", (unsigned)attr_read(address));
}
