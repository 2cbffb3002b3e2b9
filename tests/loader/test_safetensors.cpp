// SafetensorsFile / write_safetensors: round trips of every dtype, and every way a header can be wrong.
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "loader/safetensors.h"
#include "loader_fixtures.h"

namespace skv {
namespace {

using testing::TempDir;
using testing::write_raw_safetensors;

// A valid one-tensor header for a [2, 2] F32 tensor at `begin`..`end`.
std::string header_for(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t begin,
                       uint64_t end) {
  return "{\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}}";
}

TEST(Safetensors, RoundTripsEveryDType) {
  TempDir dir;
  std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
  std::vector<uint16_t> f16 = {f32_to_f16(1.0f), f32_to_f16(-0.5f), f32_to_f16(65504.0f)};
  std::vector<uint16_t> bf16 = {f32_to_bf16(3.0f), f32_to_bf16(-1e10f)};
  std::vector<int32_t> i32 = {-7, 0, 1 << 30};
  std::vector<int64_t> i64 = {int64_t{1} << 40, -1};
  std::vector<uint8_t> u8 = {0, 1, 2, 255, 9};
  float scalar = 42.0f;
  std::vector<std::pair<std::string, TensorView>> in = {
      {"a.f32", TensorView(f32.data(), DType::kF32, {2, 3})},
      {"b.f16", TensorView(f16.data(), DType::kF16, {3})},
      {"c.bf16", TensorView(bf16.data(), DType::kBF16, {1, 2})},
      {"d.i32", TensorView(i32.data(), DType::kI32, {3, 1})},
      {"e.i64", TensorView(i64.data(), DType::kI64, {2})},
      {"f.u8", TensorView(u8.data(), DType::kU8, {5})},  // odd size: later tensors start unaligned, still fine
      {"g.scalar", TensorView(&scalar, DType::kF32, {})},
      {"h.empty", TensorView(nullptr, DType::kF32, {0, 4})},
      {"i.rank4", TensorView(f32.data(), DType::kF32, {1, 2, 1, 3})},
  };
  write_safetensors(dir / "t.safetensors", in);

  SafetensorsFile f(dir / "t.safetensors");
  ASSERT_EQ(f.tensors().size(), in.size());
  for (const auto& [name, view] : in) {
    const SafetensorInfo* t = f.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->name, name);
    EXPECT_EQ(t->dtype, view.dtype) << name;
    EXPECT_EQ(t->shape, view.shape) << name << " " << t->shape.str();
    ASSERT_EQ(t->nbytes, view.nbytes()) << name;
    if (t->nbytes) {
      EXPECT_EQ(std::memcmp(t->data, view.data, t->nbytes), 0) << name;
    }
    const TensorView v = f.view(name);
    EXPECT_EQ(v.dtype, view.dtype);
    EXPECT_EQ(v.shape, view.shape);
    EXPECT_TRUE(v.is_contiguous());
    if (t->nbytes) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % dtype_size(t->dtype), 0u) << name << " is misaligned";
    }
  }
  // Behind the 6-byte f16 and the 5-byte u8, d.i32 (12 B), e.i64 (16 B), g.scalar (4 B) and i.rank4 (24 B)
  // sit misaligned in the file: those, and only those, were copied.
  EXPECT_EQ(f.copied_bytes(), 12u + 16u + 4u + 24u);
  // Tensors are listed in file (offset) order, which is the write order here.
  EXPECT_EQ(f.tensors().front().name, "a.f32");
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_SKV_ERROR(f.at("nope"), ErrorCode::kNotFound, "t.safetensors", "no tensor 'nope'");

  // The header is padded with spaces so that the data section starts 8-byte aligned.
  std::ifstream raw(dir / "t.safetensors", std::ios::binary);
  uint64_t header_len = 0;
  raw.read(reinterpret_cast<char*>(&header_len), 8);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.find("a.f32")->data) % 8, 0u);
}

TEST(Safetensors, MetadataIsIgnoredAndFileIsMovable) {
  TempDir dir;
  float data[4] = {1, 2, 3, 4};
  write_raw_safetensors(dir / "m.safetensors",
                        "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                        "\"data_offsets\":[0,16]}}   ",
                        std::string(reinterpret_cast<const char*>(data), sizeof data));
  SafetensorsFile a(dir / "m.safetensors");
  SafetensorsFile b(std::move(a));
  ASSERT_EQ(b.tensors().size(), 1u);
  EXPECT_EQ(b.view("w").ptr<float>()[3], 4.0f);
  EXPECT_EQ(b.copied_bytes(), 16u);  // the unpadded header leaves the data section misaligned
  EXPECT_EQ(b.file_name(), "m.safetensors");
}

TEST(Safetensors, MissingFile) {
  TempDir dir;
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "absent.safetensors"), ErrorCode::kNotFound, "absent.safetensors",
                   "cannot open");
}

TEST(Safetensors, FileTooShortForHeaderLength) {
  TempDir dir;
  testing::write_file(dir / "short.safetensors", "abc");
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "short.safetensors"), ErrorCode::kParse, "short.safetensors", "3 bytes",
                   "too short");
}

