// The CUDA runtime as dofpose sees it. In a build without CUDA these exist too:
// built() is false, device_count() is 0 and the rest throw a clear Error.
#pragma once
#include <cstddef>
#include <string>

#include "dofpose/device_peak.h"

namespace dofpose::cuda {

bool built();                      // compiled with the CUDA backend
int device_count();                // 0 without a driver or a device
std::string device_name(int device);
std::string runtime_version();     // "13.0" or "not built"
DeviceTraits device_traits(int device);  // for device_peak()

void* malloc(size_t bytes);
void free(void* p);
// Copies on `stream` (nullptr: the legacy default stream). Host<->device
// copies synchronise the stream; device->device copies and memset are queued.
void memcpy_h2d(void* dst, const void* src, size_t bytes, void* stream = nullptr);
void memcpy_d2h(void* dst, const void* src, size_t bytes, void* stream = nullptr);
void memcpy_d2d(void* dst, const void* src, size_t bytes, void* stream = nullptr);
// Host->device without the host synchronisation, for small per-call inputs:
// from pageable memory CUDA returns once it has staged the source (it may be
// reused at once); work queued on `stream` afterwards sees the data, other
// streams must stream_wait. A page-locked source is waited for (as
// memcpy_h2d), since its copy would still read it.
void upload_staged(void* dst, const void* src, size_t bytes, void* stream);
void memset(void* dst, int value, size_t bytes, void* stream = nullptr);

// CUDA graphs: work queued on `stream` between begin and end is recorded
// (not run) and instantiated into an executable graph that graph_launch
// replays with one call. Inside a capture nothing may synchronise the host.
void graph_capture_begin(void* stream);
void* graph_capture_end(void* stream);  // the executable graph
void graph_launch(void* graph, void* stream);
void graph_destroy(void* graph);
bool capturing();  // a capture is open in this process (debug syncs skip then)

void* stream_create();
void stream_destroy(void* stream);
void stream_synchronize(void* stream);
// Work queued on `waiter` after this call starts only when the work queued on
// `producer` so far has finished (an event; no host synchronisation).
void stream_wait(void* waiter, void* producer);

}  // namespace dofpose::cuda
