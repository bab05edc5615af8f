// The CUDA runtime wrapper in a build without CUDA: no devices, clear errors.
#include "dofpose/cuda_backend.h"
#include "dofpose/error.h"

namespace dofpose::cuda {

namespace {
[[noreturn]] void not_built(const char* what) {
  fail("cuda::", what, ": this dofpose was built without the CUDA backend "
       "(configure with -DDOFPOSE_CUDA=ON on a machine with the CUDA toolkit)");
}
}  // namespace

bool built() { return false; }
int device_count() { return 0; }
std::string device_name(int) { not_built("device_name"); }
std::string runtime_version() { return "not built"; }
DeviceTraits device_traits(int) { not_built("device_traits"); }
void* malloc(size_t) { not_built("malloc"); }
void free(void*) { not_built("free"); }
void memcpy_h2d(void*, const void*, size_t, void*) { not_built("memcpy_h2d"); }
void upload_staged(void*, const void*, size_t, void*) { not_built("upload_staged"); }
void memcpy_d2h(void*, const void*, size_t, void*) { not_built("memcpy_d2h"); }
void memcpy_d2d(void*, const void*, size_t, void*) { not_built("memcpy_d2d"); }
void memset(void*, int, size_t, void*) { not_built("memset"); }
void graph_capture_begin(void*) { not_built("graph_capture_begin"); }
void* graph_capture_end(void*) { not_built("graph_capture_end"); }
void graph_launch(void*, void*) { not_built("graph_launch"); }
void graph_destroy(void*) {}
bool capturing() { return false; }
void* stream_create() { not_built("stream_create"); }
void stream_destroy(void*) {}
void stream_synchronize(void*) { not_built("stream_synchronize"); }
void stream_wait(void*, void*) { not_built("stream_wait"); }

}  // namespace dofpose::cuda
