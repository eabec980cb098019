#!/usr/bin/env python3
"""RSS of an `rtctl serve` before and during 150 POSTs declaring a 1 MiB body that stall after part of it,
without credentials and then with the API key (docs/deployment.md, "Limits and failure behaviour").

Usage: python3 scripts/stalled-bodies-rss.py PATH/TO/rtctl
"""
import os, re, shutil, socket, subprocess, sys, tempfile, threading, time

BIN = sys.argv[1]
N = 150
BIN = os.path.abspath(BIN)
WORK = tempfile.mkdtemp(prefix="rtctl-rss-")
os.chdir(WORK)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    with open(f"/proc/{proc.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close(); break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.5)
    key = re.search(r'api_key\s*=\s*"([^"]+)"', open("rtctl.toml").read()).group(1)
    time.sleep(1)
    for auth in ["", f"X-API-Key: {key}\r\n"]:
        before = rss()
        socks, statuses = [], {}
        def stall(sock):
            head = (f"POST /api/v1/notifications HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n{auth}"
                    f"Content-Length: {1 << 20}\r\n\r\n").encode()
            sock.sendall(head)
            sent = 0
            try:
                while sent < 1_000_000:
                    sent += sock.send(b" " * min(65536, 1_000_000 - sent))
            except OSError:
                pass
        threads = []
        for _ in range(N):
            sock = socket.create_connection(("127.0.0.1", port)); sock.settimeout(3)
            socks.append(sock)
            t = threading.Thread(target=stall, args=(sock,)); t.start(); threads.append(t)
        peak = before
        deadline = time.time() + 3
        while time.time() < deadline:
            peak = max(peak, rss()); time.sleep(0.05)
        for sock in socks:
            try:
                line = sock.recv(64).split(b"\r\n")[0].decode() or "(closed)"
            except OSError as e:
                line = "(no answer: %s)" % type(e).__name__
            statuses[line] = statuses.get(line, 0) + 1
            sock.close()
        for t in threads: t.join(1)
        print(f"{'with the API key' if auth else 'unauthenticated'}: RSS {before:.0f} MiB before, peak {peak:.0f} MiB during; answers: {statuses}")
        time.sleep(2)
finally:
    proc.terminate(); proc.wait()
    shutil.rmtree(WORK, ignore_errors=True)
