# pinseal's native modules for cmake-based ports (rp2, esp32):
#   make -C ports/rp2 BOARD=RPI_PICO USER_C_MODULES=<repo>/firmware/native/micropython.cmake
# Make-based ports (unix, qemu) take the folder instead: USER_C_MODULES=<repo>/firmware/native.
include(${CMAKE_CURRENT_LIST_DIR}/pinseal_ed25519/micropython.cmake)
