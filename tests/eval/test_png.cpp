// The PNG writer: a decoder here (chunks, CRCs, stored deflate blocks, Adler-32, scanlines) reads back exactly the
// pixels written; the heatmap renders.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "eval/heatmap.h"
#include "eval/png.h"

namespace skv::eval {
namespace {

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

struct Decoded {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Decodes the PNGs encode_png writes (8-bit RGB, stored deflate); fails the test on anything malformed.
Decoded decode(const std::vector<uint8_t>& png) {
  Decoded d;
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  EXPECT_TRUE(png.size() > 8 && std::equal(sig, sig + 8, png.begin()));
  std::vector<uint8_t> idat;
  size_t pos = 8;
  bool ended = false;
  while (pos + 12 <= png.size()) {
    const uint32_t len = be32(&png[pos]);
    const std::string type(png.begin() + static_cast<long>(pos) + 4, png.begin() + static_cast<long>(pos) + 8);
    EXPECT_LE(pos + 12 + len, png.size());
    const std::span<const uint8_t> typed(&png[pos + 4], len + 4);
    EXPECT_EQ(crc32(typed), be32(&png[pos + 8 + len])) << "CRC of " << type;
    const uint8_t* data = &png[pos + 8];
    if (type == "IHDR") {
      d.width = static_cast<int>(be32(data));
      d.height = static_cast<int>(be32(data + 4));
      EXPECT_EQ(data[8], 8);   // bit depth
      EXPECT_EQ(data[9], 2);   // RGB
      EXPECT_EQ(data[12], 0);  // no interlace
    } else if (type == "IDAT") {
      idat.insert(idat.end(), data, data + len);
    } else if (type == "IEND") {
      ended = true;
    }
    pos += 12 + len;
  }
  EXPECT_TRUE(ended);
  EXPECT_EQ(pos, png.size());
  // zlib: header, stored blocks, Adler-32.
  EXPECT_GE(idat.size(), 2u + 5u + 4u);
  EXPECT_EQ(((idat[0] << 8) | idat[1]) % 31, 0) << "zlib header check";
  EXPECT_EQ(idat[0] & 0x0f, 8) << "deflate";
  std::vector<uint8_t> raw;
  size_t p = 2;
  for (bool last = false; !last;) {
    last = (idat[p] & 1) != 0;
    EXPECT_EQ((idat[p] >> 1) & 3, 0) << "stored block";
    const uint16_t n = static_cast<uint16_t>(idat[p + 1] | (idat[p + 2] << 8));
    const uint16_t nn = static_cast<uint16_t>(idat[p + 3] | (idat[p + 4] << 8));
    EXPECT_EQ(static_cast<uint16_t>(~n), nn);
    raw.insert(raw.end(), idat.begin() + static_cast<long>(p) + 5, idat.begin() + static_cast<long>(p) + 5 + n);
    p += 5 + n;
  }
  EXPECT_EQ(adler32(raw), be32(&idat[p]));
  EXPECT_EQ(p + 4, idat.size());
  const size_t row = static_cast<size_t>(d.width) * 3;
  EXPECT_EQ(raw.size(), (row + 1) * static_cast<size_t>(d.height));
  for (int y = 0; y < d.height; ++y) {
    EXPECT_EQ(raw[static_cast<size_t>(y) * (row + 1)], 0) << "filter type none";
    const auto b = raw.begin() + static_cast<long>(static_cast<size_t>(y) * (row + 1) + 1);
    d.rgb.insert(d.rgb.end(), b, b + static_cast<long>(row));
  }
  return d;
}

TEST(Png, Checksums) {
  const std::string s = "123456789";
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  EXPECT_EQ(crc32(bytes), 0xCBF43926u);  // the CRC-32 check value
  const std::string w = "Wikipedia";
  EXPECT_EQ(adler32(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(w.data()), w.size())), 0x11E60398u);
}

TEST(Png, RoundTripsPixels) {
  Image img(37, 23, {10, 20, 30});
  img.fill_rect(3, 4, 10, 5, {255, 0, 0});
  img.set(36, 22, {1, 2, 3});
  img.draw_text(2, 12, "4K 100%", {0, 0, 255});
  const Decoded d = decode(encode_png(img));
  EXPECT_EQ(d.width, 37);
  EXPECT_EQ(d.height, 23);
  EXPECT_EQ(d.rgb, img.rgb());
  EXPECT_EQ(img.at(36, 22), (Rgb{1, 2, 3}));
  EXPECT_EQ(img.at(3, 4), (Rgb{255, 0, 0}));
}

TEST(Png, LargeImageSpansSeveralStoredBlocks) {
  Image img(300, 200);  // 180,200 bytes of scanlines: three stored blocks
  for (int y = 0; y < 200; ++y)
    for (int x = 0; x < 300; ++x) img.set(x, y, {static_cast<uint8_t>(x), static_cast<uint8_t>(y), 7});
  const std::vector<uint8_t> png = encode_png(img);
  EXPECT_EQ(decode(png).rgb, img.rgb());
}

TEST(Png, FontDrawsInk) {
  Image img(40, 10);
  img.draw_text(0, 0, "A", {0, 0, 0});
  int ink = 0;
  for (int y = 0; y < 7; ++y)
    for (int x = 0; x < 5; ++x) ink += img.at(x, y) == Rgb{0, 0, 0};
  EXPECT_EQ(ink, 18);  // the 5x7 'A'
  EXPECT_EQ(Image::text_width("ABC"), 17);
}

TEST(Heatmap, ColoursAndLayout) {
  EXPECT_EQ(heat_color(0), (Rgb{0xF0, 0x49, 0x6E}));
  EXPECT_EQ(heat_color(50), (Rgb{0xEB, 0xB8, 0x39}));
  EXPECT_EQ(heat_color(100), (Rgb{0x0C, 0xD7, 0x9F}));
  HeatmapSpec spec;
  spec.title = "NEEDLE DEPTH SWEEP: TEST";
  spec.column_labels = {"4K", "8K", "16K"};
  spec.row_labels = {"0%", "50%", "100%"};
  HeatmapRow row;
  row.title = "niah_single_2";
  for (const char* m : {"full", "shadowkv"}) {
    HeatmapPanel p;
    p.title = m;
    p.grid = {{100.0, 100.0, 50.0}, {100.0, std::nullopt, 0.0}, {100.0, 75.0, 100.0}};
    row.panels.push_back(p);
  }
  spec.rows.push_back(row);
  const Image img = render_heatmap(spec);
  EXPECT_GT(img.width(), 400);
  EXPECT_GT(img.height(), 150);
  int green = 0, red = 0;
  for (int y = 0; y < img.height(); ++y)
    for (int x = 0; x < img.width(); ++x) {
      green += img.at(x, y) == heat_color(100);
      red += img.at(x, y) == heat_color(0);
    }
  EXPECT_GT(green, 1000);
  EXPECT_GT(red, 200);
  const auto path = std::filesystem::temp_directory_path() / "skv-test-heatmap.png";
  write_png(path, img);
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(decode(bytes).rgb, img.rgb());
  std::filesystem::remove(path);
  EXPECT_THROW(write_png("/nonexistent-dir/x.png", img), Error);
}

}  // namespace
}  // namespace skv::eval
