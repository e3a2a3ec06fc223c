# _pinseal_ed25519 for cmake-based ports (rp2, esp32), included by ../micropython.cmake
# Monocypher 4.0.3 is not in the repository: the build extracts the snapshot pinned in
# micropython/builds/pins.json into build/sources/monocypher (set PINSEAL_MONOCYPHER_DIR, as a cmake variable
# or in the environment, to the folder holding its src/ elsewhere).
if(NOT PINSEAL_MONOCYPHER_DIR)
    if(DEFINED ENV{PINSEAL_MONOCYPHER_DIR})
        set(PINSEAL_MONOCYPHER_DIR $ENV{PINSEAL_MONOCYPHER_DIR})
    else()
        get_filename_component(PINSEAL_MONOCYPHER_DIR ${CMAKE_CURRENT_LIST_DIR}/../../../build/sources/monocypher ABSOLUTE)
    endif()
endif()
if(NOT EXISTS ${PINSEAL_MONOCYPHER_DIR}/src/optional/monocypher-ed25519.c)
    message(FATAL_ERROR "_pinseal_ed25519: no Monocypher sources in ${PINSEAL_MONOCYPHER_DIR}: run `python -m pinseal_build.micropython_sources --for rp2-pico` first")
endif()

# pinseal_monocypher.c is monocypher.c (#included) plus one function of ours: monocypher.c is not listed.
set(PINSEAL_ED25519_LIB_SRC
    ${CMAKE_CURRENT_LIST_DIR}/pinseal_monocypher.c
    ${PINSEAL_MONOCYPHER_DIR}/src/optional/monocypher-ed25519.c
)
add_library(usermod_pinseal_ed25519 INTERFACE)
target_sources(usermod_pinseal_ed25519 INTERFACE ${CMAKE_CURRENT_LIST_DIR}/pinseal_ed25519.c ${PINSEAL_ED25519_LIB_SRC})
target_include_directories(usermod_pinseal_ed25519 INTERFACE ${CMAKE_CURRENT_LIST_DIR} ${PINSEAL_MONOCYPHER_DIR}/src)
# The arithmetic is compiled for speed (the port builds with -O2 already on rp2; kept explicit).
set_source_files_properties(${PINSEAL_ED25519_LIB_SRC} PROPERTIES COMPILE_OPTIONS "-O2")
target_link_libraries(usermod INTERFACE usermod_pinseal_ed25519)
