// lorank's version, as --version prints it and the outputs record it (CMakeLists.txt's project
// VERSION names the same number).
#pragma once

namespace lorank {

inline constexpr const char* kLorankVersion = "0.1.0";

}  // namespace lorank
