// The CUDA device layer: owning device/pinned buffers, copies, streams, events, device properties, and
// SKV_CUDA_CHECK. The header has no CUDA include, so CPU-only code can use it: CUDA handles are opaque pointers
// (StreamHandle is the cudaStream_t, EventHandle the cudaEvent_t). A build without CUDA (-DSKV_CUDA=OFF)
// compiles no_cuda.cpp, where every entry point throws Error(kUnsupported) and cuda_available() is false.
//
// Errors: every CUDA call is checked; a failure throws skv::Error(kResource) for an out-of-memory and
// Error(kInternal) otherwise, naming the expression, the CUDA error and file:line. Nothing calls exit().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tensor.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*
struct CUevent_st;   // cudaEvent_t is CUevent_st*

namespace skv {

using StreamHandle = CUstream_st*;  // nullptr: the legacy default stream
using EventHandle = CUevent_st*;

namespace detail {
[[noreturn]] void throw_cuda_error(int code, const char* expr, const char* file, int line);
}  // namespace detail

// Checks a cudaError_t-returning expression (0 = cudaSuccess); throws skv::Error on failure.
#define SKV_CUDA_CHECK(expr)                                                         \
  do {                                                                               \
    const int skv_cuda_rc_ = static_cast<int>(expr);                                 \
    if (skv_cuda_rc_ != 0) ::skv::detail::throw_cuda_error(skv_cuda_rc_, #expr, __FILE__, __LINE__); \
  } while (0)

// True when this build has CUDA and at least one device is usable.
bool cuda_available();
int cuda_device_count();  // 0 without CUDA or without a device

struct DeviceProperties {
  std::string name;
  int index = 0;
  int major = 0, minor = 0;           // compute capability
  int multiprocessors = 0;
  size_t total_memory = 0;            // bytes
  size_t l2_cache_bytes = 0;
  size_t shared_memory_per_block_optin = 0;  // the largest dynamic shared memory a block can opt in to
  size_t shared_memory_per_multiprocessor = 0;
  int memory_bus_width_bits = 0;
};
// Cached after the first query of each device.
const DeviceProperties& device_properties(int device = 0);

// This build's GPU code is sm_90a only (CMakeLists.txt: wgmma and TMA in the prefill attention; arch-specific
// code runs on compute capability 9.0 exactly): empty when `p` can run it, else the reason, for an error
// message before any kernel launch fails with "no kernel image".
inline std::string unsupported_gpu_reason(const DeviceProperties& p) {
  if (p.major == 9 && p.minor == 0) return {};
  return p.name + " has compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
         "; this build's CUDA code is for sm_90a (H100, H200) only";
}

// Makes `device` current for the calling thread (no-op when it already is).
void set_device(int device);
int current_device();

// RAII: makes a device current, restores the previous one on destruction.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Owning device memory (cudaMalloc), move-only. Views carry device {kCuda, index}.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, int device = 0);      // uninitialized
  DeviceBuffer(DType dtype, Shape shape, int device = 0);  // sized for the tensor; zero-filled
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  // A view of the start of the buffer with this dtype and shape (must fit).
  TensorView view(DType dtype, Shape shape) const;
  TensorView view() const { return view(dtype_, shape_); }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data_); }

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
  DType dtype_ = DType::kU8;
  Shape shape_;
};

// Page-locked host memory (cudaHostAlloc), move-only: the source/target of asynchronous copies.
class PinnedHostBuffer {
 public:
  PinnedHostBuffer() = default;
  explicit PinnedHostBuffer(size_t bytes);         // uninitialized
  PinnedHostBuffer(DType dtype, Shape shape);      // zero-filled
  ~PinnedHostBuffer();
  PinnedHostBuffer(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer& operator=(PinnedHostBuffer&& other) noexcept;
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  TensorView view(DType dtype, Shape shape) const;  // a CPU view
  TensorView view() const { return view(dtype_, shape_); }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data_); }

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  DType dtype_ = DType::kU8;
  Shape shape_;
};

// A CUDA stream, owning unless wrapping an existing handle. Move-only.
class Stream {
 public:
  Stream() = default;                                   // the legacy default stream, not owned
  static Stream create(int device = 0, bool non_blocking = true);  // a new owned stream
  static Stream wrap(StreamHandle handle) { Stream s; s.handle_ = handle; return s; }
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  StreamHandle handle() const { return handle_; }
  void synchronize() const;

 private:
  void release() noexcept;
  StreamHandle handle_ = nullptr;
  bool owned_ = false;
};

