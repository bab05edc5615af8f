# Embeds the default lifter (engine/default_model/default_lifter.safetensors)
# into libdofpose; dofpose::default_lifter_bytes() returns it (dofpose/lift.h).
#
# engine/src/default_model.cpp pulls the file in with the assembler's .incbin
# (64-byte aligned, read-only data). That is used rather than a generated C++
# byte array because a trained lifter is tens of megabytes: a hex array of that
# size takes minutes and gigabytes to generate and compile, .incbin takes
# milliseconds. OBJECT_DEPENDS rebuilds the object whenever the file changes,
# and tests/test_lift.cpp compares the embedded bytes with the file.
# Included from the top-level CMakeLists.txt after add_library(dofpose).
set(DOFPOSE_DEFAULT_MODEL "${CMAKE_CURRENT_SOURCE_DIR}/engine/default_model/default_lifter.safetensors"
    CACHE FILEPATH "Weights file embedded as the default lifter of `dofpose lift` and `dofpose demo`")
set(DOFPOSE_DEFAULT_MODEL_SOURCE "${CMAKE_CURRENT_SOURCE_DIR}/engine/src/default_model.cpp")
if(EXISTS "${DOFPOSE_DEFAULT_MODEL}")
  if(DOFPOSE_DEFAULT_MODEL MATCHES "[\"\\\\]")
    message(FATAL_ERROR "DOFPOSE_DEFAULT_MODEL: the path must not contain quotes or backslashes: ${DOFPOSE_DEFAULT_MODEL}")
  endif()
  file(SIZE "${DOFPOSE_DEFAULT_MODEL}" DOFPOSE_DEFAULT_MODEL_SIZE)
  set_source_files_properties("${DOFPOSE_DEFAULT_MODEL_SOURCE}" PROPERTIES
    COMPILE_DEFINITIONS "DOFPOSE_DEFAULT_MODEL_FILE=\"${DOFPOSE_DEFAULT_MODEL}\""
    OBJECT_DEPENDS "${DOFPOSE_DEFAULT_MODEL}")
  message(STATUS "dofpose: embedding default lifter ${DOFPOSE_DEFAULT_MODEL} (${DOFPOSE_DEFAULT_MODEL_SIZE} bytes)")
else()
  message(WARNING "dofpose: no default lifter at ${DOFPOSE_DEFAULT_MODEL}; "
                  "`dofpose lift` will need --model and `dofpose demo` will not run")
endif()
