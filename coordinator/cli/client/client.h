/* client.h - a client command's link to the coordinator (--coordinator
 * ENDPOINT, default $SDXL_COORDINATOR, else tcp://127.0.0.1:5555):
 *   - no coordinator at all (nothing accepts the connection) is said within
 *     2 s; a key the coordinator's CURVE authentication refuses is said as
 *     soon as the handshake fails (ZAP), not as a time-out; a handshake that
 *     fails otherwise (a wrong server key, or a proxy whose coordinator is
 *     down) is said after 2 s, or ridden out once the coordinator answered;
 *   - once it has answered, a coordinator that restarts is ridden out: a
 *     request without an answer is sent again on a fresh connection, with
 *     backoff, until the deadline (requests are idempotent: the same SUBMIT
 *     is the same job);
 *   - CURVE keys come from SDXL_CURVE_SERVER_KEY, SDXL_CURVE_SECRET and
 *     SDXL_CURVE_PUBLIC: all three or none (never plaintext by accident). */
#ifndef SDXL_COORDINATOR_CLI_CLIENT_CLIENT_H
#define SDXL_COORDINATOR_CLI_CLIENT_CLIENT_H

#include <jansson.h>

#define CLIENT_DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"

typedef struct {
    void *ctx, *sock, *mon;
    const char *endpoint, *cmd;
    int connected_once; /* a coordinator has accepted this client's connection or answered it */
    int answered;       /* a coordinator has answered this client */
    double handshake_failed_at; /* first CURVE handshake failure before any answer (0: none) */
    double deadline_s;  /* give up riding out a restart after this long (0: forever) */
} client;

/* 0, or -1 after printing why (a bad endpoint, partial CURVE settings). */
int client_open(client *c, const char *endpoint, const char *cmd, double deadline_s);
void client_close(client *c);
/* Sends a request (fields: a new reference, taken) and returns the reply
 * header (a new reference), or NULL after printing why: the coordinator's
 * ERROR reason, no coordinator, a refused key, or the deadline passed. */
json_t *client_request(client *c, const char *type, json_t *fields);

#endif
