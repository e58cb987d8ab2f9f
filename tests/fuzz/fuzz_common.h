// Shared by the fuzz targets: input bytes as a string, the repository's tiny-llama model folder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lorank::fuzz {

inline std::string bytes(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

inline std::string tiny_llama_dir() {
  return std::string(LORANK_SOURCE_DIR) + "/assets/tiny-llama";
}

}  // namespace lorank::fuzz
