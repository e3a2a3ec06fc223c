# _pinseal_ed25519 for cmake-based ports (rp2, esp32), included by ../micropython.cmake
# The SUPERCOP ed25519/ref C files are not in the repository: tools/pinseal_build/fetch_ed25519_ref.py puts
# them in build/native/supercop-ref (set PINSEAL_ED25519_REF_DIR, as a cmake variable or in the environment,
# to take them from elsewhere).
if(NOT PINSEAL_ED25519_REF_DIR)
    if(DEFINED ENV{PINSEAL_ED25519_REF_DIR})
        set(PINSEAL_ED25519_REF_DIR $ENV{PINSEAL_ED25519_REF_DIR})
    else()
        get_filename_component(PINSEAL_ED25519_REF_DIR ${CMAKE_CURRENT_LIST_DIR}/../../../build/native/supercop-ref ABSOLUTE)
    endif()
endif()
if(NOT EXISTS ${PINSEAL_ED25519_REF_DIR}/ge25519.c)
    message(FATAL_ERROR "_pinseal_ed25519: no SUPERCOP ref sources in ${PINSEAL_ED25519_REF_DIR}: run `python -m pinseal_build.fetch_ed25519_ref` first")
endif()

set(PINSEAL_ED25519_REF_SRC
    ${PINSEAL_ED25519_REF_DIR}/fe25519.c
    ${PINSEAL_ED25519_REF_DIR}/ge25519.c
    ${PINSEAL_ED25519_REF_DIR}/sc25519.c
    ${PINSEAL_ED25519_REF_DIR}/sha512-blocks.c
)
add_library(usermod_pinseal_ed25519 INTERFACE)
target_sources(usermod_pinseal_ed25519 INTERFACE ${CMAKE_CURRENT_LIST_DIR}/pinseal_ed25519.c ${PINSEAL_ED25519_REF_SRC})
target_include_directories(usermod_pinseal_ed25519 INTERFACE ${CMAKE_CURRENT_LIST_DIR} ${PINSEAL_ED25519_REF_DIR})
# The 2008-era reference code compares signed with unsigned and leaves parameters unused: relaxed for its
# files only.
set_source_files_properties(${PINSEAL_ED25519_REF_SRC} PROPERTIES
    COMPILE_OPTIONS "-Wno-sign-compare;-Wno-unused-parameter;-Wno-error")
target_link_libraries(usermod INTERFACE usermod_pinseal_ed25519)
