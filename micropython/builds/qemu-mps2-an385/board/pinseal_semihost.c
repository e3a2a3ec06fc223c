// pinseal's QEMU board: host services through ARM semihosting (bkpt 0xab), which QEMU's -semihosting serves.
//
// - mp_hal_get_random() reads the host's /dev/urandom. The stock port's generator is a fixed LCG that starts
//   from the same state on every boot, so every emulated board would make the same key.
// - mp_hal_time_ns() is the host's clock (SYS_TIME, whole seconds): littlefs stamps files with it.
// - the `_semihost` module gives frozen _boot.py positioned reads and writes on a host file, the backing store
//   of the littlefs block device: what is written survives a QEMU restart, as flash survives a power cut.
//   Each write is a host write(2) when the call returns, so a SIGKILL of QEMU loses nothing acknowledged.
//
// SPDX-License-Identifier: MIT (pinseal)

#include <string.h>

#include "py/mperrno.h"
#include "py/mphal.h"
#include "py/runtime.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_SEEK 0x0a
#define SYS_FLEN 0x0c
#define SYS_TIME 0x11
#define SYS_GET_CMDLINE 0x15

#define MODE_RB 1         // "rb"
#define MODE_RPLUSB 3     // "r+b": read and write, the file must exist
#define MODE_WPLUSB 7     // "w+b": create (or truncate)

static int32_t semihost(uint32_t op, void *args) {
    register uint32_t r0 __asm__ ("r0") = op;
    register void *r1 __asm__ ("r1") = args;
    __asm__ __volatile__ ("bkpt 0xab" : "+r" (r0) : "r" (r1) : "memory");
    return (int32_t)r0;
}

static int32_t host_open(const char *path, uint32_t mode) {
    uint32_t args[3] = {(uint32_t)path, mode, strlen(path)};
    return semihost(SYS_OPEN, args);
}

// Read or write len bytes at pos (SYS_SEEK, then SYS_READ or SYS_WRITE, which return the count not
// transferred). Bytes past the end of the host file read as 0xff (erased flash).
static int host_transfer(int32_t fd, uint8_t *buf, size_t len, uint32_t pos, bool write) {
    uint32_t seek[2] = {(uint32_t)fd, pos};
    if (semihost(SYS_SEEK, seek) != 0) {
        return -1;
    }
    uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, len};
    int32_t left = semihost(write ? SYS_WRITE : SYS_READ, args);
    if (write) {
        return left == 0 ? 0 : -1;
    }
    if (left < 0 || (size_t)left > len) {
        return -1;
    }
    memset(buf + (len - left), 0xff, left);
    return 0;
}

// Opened once per power-on and kept: a soft reset re-runs _boot.py, which must not leak host descriptors.
static int32_t urandom_fd = -1;

void mp_hal_get_random(size_t n, uint8_t *buf) {
    if (urandom_fd < 0) {
        urandom_fd = host_open("/dev/urandom", MODE_RB);
    }
    while (n > 0) {
        size_t chunk = n > 256 ? 256 : n;
        uint32_t args[3] = {(uint32_t)urandom_fd, (uint32_t)buf, chunk};
        if (urandom_fd < 0 || semihost(SYS_READ, args) != 0) {
            // Never fall back to a predictable generator: a key made from it would be shared by every board.
            mp_raise_OSError(MP_EIO);
        }
        buf += chunk;
        n -= chunk;
    }
}

uint64_t mp_hal_time_ns(void) {
    return (uint64_t)(uint32_t)semihost(SYS_TIME, NULL) * 1000000000ULL;
}

static int32_t flash_fd = -1;
static char flash_path[256];

