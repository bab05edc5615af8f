#!/usr/bin/env python3
"""Rewrites a kernels/cuda/ source for the CUDA host emulator (g++, no nvcc).

Only the syntax C++ lacks is rewritten; everything else is compiled as written:
  kernel<<<grid, block, smem, stream>>>(args)  ->  ::emu::launch("kernel", kernel, ::emu::config(...), args)
  cudaLaunchCooperativeKernel(kernel, ...)     ->  ::emu::cooperative_launch("kernel", kernel, ...)
  cudaLaunchKernelEx(cfg, kernel, ...)         ->  ::emu::launch_ex("kernel", cfg, kernel, ...)
  __shared__ T name[dims];                     ->  a per-block array from ::emu::shared_storage
  extern __shared__ T name[];                  ->  T* name = the launch's dynamic shared memory
Line numbers are kept (a #line directive names the original file), so compiler
messages and emulator errors point at kernels/cuda/.

usage: translate_cu.py INPUT OUTPUT
"""
import os
import re
import sys


def in_comment(text, pos):
    line_start = text.rfind("\n", 0, pos) + 1
    return "//" in text[line_start:pos]


def match_back_angle(text, i):
    """text[i] == '>': the index of its matching '<'."""
    depth = 0
    while i >= 0:
        c = text[i]
        if c == ">":
            depth += 1
        elif c == "<":
            depth -= 1
            if depth == 0:
                return i
        i -= 1
    raise ValueError("unbalanced template brackets before a kernel launch")


def match_paren(text, i):
    """text[i] == '(': the index of its matching ')'."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses in a kernel launch")


def rewrite_launches(text, path):
    out, pos = [], 0
    while True:
        k = text.find("<<<", pos)
        if k < 0:
            break
        if in_comment(text, k):
            out.append(text[pos:k + 3])
            pos = k + 3
            continue
        # The kernel expression ends right before <<<: identifier, maybe template arguments.
        i = k - 1
        while text[i].isspace():
            i -= 1
        if text[i] == ">":
            i = match_back_angle(text, i) - 1
        while i >= 0 and (text[i].isalnum() or text[i] in "_:"):
            i -= 1
        start = i + 1
        kernel = text[start:k].strip()
        end_cfg = text.find(">>>", k)
        cfg = text[k + 3:end_cfg]
        p = end_cfg + 3
        while text[p].isspace():
            p += 1
        if text[p] != "(":
            raise ValueError(f"{path}: kernel launch of {kernel} without an argument list")
        close = match_paren(text, p)
        args = text[p + 1:close]
        name = " ".join(kernel.split())
        call = f'::emu::launch("{name}", {kernel}, ::emu::config({cfg})'
        call += (", " + args if args.strip() else "") + ")"
        out.append(text[pos:start])
        out.append(call)
        pos = close + 1
    out.append(text[pos:])
    return "".join(out)


def top_level_arg(text, i):
    """text[i] starts an argument: the index of the comma (or ')') that ends it."""
    depth = 0
    while True:
        c = text[i]
        if c in "(<[{":
            depth += 1
        elif c in ")>]}":
            if depth == 0:
                return i
            depth -= 1
        elif c == "," and depth == 0:
            return i
        i += 1


NAMED_LAUNCHES = {"cudaLaunchCooperativeKernel": ("::emu::cooperative_launch", 0),
                  "cudaLaunchKernelEx": ("::emu::launch_ex", 1)}


def rewrite_named_launches(text, path):
    """Launch API calls get the kernel's name (for errors and the memory profile)."""
    def one(m):
        if in_comment(text, m.start()):
            return None
        fn, kernel_arg = NAMED_LAUNCHES[m.group(1)]
        i = m.end()
        for _ in range(kernel_arg):
            i = top_level_arg(text, i) + 1
        while text[i].isspace():
            i += 1
        kernel = text[i:top_level_arg(text, i)].strip()
        return fn, " ".join(kernel.split())

    out, pos = [], 0
    for m in re.finditer(r"\b(cudaLaunchCooperativeKernel|cudaLaunchKernelEx)\s*\(", text):
        r = one(m)
        if r is None:
            continue
        fn, name = r
        out.append(text[pos:m.start()])
        out.append(f'{fn}("{name}", ')
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


SHARED = re.compile(r"(?m)^(?P<indent>[ \t]*)(?P<extern>extern\s+)?__shared__\s+"
                    r"(?:__align__\((?P<align>\d+)\)\s+)?(?P<body>[^;]*);")
DECL = re.compile(r"^\s*(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]*\])*)\s*$")


def rewrite_shared(text, path):
    def one(m):
        body = m.group("body").strip()
        align = m.group("align") or "1"
        if m.group("extern"):
            typ, name = re.match(r"^(.*?)\b(\w+)\s*\[\s*\]$", body).groups()
            typ = typ.strip()
            return (f"{m.group('indent')}{typ}* {name} = "
                    f"static_cast<{typ}*>(::emu::dynamic_shared());")
        first, *rest = [d.strip() for d in body.split(",")]
        fm = re.match(r"^(?P<type>.*?)\s*\b(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]*\])*)$", first)
        if not fm:
            raise ValueError(f"{path}: cannot parse __shared__ declaration: {body}")
        typ = fm.group("type").strip()
        decls = [(fm.group("name"), fm.group("dims"))]
        for d in rest:
            dm = DECL.match(d)
            if not dm:
                raise ValueError(f"{path}: cannot parse __shared__ declarator: {d}")
            decls.append((dm.group("name"), dm.group("dims")))
        parts = []
        for name, dims in decls:
            site = f"emu_shared_site_{name}"
            full = f"{typ}{dims}"
            ptr = f"{typ}(*){dims}" if dims else f"{typ}*"
            a = f"(alignof({typ}) > {align} ? alignof({typ}) : {align})"
            parts.append(f"static const char {site} = 0; auto& {name} = *static_cast<{ptr}>("
                         f"::emu::shared_storage(&{site}, sizeof({full}), {a}));")
        return m.group("indent") + " ".join(parts)

    return SHARED.sub(one, text)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = f.read()
    text = rewrite_shared(rewrite_named_launches(rewrite_launches(text, src), src), src)
    body = f'#line 1 "{os.path.abspath(src)}"\n' + text
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    tmp = dst + ".tmp"
    with open(tmp, "w") as f:
        f.write(body)
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
