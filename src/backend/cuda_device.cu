// The CUDA implementation of backend/device.h.
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "backend/device.h"

namespace skv {
namespace detail {

[[noreturn]] void throw_cuda_error(int code, const char* expr, const char* file, int line) {
  const auto err = static_cast<cudaError_t>(code);
  const ErrorCode kind = err == cudaErrorMemoryAllocation ? ErrorCode::kResource : ErrorCode::kInternal;
  throw Error(kind, std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") in " +
                        expr + " at " + file + ":" + std::to_string(line));
}

}  // namespace detail

namespace {

constexpr int kMaxDevices = 16;

void check_device_index(int device) {
  if (device < 0 || device >= kMaxDevices || device >= cuda_device_count())
    throw Error(ErrorCode::kInvalidArgument,
                "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(cuda_device_count()) +
                    " visible)");
}

size_t tensor_bytes(DType dtype, const Shape& shape) {
  return static_cast<size_t>(shape.numel()) * dtype_size(dtype);
}

void require_same_layout(const char* what, const TensorView& dst, const TensorView& src) {
  if (dst.dtype != src.dtype || !(dst.shape == src.shape) || !dst.is_contiguous() || !src.is_contiguous())
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + ": tensors differ or are not contiguous: dst " +
                                                 dst.describe() + ", src " + src.describe());
}

void require_kind(const char* what, const char* name, const TensorView& t, DeviceKind kind) {
  if (t.device.kind != kind)
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + ": " + name + " must be a " +
                                                 (kind == DeviceKind::kCuda ? "CUDA" : "CPU") + " tensor");
}

// Moves whenever any thread's scratch buffer of any device is (re)allocated or freed, a thread's buffers included
// when the thread exits: one process-wide counter, so a graph captured on one thread is never taken for current
// on another whose own counter happened to match.
std::atomic<uint64_t> g_scratch_generation{1};

struct ThreadState {
  std::array<StreamHandle, kMaxDevices> streams{};
  std::array<std::array<DeviceBuffer, static_cast<size_t>(ScratchSlot::kCount)>, kMaxDevices> scratch;
  ~ThreadState() { ++g_scratch_generation; }
};
ThreadState& thread_state() {
  thread_local ThreadState state;
  return state;
}

}  // namespace

bool cuda_available() { return cuda_device_count() > 0; }

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the error: no driver or no device
      return 0;
    }
    return n;
  }();
  return count;
}

const DeviceProperties& device_properties(int device) {
  check_device_index(device);
  static std::array<DeviceProperties, kMaxDevices> cache;
  static std::array<std::once_flag, kMaxDevices> once;
  std::call_once(once[static_cast<size_t>(device)], [device] {
    cudaDeviceProp p{};
    SKV_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    DeviceProperties& d = cache[static_cast<size_t>(device)];
    d.name = p.name;
    d.index = device;
    d.major = p.major;
    d.minor = p.minor;
    d.multiprocessors = p.multiProcessorCount;
    d.total_memory = p.totalGlobalMem;
    d.l2_cache_bytes = static_cast<size_t>(p.l2CacheSize);
    d.shared_memory_per_block_optin = p.sharedMemPerBlockOptin;
    d.shared_memory_per_multiprocessor = p.sharedMemPerMultiprocessor;
    d.memory_bus_width_bits = p.memoryBusWidth;
  });
  return cache[static_cast<size_t>(device)];
}

void set_device(int device) {
  int current = -1;
  SKV_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    check_device_index(device);
    SKV_CUDA_CHECK(cudaSetDevice(device));
  }
}

int current_device() {
  int current = 0;
  SKV_CUDA_CHECK(cudaGetDevice(&current));
  return current;
}

DeviceGuard::DeviceGuard(int device) {
  SKV_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) {
    check_device_index(device);
    SKV_CUDA_CHECK(cudaSetDevice(device));
  } else {
    previous_ = -1;  // nothing to restore
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) (void)cudaSetDevice(previous_);
}

// ---- DeviceBuffer

