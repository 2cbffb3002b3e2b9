// backend/device.h in a build without CUDA (-DSKV_CUDA=OFF): cuda_available() is false and every other entry
// point throws Error(kUnsupported). Destructors and default-constructed objects are harmless no-ops.
#include <string>

#include "backend/device.h"

namespace skv {
namespace {

[[noreturn]] void no_cuda() {
  throw Error(ErrorCode::kUnsupported, "built without CUDA; reconfigure with -DSKV_CUDA=ON");
}

}  // namespace

namespace detail {
[[noreturn]] void throw_cuda_error(int code, const char* expr, const char* file, int line) {
  throw Error(ErrorCode::kUnsupported, std::string("built without CUDA; reconfigure with -DSKV_CUDA=ON (") + expr +
                                           " returned " + std::to_string(code) + " at " + file + ":" +
                                           std::to_string(line) + ")");
}
}  // namespace detail

bool cuda_available() { return false; }
int cuda_device_count() { return 0; }
const DeviceProperties& device_properties(int) { no_cuda(); }
void set_device(int) { no_cuda(); }
int current_device() { no_cuda(); }

DeviceGuard::DeviceGuard(int) { no_cuda(); }
DeviceGuard::~DeviceGuard() = default;

DeviceBuffer::DeviceBuffer(size_t, int) { no_cuda(); }
DeviceBuffer::DeviceBuffer(DType, Shape, int) { no_cuda(); }
DeviceBuffer::~DeviceBuffer() = default;
void DeviceBuffer::release() noexcept {}
DeviceBuffer::DeviceBuffer(DeviceBuffer&&) noexcept {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&&) noexcept { return *this; }
TensorView DeviceBuffer::view(DType, Shape) const { no_cuda(); }

PinnedHostBuffer::PinnedHostBuffer(size_t) { no_cuda(); }
PinnedHostBuffer::PinnedHostBuffer(DType, Shape) { no_cuda(); }
PinnedHostBuffer::~PinnedHostBuffer() = default;
void PinnedHostBuffer::release() noexcept {}
PinnedHostBuffer::PinnedHostBuffer(PinnedHostBuffer&&) noexcept {}
PinnedHostBuffer& PinnedHostBuffer::operator=(PinnedHostBuffer&&) noexcept { return *this; }
TensorView PinnedHostBuffer::view(DType, Shape) const { no_cuda(); }

Stream Stream::create(int, bool) { no_cuda(); }
Stream::~Stream() = default;
void Stream::release() noexcept {}
Stream::Stream(Stream&&) noexcept {}
Stream& Stream::operator=(Stream&&) noexcept { return *this; }
void Stream::synchronize() const { no_cuda(); }

Event::Event() { no_cuda(); }
Event::~Event() = default;
void Event::release() noexcept {}
Event::Event(Event&&) noexcept {}
Event& Event::operator=(Event&&) noexcept { return *this; }
void Event::record(StreamHandle) { no_cuda(); }
void Event::synchronize() const { no_cuda(); }
float Event::elapsed_ms(const Event&, const Event&) { no_cuda(); }

StreamHandle current_stream(int) { no_cuda(); }
void set_current_stream(StreamHandle, int) { no_cuda(); }
void synchronize_device(int) { no_cuda(); }

void copy_to_device(const TensorView&, const TensorView&) { no_cuda(); }
void copy_to_host(const TensorView&, const TensorView&) { no_cuda(); }
void copy_to_device_async(const TensorView&, const TensorView&, StreamHandle) { no_cuda(); }
void copy_to_host_async(const TensorView&, const TensorView&, StreamHandle) { no_cuda(); }
void copy(const TensorView&, const TensorView&, StreamHandle) { no_cuda(); }
void copy_bytes(void*, const void*, size_t) { no_cuda(); }
void copy_bytes_async(void*, const void*, size_t, StreamHandle) { no_cuda(); }

void* scratch(ScratchSlot, size_t, int) { no_cuda(); }
void reserve_scratch(ScratchSlot, size_t, int) { no_cuda(); }
size_t scratch_bytes(ScratchSlot, int) { return 0; }
void release_scratch(int) { no_cuda(); }
uint64_t scratch_generation(int) { return 0; }
bool programmatic_launch_enabled(int) { return false; }
void set_programmatic_launch(bool) {}

CudaGraph::~CudaGraph() = default;
CudaGraph::CudaGraph(CudaGraph&&) noexcept {}
CudaGraph& CudaGraph::operator=(CudaGraph&&) noexcept { return *this; }
void CudaGraph::begin_capture(StreamHandle) { no_cuda(); }
CudaGraph CudaGraph::end_capture(StreamHandle) { no_cuda(); }
void CudaGraph::abandon_capture(StreamHandle) noexcept {}
void CudaGraph::launch(StreamHandle) const { no_cuda(); }
void CudaGraph::release() noexcept {}

}  // namespace skv
