// Safetensors reading (mmap + header validation against the file size) and writing.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, data.
#include "loader/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace skv {
namespace {

// The reference implementation refuses headers above 100 MB; so do we, to bound the JSON parse.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// A short, single-line rendering of a JSON value for error messages.
std::string brief(const nlohmann::json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

[[noreturn]] void fail(ErrorCode code, const std::string& file, const std::string& what) {
  throw Error(code, file + ": " + what);
}

bool json_to_u64(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    *out = static_cast<uint64_t>(v);
    return true;
  }
  return false;
}

std::string offsets_str(uint64_t b, uint64_t e) {
  return "[" + std::to_string(b) + ", " + std::to_string(e) + "]";
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
  }
  return "?";
}

bool parse_safetensors_dtype(std::string_view name, DType* out) {
  static constexpr DType kAll[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64, DType::kU8};
  for (DType d : kAll) {
    if (name == safetensors_dtype_name(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    fail(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument, file,
         std::string("cannot open: ") + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::kInvalidArgument, file, "not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail(ErrorCode::kParse, file,
         "file is " + std::to_string(size_) + " bytes, too short for the 8-byte header length (not a safetensors file?)");
  }
  // MAP_PRIVATE + PROT_READ: pages come from the page cache on demand, nothing is copied up front.
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file referenced
  if (m == MAP_FAILED) fail(ErrorCode::kResource, file, std::string("mmap failed: ") + std::strerror(map_err));
  map_ = m;

  // From here on a throw must unmap: the destructor does not run for a throwing constructor.
  try {
    const auto* bytes = static_cast<const unsigned char*>(map_);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
    const uint64_t after_len = size_ - 8;
    if (header_len > after_len) {
      fail(ErrorCode::kParse, file,
           "header length is " + std::to_string(header_len) + " bytes, longer than the " + std::to_string(after_len) +
               " bytes that follow it (truncated or not a safetensors file)");
    }
    if (header_len > kMaxHeaderBytes) {
      fail(ErrorCode::kParse, file,
           "header length is " + std::to_string(header_len) + " bytes, above the 100 MB limit");
    }
    const char* hbegin = reinterpret_cast<const char*>(bytes + 8);
    const char* hend = hbegin + header_len;
    while (hend > hbegin && (hend[-1] == ' ' || hend[-1] == '\0')) --hend;  // tolerate NUL padding too

    nlohmann::json header;
    try {
      header = nlohmann::json::parse(hbegin, hend);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorCode::kParse, file, std::string("malformed JSON header: ") + e.what());
    }
    if (!header.is_object()) fail(ErrorCode::kParse, file, "JSON header is not an object, found " + brief(header));

    const char* data = hbegin + header_len;
    const uint64_t data_len = after_len - header_len;
    struct Span {
      uint64_t begin, end;
      size_t idx;
    };
    std::vector<Span> spans;
    tensors_.reserve(header.size());
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      if (name == "__metadata__") continue;  // free-form string map; nothing we need
      const std::string where = "tensor '" + name + "'";
      const nlohmann::json& e = it.value();
      if (!e.is_object()) fail(ErrorCode::kParse, file, where + ": expected an object, found " + brief(e));

      auto dt = e.find("dtype");
      if (dt == e.end() || !dt->is_string())
        fail(ErrorCode::kParse, file, where + ": 'dtype' must be a string");
      SafetensorInfo info;
      info.name = name;
      if (!parse_safetensors_dtype(dt->get<std::string>(), &info.dtype)) {
        fail(ErrorCode::kUnsupported, file,
             where + " has dtype '" + dt->get<std::string>() + "', expected one of F32, F16, BF16, I32, I64, U8");
      }

      auto sh = e.find("shape");
      if (sh == e.end() || !sh->is_array())
        fail(ErrorCode::kParse, file, where + ": 'shape' must be an array of non-negative integers");
      if (sh->size() > static_cast<size_t>(kMaxDims)) {
        fail(ErrorCode::kUnsupported, file,
             where + " has rank " + std::to_string(sh->size()) + ", at most " + std::to_string(kMaxDims) +
                 " is supported");
      }
      // numel * dtype size, checked for overflow: a hostile shape must not wrap around to a small size.
      uint64_t expect_bytes = dtype_size(info.dtype);
      info.shape.rank = static_cast<int>(sh->size());
      for (size_t d = 0; d < sh->size(); ++d) {
        uint64_t v = 0;
        if (!json_to_u64((*sh)[d], &v) || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          fail(ErrorCode::kParse, file, where + ": 'shape' must be an array of non-negative integers, found " + brief(*sh));
        info.shape.dims[d] = static_cast<int64_t>(v);
        if (v != 0 && expect_bytes > std::numeric_limits<uint64_t>::max() / v) {
          fail(ErrorCode::kParse, file, where + ": shape " + brief(*sh) + " is too large");
        }
        expect_bytes *= v;
      }

      auto off = e.find("data_offsets");
      uint64_t b = 0, en = 0;
      if (off == e.end() || !off->is_array() || off->size() != 2 || !json_to_u64((*off)[0], &b) ||
          !json_to_u64((*off)[1], &en)) {
        fail(ErrorCode::kParse, file,
             where + ": 'data_offsets' must be [begin, end] with non-negative integers, found " +
                 (off == e.end() ? std::string("nothing") : brief(*off)));
      }
      if (b > en) fail(ErrorCode::kParse, file, where + " has data_offsets " + offsets_str(b, en) + " with begin > end");
      if (en > data_len) {
        fail(ErrorCode::kParse, file,
             where + " has data_offsets " + offsets_str(b, en) + " out of range: the data section holds only " +
                 std::to_string(data_len) + " bytes (truncated file?)");
      }
      if (en - b != expect_bytes) {
        fail(ErrorCode::kParse, file,
             where + " is " + info.shape.str() + " " + safetensors_dtype_name(info.dtype) + " = " +
                 std::to_string(expect_bytes) + " bytes, but its data_offsets " + offsets_str(b, en) + " span " +
                 std::to_string(en - b) + " bytes");
      }
      info.offset = static_cast<size_t>(b);
      info.nbytes = static_cast<size_t>(en - b);
      info.data = data + b;
      spans.push_back({b, en, tensors_.size()});
      tensors_.push_back(std::move(info));
    }

    // Overlap: sorted by begin, each non-empty tensor must start at or after the furthest end so far.
    std::sort(spans.begin(), spans.end(),
              [](const Span& x, const Span& y) { return x.begin != y.begin ? x.begin < y.begin : x.end < y.end; });
    const Span* furthest = nullptr;
    for (const Span& s : spans) {
      if (s.begin == s.end) continue;
      if (furthest && s.begin < furthest->end) {
        fail(ErrorCode::kParse, file,
             "tensors '" + tensors_[furthest->idx].name + "' " + offsets_str(furthest->begin, furthest->end) +
                 " and '" + tensors_[s.idx].name + "' " + offsets_str(s.begin, s.end) + " overlap");
      }
      if (!furthest || s.end > furthest->end) furthest = &s;
    }

    // Keep tensors in file order: it is the natural order to stream them in.
    std::vector<SafetensorInfo> ordered;
    ordered.reserve(tensors_.size());
    for (const Span& s : spans) ordered.push_back(std::move(tensors_[s.idx]));
    tensors_ = std::move(ordered);
    for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);

    for (SafetensorInfo& t : tensors_) {
      if (t.nbytes == 0 || reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype) == 0) continue;
      copies_.emplace_back(t.nbytes);  // HostBuffer moves keep their pointer
      std::memcpy(copies_.back().data(), t.data, t.nbytes);
      t.data = copies_.back().data();
      copied_bytes_ += t.nbytes;
    }
  } catch (...) {
    unmap();
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), size_(o.size_), tensors_(std::move(o.tensors_)),
      copies_(std::move(o.copies_)), copied_bytes_(o.copied_bytes_), index_(std::move(o.index_)) {
  o.map_ = nullptr;
  o.size_ = 0;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    map_ = o.map_;
    size_ = o.size_;
    tensors_ = std::move(o.tensors_);
    copies_ = std::move(o.copies_);
    copied_bytes_ = o.copied_bytes_;
    index_ = std::move(o.index_);
    o.map_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void SafetensorsFile::unmap() noexcept {
  if (map_) ::munmap(map_, size_);
  map_ = nullptr;
}

const SafetensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const SafetensorInfo& SafetensorsFile::at(std::string_view name) const {
  const SafetensorInfo* t = find(name);
  if (!t) fail(ErrorCode::kNotFound, path_.string(), "no tensor '" + std::string(name) + "'");
  return *t;
}

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, TensorView>>& tensors) {
  const std::string file = path.string();
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::unordered_set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__")
      fail(ErrorCode::kInvalidArgument, file, "invalid tensor name '" + name + "'");
    if (!seen.insert(name).second) fail(ErrorCode::kInvalidArgument, file, "duplicate tensor name '" + name + "'");
    if (t.device.kind != DeviceKind::kCpu || !t.is_contiguous() || (t.data == nullptr && t.numel() != 0)) {
      fail(ErrorCode::kInvalidArgument, file,
           "tensor '" + name + "' (" + t.describe() + ") must be a contiguous host tensor");
    }
    const uint64_t n = t.nbytes();
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (int d = 0; d < t.shape.rank; ++d) shape.push_back(t.shape[d]);
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                    {"shape", shape},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data section starts 8-byte aligned (8 + |h| is a multiple of 8)

  std::FILE* f = std::fopen(file.c_str(), "wb");
  if (!f) {
    const int err = errno;
    fail(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument, file,
         std::string("cannot create: ") + std::strerror(err));
  }
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((static_cast<uint64_t>(h.size()) >> (8 * i)) & 0xff);
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
  for (const auto& [name, t] : tensors) {
    if (!ok) break;
    const size_t n = t.nbytes();
    if (n) ok = std::fwrite(t.data, 1, n, f) == n;
  }
  const int err = errno;
  if (std::fclose(f) != 0) ok = false;
  if (!ok) {
    std::remove(file.c_str());  // never leave a truncated file that would fail later with a confusing error
    fail(ErrorCode::kResource, file, std::string("write failed: ") + std::strerror(err));
  }
}

}  // namespace skv