// A CUDA event with timing enabled. Move-only.
class Event {
 public:
  Event();  // creates the event on the current device
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record(StreamHandle stream = nullptr);
  void synchronize() const;
  EventHandle handle() const { return handle_; }
  // Milliseconds between two recorded, completed events.
  static float elapsed_ms(const Event& start, const Event& end);

 private:
  void release() noexcept;
  EventHandle handle_ = nullptr;
};

// The stream the ops of this thread launch on for `device` (default: the legacy default stream).
StreamHandle current_stream(int device = 0);
void set_current_stream(StreamHandle stream, int device = 0);
void synchronize_device(int device = 0);

// Copies between tensors of equal dtype and shape (contiguous). The synchronous versions return when the copy
// is complete (they synchronize the current stream of the device side); the async versions enqueue on `stream`
// (asynchronous for pinned host memory). Device-to-device copies use copy().
void copy_to_device(const TensorView& dst, const TensorView& src);
void copy_to_host(const TensorView& dst, const TensorView& src);
void copy_to_device_async(const TensorView& dst, const TensorView& src, StreamHandle stream);
void copy_to_host_async(const TensorView& dst, const TensorView& src, StreamHandle stream);
void copy(const TensorView& dst, const TensorView& src, StreamHandle stream);  // any direction, async
// Raw byte copies (cudaMemcpyDefault: any direction).
void copy_bytes(void* dst, const void* src, size_t bytes);
void copy_bytes_async(void* dst, const void* src, size_t bytes, StreamHandle stream);

// Scratch memory the backend owns, one grow-only buffer per (device, slot), allocated on first use. Ops use it
// for temporaries (linear's bf16 copy of x, the decode partials, the sampler's sort); growing frees the old
// buffer after a device synchronize, so a planner should call reserve_scratch() with the largest size up front
// (and must, before capturing CUDA graphs: an allocation inside a capture fails).
enum class ScratchSlot : int { kLinearInput = 0, kAttentionPartials = 1, kSampling = 2, kMisc = 3, kCount = 4 };
void* scratch(ScratchSlot slot, size_t bytes, int device = 0);
void reserve_scratch(ScratchSlot slot, size_t bytes, int device = 0);
size_t scratch_bytes(ScratchSlot slot, int device = 0);
// Frees every scratch buffer of this thread for `device` (tests; the next use allocates again).
void release_scratch(int device = 0);
// Moves whenever a scratch buffer is allocated, grown or released (any thread, any device; also when a thread
// exits): a CUDA graph holds the scratch addresses of its capture and is stale once the generation differs from
// the one it was captured at.
uint64_t scratch_generation(int device = 0);

// Programmatic dependent launch (sm_90+): the decode-path kernels are launched so that each may start while the
// kernel before it in the stream finishes, doing its independent work (its CTAs' launch, a GEMV's first weight
// loads) before it waits for that kernel's results (griddepcontrol.wait); see ops/cuda/common.cuh. On by default
// on devices that support it; set_programmatic_launch(false) turns it off process-wide (benchmarks compare both).
// Changing it moves scratch_generation, so captured graphs are rebuilt with the new launch mode.
bool programmatic_launch_enabled(int device = 0);
void set_programmatic_launch(bool on);

// Work one thread enqueues on one stream, captured once and replayed with a single launch (a CUDA graph): the
// decode step of a fixed batch shape, hundreds of small kernels at batch 1. Move-only.
//
// Capture (begin_capture .. end_capture) records instead of running, in thread-local mode: the captured code must
// enqueue only on that stream (not the legacy default stream), must not synchronize, and must not allocate device
// memory (reserve scratch first). Replays read and write the same device addresses as the capture did; what
// changes between replays is the data at those addresses.
class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& other) noexcept;
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Starts recording the work this thread enqueues on `stream` (an owned stream, not the default one).
  static void begin_capture(StreamHandle stream);
  // Ends the recording on `stream` and instantiates it. When the capture broke (a call not allowed inside it),
  // throws Error(kInternal) naming the CUDA error; `stream` is out of capture mode either way.
  static CudaGraph end_capture(StreamHandle stream);
  // Ends a capture after an exception in the captured code, discarding what was recorded (never throws).
  static void abandon_capture(StreamHandle stream) noexcept;

  void launch(StreamHandle stream) const;
  bool empty() const { return exec_ == nullptr; }

 private:
  void release() noexcept;
  void* exec_ = nullptr;  // cudaGraphExec_t
};

}  // namespace skv
