/* client.c - see client.h. */
#include "coordinator/cli/client/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "coordinator/cli/cli.h"
#include "proto/curve.h"
#include "proto/message.h"
#include "proto/monitor.h"

#define FIRST_CONTACT_S 2.0 /* no connection by then: no coordinator */
/* a connected coordinator answers within this, or the request is sent again
 * (a SUBMIT of millions of items takes the coordinator longer to store) */
#define ANSWER_S 3.0
#define ANSWER_SUBMIT_S 60.0

static int connect_socket(client *c)
{
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    const char *sk = getenv("SDXL_CURVE_SERVER_KEY"), *sec = getenv("SDXL_CURVE_SECRET"),
               *pub = getenv("SDXL_CURVE_PUBLIC");
    sd_error err = {0};
    if (sk && sd_curve_client_setup(c->sock, sk, sec, pub, &err) != SD_OK) {
        cli_errorf(c->cmd, "%s", err.msg);
        return -1;
    }
    /* the connection's events: connected, and a refused CURVE handshake */
    c->mon = sd_monitor_open(c->ctx, c->sock, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                                  ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                                  ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    if (zmq_connect(c->sock, c->endpoint) != 0) {
        cli_errorf(c->cmd, "--coordinator %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

static void close_socket(client *c)
{
    if (c->mon)
        zmq_close(c->mon);
    if (c->sock)
        zmq_close(c->sock);
    c->mon = c->sock = NULL;
}

int client_open(client *c, const char *endpoint, const char *cmd, double deadline_s)
{
    memset(c, 0, sizeof *c);
    c->endpoint = endpoint      ? endpoint
                  : getenv("SDXL_COORDINATOR") ? getenv("SDXL_COORDINATOR")
                                               : CLIENT_DEFAULT_ENDPOINT;
    c->cmd = cmd;
    c->deadline_s = deadline_s;
    int keys = !!getenv("SDXL_CURVE_SERVER_KEY") + !!getenv("SDXL_CURVE_SECRET") + !!getenv("SDXL_CURVE_PUBLIC");
    if (keys != 0 && keys != 3) {
        cli_errorf(cmd, "CURVE needs all three of SDXL_CURVE_SERVER_KEY, SDXL_CURVE_SECRET and SDXL_CURVE_PUBLIC "
                        "(%d set): refusing to talk in plaintext", keys);
        return -1;
    }
    c->ctx = zmq_ctx_new();
    return connect_socket(c);
}

void client_close(client *c)
{
    close_socket(c);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    c->ctx = NULL;
}

/* reads monitor events (a connection marks the coordinator as there):
 * -1 refused (printed), else 0. A ZAP refusal is final. Any other failed
 * handshake is ambiguous (a wrong SDXL_CURVE_SERVER_KEY, or a connection that
 * broke mid-handshake: a proxy in front of a restarting coordinator, a network
 * fault): from a coordinator that has answered this client it is a restart to
 * ride out; before any answer it is final once it has lasted FIRST_CONTACT_S,
 * as no coordinator at all would be. */
static int read_events(client *c)
{
    unsigned event, value;
    while (sd_monitor_next(c->mon, &event, &value)) {
        if (event == ZMQ_EVENT_CONNECTED)
            c->connected_once = 1;
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            cli_errorf(c->cmd, "the coordinator at %s refused this client's CURVE key (ZAP status %u): its public "
                               "key is not in the coordinator's --allow file",
                       c->endpoint, value);
            return -1;
        } else if ((event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) &&
                   !c->handshake_failed_at)
            c->handshake_failed_at = sd_now_s();
    }
    if (!c->answered && c->handshake_failed_at && sd_now_s() - c->handshake_failed_at > FIRST_CONTACT_S) {
        cli_errorf(c->cmd, "the CURVE handshake with %s failed for %.0f s: check SDXL_CURVE_SERVER_KEY (the "
                           "coordinator's public key) and whether the coordinator runs with CURVE",
                   c->endpoint, FIRST_CONTACT_S);
        return -1;
    }
    return 0;
}

/* one attempt: 1 reply in *out, 0 no answer (try again), -1 final failure (printed) */
static int attempt(client *c, const char *type, json_t *fields, json_t **out)
{
    sd_msg m;
    sd_error err = {0};
    if (sd_msg_new(&m, type, &err) != SD_OK) {
        cli_errorf(c->cmd, "%s", err.msg);
        return -1;
    }
    if (fields)
        json_object_update(m.hdr, fields);
    int sent = 0;
    double t0 = sd_now_s();
    for (;;) {
        if (read_events(c) < 0) {
            sd_msg_free(&m);
            return -1;
        }
        if (!sent && sd_msg_send(c->sock, NULL, 0, &m, NULL) == SD_OK)
            sent = 1;
        zmq_pollitem_t pi[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(pi, c->mon ? 2 : 1, 50);
        if (n > 0 && (pi[0].revents & ZMQ_POLLIN)) {
            sd_msg r;
            if (sd_msg_recv(c->sock, 0, &r, NULL, NULL, &err) != SD_OK) {
                cli_errorf(c->cmd, "bad reply: %s", err.msg);
                sd_msg_free(&m);
                return -1;
            }
            c->connected_once = c->answered = 1;
            int refused = sd_msg_kind_of(&r) == SD_MSG_KIND_ERROR;
            json_t *h = json_incref(r.hdr);
            sd_msg_free(&r);
            sd_msg_free(&m);
            if (refused) {
                cli_errorf(c->cmd, "%s", json_string_value(json_object_get(h, "reason")));
                json_decref(h);
                return -1;
            }
            *out = h;
            return 1;
        }
        double el = sd_now_s() - t0;
        if (!c->connected_once && el > FIRST_CONTACT_S) {
            cli_errorf(c->cmd, "no coordinator at %s: nothing accepted the connection, it did not answer within %.0f s",
                       c->endpoint, FIRST_CONTACT_S);
            sd_msg_free(&m);
            return -1;
        }
        if (el > (strcmp(type, "SUBMIT") ? ANSWER_S : ANSWER_SUBMIT_S) && c->connected_once) {
            sd_msg_free(&m);
            return 0;
        }
    }
}

json_t *client_request(client *c, const char *type, json_t *fields)
{
    double t0 = sd_now_s(), backoff = 0.2;
    json_t *out = NULL;
    int said = 0;
    for (;;) {
        int r = attempt(c, type, fields, &out);
        if (r != 0) {
            json_decref(fields);
            return r > 0 ? out : NULL;
        }
        /* no answer from a coordinator that answered before: it restarts;
         * a fresh connection, and the request again */
        if (c->deadline_s > 0 && sd_now_s() - t0 > c->deadline_s) {
            cli_errorf(c->cmd, "the coordinator at %s did not answer within %.0f s", c->endpoint, c->deadline_s);
            json_decref(fields);
            return NULL;
        }
        if (!said++)
            fprintf(stderr, "sdxl %s: the coordinator at %s does not answer: retrying (it may be restarting)\n",
                    c->cmd, c->endpoint);
        usleep((useconds_t)(backoff * 1e6));
        backoff = backoff < 2.0 ? backoff * 2 : 2.0;
        close_socket(c);
        if (connect_socket(c) != 0) {
            json_decref(fields);
            return NULL;
        }
    }
}
