"""Regenerate the protobuf and gRPC modules from orders.proto and flow.proto.

Choice: the generated code is **committed**, not produced at install time. Installing
commbench then needs only grpcio and protobuf (no compiler, no build hook that can break on
a machine without grpcio-tools), and a reader sees the exact code that runs. The price is
that the committed files can go stale when orders.proto changes; tests/test_grpc.py
regenerates into a temporary folder and fails when the result differs from the committed
files, so a stale file cannot reach a green test run. grpcio-tools is pinned (dev extras)
so regeneration is byte-for-byte reproducible.

After editing a .proto run:

    python -m targets.grpc.generate

protoc writes `import orders_pb2` (a top-level import that only works with targets/grpc on
sys.path); the import is rewritten to `from targets.grpc import orders_pb2` (likewise flow).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = ("orders.proto", "flow.proto")
OUTPUTS = tuple(f"{Path(p).stem}{suffix}" for p in PROTOS
                for suffix in ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi"))


def generate(out_dir: Path = HERE) -> list[Path]:
    """Run protoc on every proto into `out_dir`; return the files written."""
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{HERE}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(HERE / proto) for proto in PROTOS),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(PROTOS)}")
    for proto in PROTOS:
        _package_import(out_dir / f"{Path(proto).stem}_pb2_grpc.py", Path(proto).stem)
    return [out_dir / name for name in OUTPUTS]


def _package_import(grpc_module: Path, stem: str) -> None:
    bare = re.compile(rf"^import {stem}_pb2 as {stem}__pb2$", re.MULTILINE)
    text, n = bare.subn(f"from targets.grpc import {stem}_pb2 as {stem}__pb2", grpc_module.read_text())
    if n != 1:
        raise RuntimeError(f"expected one 'import {stem}_pb2' line in {grpc_module}, found {n}")
    grpc_module.write_text(text)


def main() -> None:
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)


if __name__ == "__main__":
    main()
