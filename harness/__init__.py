"""commbench's harness: everything between a scenario file and a result folder.

gRPC's fork support restarts its poller thread in a forked child; a child that then closes
its inherited descriptors before exec (subprocess with close_fds) can abort on that thread
(SIGABRT, "epoll_wait error: Bad file descriptor"): 2–4 of 300 forks did here while a gRPC
channel was alive. The harness forks servers while its conformance gate's gRPC client is
alive and never uses gRPC in a forked child, so it turns that support off before any import
of grpc.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
