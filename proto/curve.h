/* curve.h - ZeroMQ CURVE on our sockets. Keys are Z85 text files (40
 * characters; leading blank lines and spaces are skipped). */
#ifndef SDXL_PROTO_CURVE_H
#define SDXL_PROTO_CURVE_H

#include "common/error.h"

/* The coordinator's side: its secret key, and a ZAP handler on ctx that
 * admits only the public keys listed in allow_file, one per line as
 * "KEY [WORKER-ID-PATTERN ...]": the worker ids (fnmatch patterns) that key
 * may register; a key alone is a client's. A secret file holding a public
 * key is refused. */
sd_status sd_curve_server_setup(void *sock, void *ctx, const char *secret_file, const char *allow_file, sd_error *err);

/* 1 when a peer whose CURVE key is user_id (the ZAP User-Id of its
 * messages) may register as worker_id; 1 without CURVE. */
int sd_curve_may_register(const char *user_id, const char *worker_id);

/* A worker's or client's side: the server's public key and this peer's key
 * pair, set on sock before it connects; the secret must be the public key's. */
sd_status sd_curve_client_setup(void *sock, const char *server_key_file, const char *secret_file,
                                const char *public_file, sd_error *err);

/* The same with the server's public key given as text (40 Z85 characters):
 * a worker fetching from another worker's data socket, whose key the
 * coordinator passes along. */
sd_status sd_curve_client_setup_key(void *sock, const char *server_key, const char *secret_file,
                                    const char *public_file, sd_error *err);

/* A worker's data socket (worker/daemon/data_plane.h) as a CURVE server
 * under the worker's own secret key. No ZAP handler runs in a worker: any
 * peer with a key pair may connect, and the channel is encrypted. */
sd_status sd_curve_data_server_setup(void *sock, const char *secret_file, sd_error *err);

#endif
