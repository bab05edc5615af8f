// The Python tools (tools/, weights_tools/) refuse bad input with a named
// error and no traceback, leave nothing half-written, and still work on good
// input: tests/check_python_tool_errors.py, run here so ctest covers it.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_util.h"

TEST_CASE("python tools: bad input fails cleanly and named, good input works") {
  if (!dofpose_test::python_with_numpy("tests/check_python_tool_errors.py")) return;
  // The dofpose program (<build>/dofpose beside <build>/tests/) also loads the
  // models make_random_model.py writes, when it was built.
  const std::string program = dofpose_test::build_program_path();
  std::vector<std::string> args;
  if (std::filesystem::exists(program)) args = {"--dofpose", program};
  const std::string out = dofpose_test::run_python(
      std::string(DOFPOSE_SOURCE_DIR) + "/tests/check_python_tool_errors.py", args);
  INFO(out);
  CHECK(out.find("all Python tool error checks passed") != std::string::npos);
  CHECK(out.find(" 0 failed") != std::string::npos);
}