DeviceBuffer::DeviceBuffer(size_t bytes, int device) : bytes_(bytes), device_(device) {
  DeviceGuard guard(device);
  if (bytes > 0) {
    const cudaError_t rc = cudaMalloc(&data_, bytes);
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      data_ = nullptr;
      throw Error(ErrorCode::kResource, "cudaMalloc of " + std::to_string(bytes) + " bytes on CUDA device " +
                                            std::to_string(device) + " failed: " + cudaGetErrorString(rc));
    }
  }
}

DeviceBuffer::DeviceBuffer(DType dtype, Shape shape, int device) : DeviceBuffer(tensor_bytes(dtype, shape), device) {
  dtype_ = dtype;
  shape_ = shape;
  if (bytes_ > 0) {
    DeviceGuard guard(device);
    SKV_CUDA_CHECK(cudaMemset(data_, 0, bytes_));
  }
}

DeviceBuffer::~DeviceBuffer() { release(); }

void DeviceBuffer::release() noexcept {
  if (data_ != nullptr) {
    int previous = -1;
    (void)cudaGetDevice(&previous);
    if (previous != device_) (void)cudaSetDevice(device_);
    (void)cudaFree(data_);  // may fail at process exit, when the runtime is unloading: nothing to do then
    if (previous >= 0 && previous != device_) (void)cudaSetDevice(previous);
    data_ = nullptr;
  }
  bytes_ = 0;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : data_(o.data_), bytes_(o.bytes_), device_(o.device_), dtype_(o.dtype_), shape_(o.shape_) {
  o.data_ = nullptr;
  o.bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    bytes_ = o.bytes_;
    device_ = o.device_;
    dtype_ = o.dtype_;
    shape_ = o.shape_;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

TensorView DeviceBuffer::view(DType dtype, Shape shape) const {
  SKV_ASSERT_MSG(tensor_bytes(dtype, shape) <= bytes_, "DeviceBuffer::view larger than the buffer");
  return TensorView(data_, dtype, shape, DeviceId{DeviceKind::kCuda, device_});
}

// ---- PinnedHostBuffer

PinnedHostBuffer::PinnedHostBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes > 0) {
    const cudaError_t rc = cudaHostAlloc(&data_, bytes, cudaHostAllocDefault);
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      data_ = nullptr;
      throw Error(ErrorCode::kResource, "cudaHostAlloc of " + std::to_string(bytes) +
                                            " bytes failed: " + cudaGetErrorString(rc));
    }
  }
}

PinnedHostBuffer::PinnedHostBuffer(DType dtype, Shape shape) : PinnedHostBuffer(tensor_bytes(dtype, shape)) {
  dtype_ = dtype;
  shape_ = shape;
  if (bytes_ > 0) std::memset(data_, 0, bytes_);
}

PinnedHostBuffer::~PinnedHostBuffer() { release(); }

void PinnedHostBuffer::release() noexcept {
  if (data_ != nullptr) (void)cudaFreeHost(data_);
  data_ = nullptr;
  bytes_ = 0;
}

PinnedHostBuffer::PinnedHostBuffer(PinnedHostBuffer&& o) noexcept
    : data_(o.data_), bytes_(o.bytes_), dtype_(o.dtype_), shape_(o.shape_) {
  o.data_ = nullptr;
  o.bytes_ = 0;
}

PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    bytes_ = o.bytes_;
    dtype_ = o.dtype_;
    shape_ = o.shape_;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

TensorView PinnedHostBuffer::view(DType dtype, Shape shape) const {
  SKV_ASSERT_MSG(tensor_bytes(dtype, shape) <= bytes_, "PinnedHostBuffer::view larger than the buffer");
  return TensorView(data_, dtype, shape);
}

// ---- Stream, Event

Stream Stream::create(int device, bool non_blocking) {
  DeviceGuard guard(device);
  Stream s;
  SKV_CUDA_CHECK(cudaStreamCreateWithFlags(&s.handle_, non_blocking ? cudaStreamNonBlocking : cudaStreamDefault));
  s.owned_ = true;
  return s;
}

