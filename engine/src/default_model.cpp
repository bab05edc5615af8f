// The default lifter's weights file, embedded in the library at build time
// (engine/cmake/embed_default_model.cmake passes its path as DOFPOSE_DEFAULT_MODEL_FILE).
// The assembler's .incbin copies the file's bytes into read-only data, aligned
// to 64 bytes so that WeightsFile::from_memory can hand out aligned views.
#include "dofpose/lift.h"

#ifdef DOFPOSE_DEFAULT_MODEL_FILE

// Hidden symbols: a shared libdofpose reaches them PC-relative, and they never
// clash with another copy of the library.
extern "C" {
__attribute__((visibility("hidden"))) extern const unsigned char dofpose_default_lifter_begin[];
__attribute__((visibility("hidden"))) extern const unsigned char dofpose_default_lifter_end[];
}

__asm__(
    ".pushsection .rodata.dofpose_default_lifter, \"a\", @progbits\n"
    ".balign 64\n"
    ".globl dofpose_default_lifter_begin\n"
    ".hidden dofpose_default_lifter_begin\n"
    "dofpose_default_lifter_begin:\n"
    ".incbin \"" DOFPOSE_DEFAULT_MODEL_FILE "\"\n"
    ".globl dofpose_default_lifter_end\n"
    ".hidden dofpose_default_lifter_end\n"
    "dofpose_default_lifter_end:\n"
    ".byte 0\n"  // keeps the end label inside the section even for an empty file
    ".popsection\n");

namespace dofpose {

ByteSpan default_lifter_bytes() {
  return {dofpose_default_lifter_begin,
          size_t(dofpose_default_lifter_end - dofpose_default_lifter_begin)};
}
const char* default_lifter_source_path() { return DOFPOSE_DEFAULT_MODEL_FILE; }

}  // namespace dofpose

#else  // built without a default model file

namespace dofpose {

ByteSpan default_lifter_bytes() { return {nullptr, 0}; }
const char* default_lifter_source_path() { return ""; }

}  // namespace dofpose

#endif
