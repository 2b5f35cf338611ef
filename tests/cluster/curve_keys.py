#!/usr/bin/env python3
"""Writes CURVE key pairs (Z85) for the cluster test: server, an allowed
client, and a stranger. Uses the sdxl binary's helper? No: libsodium-free
generation through libzmq's zmq_curve_keypair via ctypes."""
import ctypes, ctypes.util, os, sys

d = sys.argv[1]
lib = ctypes.CDLL(ctypes.util.find_library("zmq") or "libzmq.so.5")
def pair(name):
    pub = ctypes.create_string_buffer(41)
    sec = ctypes.create_string_buffer(41)
    if lib.zmq_curve_keypair(pub, sec) != 0:
        raise SystemExit("zmq_curve_keypair failed (libzmq without CURVE?)")
    open(os.path.join(d, name + ".public"), "w").write(pub.value.decode())
    open(os.path.join(d, name + ".secret"), "w").write(sec.value.decode())
    return pub.value.decode()
pair("server")
client = pair("client")
pair("stranger")
worker = pair("worker")
# a client's key alone; a worker's key with the worker ids it may register
open(os.path.join(d, "allowed"), "w").write(client + "\n" + worker + " w-* curve-w\n")
