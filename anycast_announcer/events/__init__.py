"""Kernel event sources that reveal a failure the moment it happens.

Each module is one source; each watcher runs on the running asyncio loop (no threads) and
reports typed events to a callback:

- :mod:`.listeners`: a listening TCP socket was freed and no other socket serves its
  address and port (sock_diag destroy multicast, filtered in the kernel by classic BPF);
- :mod:`.processes`: the process named by a pid file exited (pidfd);
- :mod:`.addresses`: an address appeared on or left an interface (rtnetlink multicast).
"""
