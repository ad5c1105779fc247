"""Regenerate the protobuf and gRPC modules from orders.proto.

Choice: the generated code is **committed**, not produced at install time. Installing
commbench then needs only grpcio and protobuf (no compiler, no build hook that can break on
a machine without grpcio-tools), and a reader sees the exact code that runs. The price is
that the committed files can go stale when orders.proto changes; tests/test_grpc.py
regenerates into a temporary folder and fails when the result differs from the committed
files, so a stale file cannot reach a green test run. grpcio-tools is pinned (dev extras)
so regeneration is byte-for-byte reproducible.

After editing orders.proto run:

    python -m targets.grpc.generate

protoc writes `import orders_pb2` (a top-level import that only works with targets/grpc on
sys.path); the import is rewritten to `from targets.grpc import orders_pb2`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "orders.proto"
OUTPUTS = ("orders_pb2.py", "orders_pb2_grpc.py", "orders_pb2.pyi")
_BARE_IMPORT = re.compile(r"^import orders_pb2 as orders__pb2$", re.MULTILINE)
_PACKAGE_IMPORT = "from targets.grpc import orders_pb2 as orders__pb2"


def generate(out_dir: Path = HERE) -> list[Path]:
    """Run protoc on orders.proto into `out_dir`; return the files written."""
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
        str(HERE / PROTO),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {HERE / PROTO}")
    grpc_module = out_dir / "orders_pb2_grpc.py"
    text, n = _BARE_IMPORT.subn(_PACKAGE_IMPORT, grpc_module.read_text())
    if n != 1:
        raise RuntimeError(f"expected one 'import orders_pb2' line in {grpc_module}, found {n}")
    grpc_module.write_text(text)
    return [out_dir / name for name in OUTPUTS]


def main() -> None:
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)


if __name__ == "__main__":
    main()