// _semihost.flash_open(path) -> fd: the host file backing the block device, created if absent.
static mp_obj_t semihost_flash_open(mp_obj_t path_in) {
    const char *path = mp_obj_str_get_str(path_in);
    if (strlen(path) >= sizeof(flash_path)) {
        mp_raise_ValueError(MP_ERROR_TEXT("path too long"));
    }
    if (flash_fd >= 0 && strcmp(path, flash_path) == 0) {
        return MP_OBJ_NEW_SMALL_INT(flash_fd);
    }
    int32_t fd = host_open(path, MODE_RPLUSB);
    if (fd < 0) {
        fd = host_open(path, MODE_WPLUSB);
    }
    if (fd < 0) {
        mp_raise_OSError(MP_ENOENT);
    }
    flash_fd = fd;
    strcpy(flash_path, path);
    return MP_OBJ_NEW_SMALL_INT(fd);
}
static MP_DEFINE_CONST_FUN_OBJ_1(semihost_flash_open_obj, semihost_flash_open);

// Only the flash's descriptor: a stray fd (the urandom one, or QEMU's console) must not become a file to
// write. This guards against mistakes, not against hostile code: any code on the board can issue semihosting
// calls itself (asm_thumb), with the host user's file access. The emulated board runs trusted code only.
static int32_t flash_fd_arg(mp_obj_t fd_in) {
    int32_t fd = mp_obj_get_int(fd_in);
    if (fd < 0 || fd != flash_fd) {
        mp_raise_OSError(MP_EBADF);
    }
    return fd;
}

// _semihost.pread(fd, buf, pos) and _semihost.pwrite(fd, buf, pos): positioned I/O on the flash file.
static mp_obj_t semihost_transfer(mp_obj_t fd_in, mp_obj_t buf_in, mp_obj_t pos_in, bool write) {
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(buf_in, &bufinfo, write ? MP_BUFFER_READ : MP_BUFFER_WRITE);
    if (host_transfer(flash_fd_arg(fd_in), bufinfo.buf, bufinfo.len, mp_obj_get_int(pos_in), write) != 0) {
        mp_raise_OSError(MP_EIO);
    }
    return mp_const_none;
}

static mp_obj_t semihost_pread(mp_obj_t fd_in, mp_obj_t buf_in, mp_obj_t pos_in) {
    return semihost_transfer(fd_in, buf_in, pos_in, false);
}
static MP_DEFINE_CONST_FUN_OBJ_3(semihost_pread_obj, semihost_pread);

static mp_obj_t semihost_pwrite(mp_obj_t fd_in, mp_obj_t buf_in, mp_obj_t pos_in) {
    return semihost_transfer(fd_in, buf_in, pos_in, true);
}
static MP_DEFINE_CONST_FUN_OBJ_3(semihost_pwrite_obj, semihost_pwrite);

// _semihost.cmdline() -> str: what QEMU was given with -append (after the kernel's file name).
static mp_obj_t semihost_cmdline(void) {
    static char line[512];
    uint32_t args[2] = {(uint32_t)line, sizeof(line)};
    if (semihost(SYS_GET_CMDLINE, args) != 0) {
        return mp_obj_new_str("", 0);
    }
    size_t len = 0;  // (the port's minimal libc has no strnlen)
    while (len < sizeof(line) && line[len] != '\0') {
        len++;
    }
    return mp_obj_new_str(line, len);
}
static MP_DEFINE_CONST_FUN_OBJ_0(semihost_cmdline_obj, semihost_cmdline);

static const mp_rom_map_elem_t semihost_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__semihost) },
    { MP_ROM_QSTR(MP_QSTR_flash_open), MP_ROM_PTR(&semihost_flash_open_obj) },
    { MP_ROM_QSTR(MP_QSTR_pread), MP_ROM_PTR(&semihost_pread_obj) },
    { MP_ROM_QSTR(MP_QSTR_pwrite), MP_ROM_PTR(&semihost_pwrite_obj) },
    { MP_ROM_QSTR(MP_QSTR_cmdline), MP_ROM_PTR(&semihost_cmdline_obj) },
};
static MP_DEFINE_CONST_DICT(semihost_module_globals, semihost_module_globals_table);

const mp_obj_module_t semihost_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&semihost_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR__semihost, semihost_module);
