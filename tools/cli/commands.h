#pragma once

namespace dofpose_cli {
int cmd_info(int argc, char** argv);
int cmd_selfcheck(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
}  // namespace dofpose_cli
