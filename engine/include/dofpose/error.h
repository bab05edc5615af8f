// Errors: every failure in dofpose throws dofpose::Error with a message that
// names the op, tensor, file or field and what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace dofpose {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from its pieces: concat("conv2d: got ", 3, " dims").
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(concat(args...));
}

}  // namespace dofpose

// DOFPOSE_CHECK(cond, "op: tensor 'x' ...", value, ...) throws when cond is false.
#define DOFPOSE_CHECK(cond, ...)                 \
  do {                                           \
    if (!(cond)) ::dofpose::fail(__VA_ARGS__);   \
  } while (0)
