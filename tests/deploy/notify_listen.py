#!/usr/bin/env python3
"""Listens on a NOTIFY_SOCKET as systemd does (a unix datagram socket) and
prints each notification it gets, one line per message ("|" between its
assignments), flushed, until killed or SECONDS pass.
    notify_listen.py PATH SECONDS"""
import os
import socket
import sys
import time

path, seconds = sys.argv[1], float(sys.argv[2])
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
end = time.time() + seconds
while time.time() < end:
    s.settimeout(max(0.01, end - time.time()))
    try:
        msg = s.recv(4096).decode("utf-8", "replace")
    except socket.timeout:
        break
    print("%.3f %s" % (time.time(), msg.strip().replace("\n", "|")), flush=True)
os.unlink(path)