Stream::~Stream() { release(); }

void Stream::release() noexcept {
  if (owned_ && handle_ != nullptr) (void)cudaStreamDestroy(handle_);
  handle_ = nullptr;
  owned_ = false;
}

Stream::Stream(Stream&& o) noexcept : handle_(o.handle_), owned_(o.owned_) {
  o.handle_ = nullptr;
  o.owned_ = false;
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    release();
    handle_ = o.handle_;
    owned_ = o.owned_;
    o.handle_ = nullptr;
    o.owned_ = false;
  }
  return *this;
}

void Stream::synchronize() const { SKV_CUDA_CHECK(cudaStreamSynchronize(handle_)); }

Event::Event() { SKV_CUDA_CHECK(cudaEventCreate(&handle_)); }
Event::~Event() { release(); }
void Event::release() noexcept {
  if (handle_ != nullptr) (void)cudaEventDestroy(handle_);
  handle_ = nullptr;
}
Event::Event(Event&& o) noexcept : handle_(o.handle_) { o.handle_ = nullptr; }
Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    release();
    handle_ = o.handle_;
    o.handle_ = nullptr;
  }
  return *this;
}
void Event::record(StreamHandle stream) { SKV_CUDA_CHECK(cudaEventRecord(handle_, stream)); }
void Event::synchronize() const { SKV_CUDA_CHECK(cudaEventSynchronize(handle_)); }
float Event::elapsed_ms(const Event& start, const Event& end) {
  float ms = 0.0f;
  SKV_CUDA_CHECK(cudaEventElapsedTime(&ms, start.handle_, end.handle_));
  return ms;
}

// ---- current stream

StreamHandle current_stream(int device) {
  if (device < 0 || device >= kMaxDevices) check_device_index(device);
  return thread_state().streams[static_cast<size_t>(device)];
}

void set_current_stream(StreamHandle stream, int device) {
  check_device_index(device);
  thread_state().streams[static_cast<size_t>(device)] = stream;
}

void synchronize_device(int device) {
  DeviceGuard guard(device);
  SKV_CUDA_CHECK(cudaDeviceSynchronize());
}

// ---- copies

void copy_to_device_async(const TensorView& dst, const TensorView& src, StreamHandle stream) {
  require_same_layout("copy_to_device", dst, src);
  require_kind("copy_to_device", "dst", dst, DeviceKind::kCuda);
  require_kind("copy_to_device", "src", src, DeviceKind::kCpu);
  if (dst.nbytes() == 0) return;
  DeviceGuard guard(dst.device.index);
  SKV_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyHostToDevice, stream));
}

void copy_to_host_async(const TensorView& dst, const TensorView& src, StreamHandle stream) {
  require_same_layout("copy_to_host", dst, src);
  require_kind("copy_to_host", "dst", dst, DeviceKind::kCpu);
  require_kind("copy_to_host", "src", src, DeviceKind::kCuda);
  if (dst.nbytes() == 0) return;
  DeviceGuard guard(src.device.index);
  SKV_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDeviceToHost, stream));
}

void copy_to_device(const TensorView& dst, const TensorView& src) {
  const StreamHandle s = current_stream(dst.device.index);
  copy_to_device_async(dst, src, s);
  DeviceGuard guard(dst.device.index);
  SKV_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_to_host(const TensorView& dst, const TensorView& src) {
  const StreamHandle s = current_stream(src.device.index);
  copy_to_host_async(dst, src, s);
  DeviceGuard guard(src.device.index);
  SKV_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy(const TensorView& dst, const TensorView& src, StreamHandle stream) {
  require_same_layout("copy", dst, src);
  if (dst.nbytes() == 0) return;
  SKV_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDefault, stream));
}

void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  SKV_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void copy_bytes_async(void* dst, const void* src, size_t bytes, StreamHandle stream) {
  if (bytes == 0) return;
  SKV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
}

// ---- scratch

