// Which GPUs this build's CUDA code runs on (unsupported_gpu_reason): a CPU test of the check that
// `--device cuda` makes before anything is launched.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "backend/device.h"

namespace skv {
namespace {

DeviceProperties card(const char* name, int major, int minor) {
  DeviceProperties p;
  p.name = name;
  p.major = major;
  p.minor = minor;
  return p;
}

TEST(DeviceSupport, HopperRunsEverythingElseIsRefusedWithTheReason) {
  EXPECT_EQ(unsupported_gpu_reason(card("NVIDIA H100 80GB HBM3", 9, 0)), "");
  EXPECT_EQ(unsupported_gpu_reason(card("NVIDIA H200", 9, 0)), "");
  for (const auto& [name, major, minor] : {std::tuple{"NVIDIA A100-SXM4-80GB", 8, 0}, {"NVIDIA L4", 8, 9},
                                           {"NVIDIA B200", 10, 0}, {"NVIDIA GeForce RTX 5090", 12, 0}}) {
    const std::string why = unsupported_gpu_reason(card(name, major, minor));
    EXPECT_NE(why.find(name), std::string::npos) << why;
    EXPECT_NE(why.find(std::to_string(major) + "." + std::to_string(minor)), std::string::npos) << why;
    EXPECT_NE(why.find("sm_90a"), std::string::npos) << why;
  }
}

}  // namespace
}  // namespace skv
