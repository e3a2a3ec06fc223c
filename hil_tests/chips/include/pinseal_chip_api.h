/* The part of the Wokwi Custom Chips C API that pinseal's chips use, declared in our own words.
 *
 * Why our own header: the functions below are the documented Chips API (docs.wokwi.com, "Chips API": GPIO,
 * attributes, timers, I2C device), and what binds a chip to a simulator is only the WebAssembly import and
 * export NAMES and the C layout of the config structs. Declaring exactly those keeps the .wasm loadable by
 * Wokwi (VS Code, wokwi-cli) and by our own Node host (hil_tests/vboard/chips/chip_host.mjs), without copying
 * Wokwi's header into the repository.
 *
 * ABI (wasm32): a chip imports its functions from module "env" under the camelCase names below, imports its
 * linear memory ("env"."memory", linked with --import-memory), exports its function table
 * (--export-table: callbacks are table indices) and exports "chipInit", called once per chip instance after
 * the module is instantiated. "__wokwi_api_version_1" returning 1 tells the simulator which API it speaks.
 * printf() goes through wasi-libc to WASI's fd_write on stdout: the simulator prints it as the chip's log.
 */
#ifndef PINSEAL_CHIP_API_H
#define PINSEAL_CHIP_API_H

#include <stdbool.h>
#include <stdint.h>

#define CHIP_IMPORT(name) __attribute__((import_module("env"), import_name(name)))
#define CHIP_EXPORT(name) __attribute__((export_name(name)))

/* Version handshake: weak so that two translation units may both include this header. */
CHIP_EXPORT("__wokwi_api_version_1") __attribute__((weak)) uint32_t chip_api_version(void) { return 1; }

/* --- pins ------------------------------------------------------------------------------------------- */
typedef int32_t pin_t; /* a handle from pin_init; -1 = no pin */
#define NO_PIN ((pin_t)-1)

/* Pin modes as the API numbers them. OUTPUT_LOW drives the line low (an open-drain pull-down). */
enum { INPUT = 0, OUTPUT = 1, INPUT_PULLUP = 2, INPUT_PULLDOWN = 3, ANALOG = 4, OUTPUT_LOW = 16, OUTPUT_HIGH = 17 };
enum { LOW = 0, HIGH = 1 };

CHIP_IMPORT("pinInit") pin_t pin_init(const char *name, uint32_t mode);
CHIP_IMPORT("pinMode") void pin_mode(pin_t pin, uint32_t mode);
CHIP_IMPORT("pinWrite") void pin_write(pin_t pin, uint32_t value);
CHIP_IMPORT("pinRead") uint32_t pin_read(pin_t pin);

/* --- attributes: values the diagram's "attrs" (or a chip control) sets; read any time -------------- */
CHIP_IMPORT("attrInit") uint32_t attr_init(const char *name, uint32_t default_value);
CHIP_IMPORT("attrInitFloat") uint32_t attr_init_float(const char *name, float default_value);
CHIP_IMPORT("attrRead") uint32_t attr_read(uint32_t attr);
CHIP_IMPORT("attrReadFloat") float attr_read_float(uint32_t attr);

/* --- time ------------------------------------------------------------------------------------------- */
typedef struct {
    void *user_data;                   /* handed back to callback */
    void (*callback)(void *user_data); /* runs at the simulated time the timer is due */
} timer_config_t;

CHIP_IMPORT("timerInit") uint32_t timer_init(const timer_config_t *config);
CHIP_IMPORT("timerStart") void timer_start(uint32_t timer, uint32_t micros, bool repeat);
CHIP_IMPORT("timerStartNanos") void timer_start_ns(uint32_t timer, uint64_t nanos, bool repeat);
CHIP_IMPORT("timerStop") void timer_stop(uint32_t timer);
CHIP_IMPORT("getSimNanos") uint64_t get_sim_nanos(void);

/* --- I2C device --------------------------------------------------------------------------------------- */
/* The simulator calls these as the controller addresses the chip, moves bytes and ends the transfer.
 * connect: the chip's address was sent (read = true: a read transfer); return true to acknowledge.
 * read: the controller clocks in one byte.  write: one byte arrives; return true to acknowledge it.
 * disconnect: STOP (a repeated START calls connect again without it). */
typedef struct {
    void *user_data;
    uint32_t address; /* 7-bit */
    pin_t scl;
    pin_t sda;
    bool (*connect)(void *user_data, uint32_t address, bool read);
    uint8_t (*read)(void *user_data);
    bool (*write)(void *user_data, uint8_t data);
    void (*disconnect)(void *user_data);
    uint32_t reserved[8]; /* zero: room the API keeps for later fields */
} i2c_config_t;

CHIP_IMPORT("i2cInit") uint32_t i2c_init(const i2c_config_t *config);

/* Every chip defines this; the simulator calls it once per instance. */
CHIP_EXPORT("chipInit") void chip_init(void);

#endif
