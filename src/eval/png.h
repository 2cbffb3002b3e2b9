// A minimal PNG writer (8-bit RGB, no filtering, zlib "stored" deflate blocks: larger files than a compressor
// would make, but no library) and an RGB canvas with a built-in 5x7 bitmap font for labels.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

namespace skv::eval {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

class Image {
 public:
  Image(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return width_; }
  int height() const { return height_; }
  Rgb at(int x, int y) const;
  void set(int x, int y, Rgb c);  // ignores points outside
  void fill_rect(int x, int y, int w, int h, Rgb c);
  void rect_outline(int x, int y, int w, int h, Rgb c);
  // Text in the 5x7 font, each glyph 6x8 cells at `scale` pixels a cell; (x, y) is the top left. Lower case is
  // drawn as upper case; characters without a glyph as '?'.
  void draw_text(int x, int y, std::string_view text, Rgb c, int scale = 1);
  static int text_width(std::string_view text, int scale = 1) { return static_cast<int>(text.size()) * 6 * scale - scale; }
  static int text_height(int scale = 1) { return 7 * scale; }
  const std::vector<uint8_t>& rgb() const { return rgb_; }

 private:
  int width_, height_;
  std::vector<uint8_t> rgb_;  // row-major, 3 bytes a pixel
};

uint32_t crc32(std::span<const uint8_t> data, uint32_t crc = 0);
uint32_t adler32(std::span<const uint8_t> data, uint32_t adler = 1);
// zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 BTYPE 00).
std::vector<uint8_t> zlib_stored(std::span<const uint8_t> data);
std::vector<uint8_t> encode_png(const Image& image);
// Throws Error(kNotFound) naming the file when it cannot be written.
void write_png(const std::filesystem::path& path, const Image& image);

}  // namespace skv::eval