TEST(Safetensors, HeaderLongerThanFile) {
  TempDir dir;
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(0xe8);  // 1000
  bytes[1] = 0x03;
  testing::write_file(dir / "h.safetensors", bytes + "{\"a\":1}");
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "h.safetensors"), ErrorCode::kParse, "h.safetensors",
                   "header length is 1000 bytes", "longer than the 7 bytes");
}

TEST(Safetensors, MalformedJson) {
  TempDir dir;
  write_raw_safetensors(dir / "j.safetensors", "{\"w\": {\"dtype\": \"F32\",", "");
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "j.safetensors"), ErrorCode::kParse, "j.safetensors", "malformed JSON");
  write_raw_safetensors(dir / "k.safetensors", "[1, 2]", "");
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "k.safetensors"), ErrorCode::kParse, "k.safetensors", "not an object");
}

TEST(Safetensors, UnknownDType) {
  TempDir dir;
  write_raw_safetensors(dir / "d.safetensors", header_for("w.q", "F8_E4M3", "[2]", 0, 2), "ab");
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "d.safetensors"), ErrorCode::kUnsupported, "d.safetensors", "'w.q'",
                   "F8_E4M3", "F32, F16, BF16");
}

TEST(Safetensors, TruncatedData) {
  TempDir dir;
  std::vector<float> v(64, 1.0f);
  write_safetensors(dir / "t.safetensors", {{"big", TensorView(v.data(), DType::kF32, {8, 8})}});
  const auto size = std::filesystem::file_size(dir / "t.safetensors");
  std::filesystem::resize_file(dir / "t.safetensors", size - 10);
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "t.safetensors"), ErrorCode::kParse, "t.safetensors", "'big'",
                   "[0, 256] out of range", "holds only 246 bytes", "truncated");
}

TEST(Safetensors, OffsetsOutOfRange) {
  TempDir dir;
  write_raw_safetensors(dir / "o.safetensors", header_for("w", "F32", "[2]", 100, 108), std::string(16, 'x'));
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "o.safetensors"), ErrorCode::kParse, "o.safetensors", "'w'",
                   "[100, 108] out of range");
}

TEST(Safetensors, BeginAfterEnd) {
  TempDir dir;
  write_raw_safetensors(dir / "b.safetensors", header_for("w", "F32", "[2]", 8, 0), std::string(16, 'x'));
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "b.safetensors"), ErrorCode::kParse, "b.safetensors", "'w'", "[8, 0]",
                   "begin > end");
}

TEST(Safetensors, OverlappingTensors) {
  TempDir dir;
  const std::string header =
      "{\"first\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
      "\"second\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}";
  write_raw_safetensors(dir / "ov.safetensors", header, std::string(24, 'x'));
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "ov.safetensors"), ErrorCode::kParse, "ov.safetensors",
                   "'first' [0, 16] and 'second' [8, 24] overlap");
}

TEST(Safetensors, ByteSizeMismatch) {
  TempDir dir;
  write_raw_safetensors(dir / "s.safetensors", header_for("w", "BF16", "[2, 3]", 0, 16), std::string(16, 'x'));
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "s.safetensors"), ErrorCode::kParse, "s.safetensors", "'w'",
                   "[2, 3] BF16 = 12 bytes", "span 16 bytes");
}

TEST(Safetensors, BadShapesAndOffsets) {
  TempDir dir;
  write_raw_safetensors(dir / "n.safetensors", header_for("w", "F32", "[-1, 2]", 0, 8), std::string(8, 'x'));
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "n.safetensors"), ErrorCode::kParse, "'w'", "'shape'", "[-1,2]");
  write_raw_safetensors(dir / "r.safetensors", header_for("w", "F32", "[1,1,1,1,2]", 0, 8), std::string(8, 'x'));
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "r.safetensors"), ErrorCode::kUnsupported, "'w'", "rank 5");
  write_raw_safetensors(dir / "x.safetensors",
                        header_for("w", "F32", "[4294967296, 4294967296, 4294967296]", 0, 8), std::string(8, 'x'));
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "x.safetensors"), ErrorCode::kParse, "'w'", "too large");
  write_raw_safetensors(dir / "m.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", std::string(8, 'x'));
  EXPECT_SKV_ERROR(SafetensorsFile(dir / "m.safetensors"), ErrorCode::kParse, "m.safetensors", "'w'",
                   "'data_offsets'");
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir dir;
  float v[6] = {};
  TensorView t(v, DType::kF32, {2, 3});
  EXPECT_SKV_ERROR(write_safetensors(dir / "w.safetensors", {{"a", t}, {"a", t}}), ErrorCode::kInvalidArgument,
                   "duplicate tensor name 'a'");
  TensorView strided = t;
  std::swap(strided.strides[0], strided.strides[1]);
  strided.shape = {3, 2};
  EXPECT_SKV_ERROR(write_safetensors(dir / "w.safetensors", {{"s", strided}}), ErrorCode::kInvalidArgument, "'s'",
                   "contiguous");
  EXPECT_SKV_ERROR(write_safetensors(dir / "no_such_dir" / "w.safetensors", {{"a", t}}), ErrorCode::kNotFound,
                   "cannot create");
}

}  // namespace
}  // namespace skv