void* scratch(ScratchSlot slot, size_t bytes, int device) {
  check_device_index(device);
  DeviceBuffer& buf = thread_state().scratch[static_cast<size_t>(device)][static_cast<size_t>(slot)];
  if (buf.bytes() < bytes) {
    if (buf.data() != nullptr) {
      // Kernels queued earlier may still read the old buffer: wait for them before freeing it.
      DeviceGuard guard(device);
      SKV_CUDA_CHECK(cudaDeviceSynchronize());
      buf = DeviceBuffer();
    }
    // Round up to 1 MiB (grow-only: avoid a reallocation for every slightly larger request).
    const size_t rounded = (bytes + (size_t{1} << 20) - 1) & ~((size_t{1} << 20) - 1);
    buf = DeviceBuffer(rounded, device);
    ++g_scratch_generation;
  }
  return buf.data();
}

void reserve_scratch(ScratchSlot slot, size_t bytes, int device) { (void)scratch(slot, bytes, device); }

size_t scratch_bytes(ScratchSlot slot, int device) {
  check_device_index(device);
  return thread_state().scratch[static_cast<size_t>(device)][static_cast<size_t>(slot)].bytes();
}

void release_scratch(int device) {
  check_device_index(device);
  DeviceGuard guard(device);
  SKV_CUDA_CHECK(cudaDeviceSynchronize());
  for (DeviceBuffer& b : thread_state().scratch[static_cast<size_t>(device)]) b = DeviceBuffer();
  ++g_scratch_generation;
}

uint64_t scratch_generation(int device) {
  check_device_index(device);
  return g_scratch_generation.load();
}

// ---- programmatic dependent launch

namespace {
std::atomic<bool> g_programmatic_launch{true};
}  // namespace

bool programmatic_launch_enabled(int device) {
  return g_programmatic_launch.load(std::memory_order_relaxed) && device_properties(device).major >= 9;
}

void set_programmatic_launch(bool on) {
  if (g_programmatic_launch.exchange(on) != on) ++g_scratch_generation;
}

// ---- graphs

CudaGraph::~CudaGraph() { release(); }
CudaGraph::CudaGraph(CudaGraph&& other) noexcept : exec_(other.exec_) { other.exec_ = nullptr; }
CudaGraph& CudaGraph::operator=(CudaGraph&& other) noexcept {
  if (this != &other) {
    release();
    exec_ = other.exec_;
    other.exec_ = nullptr;
  }
  return *this;
}

void CudaGraph::release() noexcept {
  if (exec_ != nullptr) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  exec_ = nullptr;
}

void CudaGraph::begin_capture(StreamHandle stream) {
  if (stream == nullptr)
    throw Error(ErrorCode::kInvalidArgument, "CUDA graph capture needs an owned stream, not the default stream");
  SKV_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
}

CudaGraph CudaGraph::end_capture(StreamHandle stream) {
  cudaGraph_t graph = nullptr;
  const cudaError_t rc = cudaStreamEndCapture(stream, &graph);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();  // a broken capture leaves a sticky-free error: clear it
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    detail::throw_cuda_error(static_cast<int>(rc), "cudaStreamEndCapture", __FILE__, __LINE__);
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t irc = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  if (irc != cudaSuccess) detail::throw_cuda_error(static_cast<int>(irc), "cudaGraphInstantiate", __FILE__, __LINE__);
  CudaGraph g;
  g.exec_ = exec;
  return g;
}

void CudaGraph::abandon_capture(StreamHandle stream) noexcept {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess || status == cudaStreamCaptureStatusNone) {
    (void)cudaGetLastError();
    return;
  }
  cudaGraph_t graph = nullptr;
  (void)cudaStreamEndCapture(stream, &graph);
  if (graph != nullptr) (void)cudaGraphDestroy(graph);
  (void)cudaGetLastError();
}

void CudaGraph::launch(StreamHandle stream) const {
  SKV_ASSERT_MSG(exec_ != nullptr, "CudaGraph::launch on an empty graph");
  SKV_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream));
}

}  // namespace skv
