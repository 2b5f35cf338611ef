#!/usr/bin/env python3
"""CURVE key pairs (Z85) for the cluster tests, made by libzmq's own
zmq_curve_keypair through ctypes (no libsodium binding needed).

  curve_keys.py DIR   writes server, client, stranger and worker pairs
                      (NAME.public, NAME.secret) and an allow file: the
                      client's key alone, the worker's with the ids it may
                      register (w-*, curve-w)
The fault campaign imports write_pair() for its own keys."""
import ctypes, ctypes.util, os, sys

_lib = None


def write_pair(d, name):
    """writes d/NAME.public and d/NAME.secret; returns the public key"""
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL(ctypes.util.find_library("zmq") or "libzmq.so.5")
    pub = ctypes.create_string_buffer(41)
    sec = ctypes.create_string_buffer(41)
    if _lib.zmq_curve_keypair(pub, sec) != 0:
        raise SystemExit("zmq_curve_keypair failed (libzmq without CURVE?)")
    with open(os.path.join(d, name + ".public"), "w") as f:
        f.write(pub.value.decode())
    with open(os.path.join(d, name + ".secret"), "w") as f:
        f.write(sec.value.decode())
    return pub.value.decode()


def main(d):
    write_pair(d, "server")
    client = write_pair(d, "client")
    write_pair(d, "stranger")
    worker = write_pair(d, "worker")
    # a client's key alone; a worker's key with the worker ids it may register
    with open(os.path.join(d, "allowed"), "w") as f:
        f.write(client + "\n" + worker + " w-* curve-w\n")


if __name__ == "__main__":
    main(sys.argv[1])
