/* curve.c - see curve.h. Without CURVE the coordinator binds to loopback
 * only (broker.c). */
#include "proto/curve.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/fsutil.h"

typedef struct {
    void *ctx, *rep;
    char keys[256][41];
    int n;
} zap_state;

static int recv_str(void *s, char *buf, size_t len)
{
    int n = zmq_recv(s, buf, len - 1, 0);
    if (n < 0)
        return -1;
    buf[n < (int)len - 1 ? n : (int)len - 1] = '\0';
    return n;
}

static void *zap_thread(void *arg)
{
    zap_state *z = arg;
    void *s = z->rep;
    for (;;) {
        char version[16], seq[64], domain[64], address[64], identity[256], mech[32];
        unsigned char key[32];
        if (recv_str(s, version, sizeof version) < 0)
            break;
        recv_str(s, seq, sizeof seq);
        recv_str(s, domain, sizeof domain);
        recv_str(s, address, sizeof address);
        recv_str(s, identity, sizeof identity);
        recv_str(s, mech, sizeof mech);
        int kl = zmq_recv(s, key, sizeof key, 0);
        int more;
        size_t ml = sizeof more;
        while (zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml) == 0 && more) {
            char skip[256];
            zmq_recv(s, skip, sizeof skip, 0);
        }
        int ok = 0;
        char z85[41] = "";
        if (!strcmp(mech, "CURVE") && kl == 32 && zmq_z85_encode(z85, key, 32))
            for (int i = 0; i < z->n && !ok; i++)
                ok = !strcmp(z->keys[i], z85);
        zmq_send(s, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(s, seq, strlen(seq), ZMQ_SNDMORE);
        zmq_send(s, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(s, ok ? "OK" : "unknown key", ok ? 2 : 11, ZMQ_SNDMORE);
        zmq_send(s, z85, ok ? strlen(z85) : 0, ZMQ_SNDMORE);
        zmq_send(s, "", 0, 0);
        if (!ok)
            fprintf(stderr, "coordinator: refused a peer with an unknown CURVE key\n");
    }
    zmq_close(s);
    return NULL;
}

static sd_status read_key(const char *path, char *z85, sd_error *err)
{
    char *text;
    size_t len;
    SD_TRY(sd_read_file(path, &text, &len, err));
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n'))
        i++;
    if (len - i < 40) {
        free(text);
        return sd_fail(err, SD_ERR_FORMAT, "%s: not a 40-character Z85 key", path);
    }
    memcpy(z85, text + i, 40);
    z85[40] = '\0';
    free(text);
    return SD_OK;
}

sd_status sd_curve_server_setup(void *sock, void *ctx, const char *secret_file, const char *allow_file, sd_error *err)
{
    char secret[41];
    SD_TRY(read_key(secret_file, secret, err));
    zap_state *z = calloc(1, sizeof *z);
    z->ctx = ctx;
    if (allow_file) {
        char *text;
        size_t len;
        sd_status st = sd_read_file(allow_file, &text, &len, err);
        if (st != SD_OK) {
            free(z);
            return st;
        }
        for (char *line = strtok(text, "\n"); line && z->n < 256; line = strtok(NULL, "\n"))
            if (strlen(line) >= 40) {
                memcpy(z->keys[z->n], line, 40);
                z->keys[z->n++][40] = '\0';
            }
        free(text);
    }
    /* bound before the server socket exists, so no handshake misses it */
    z->rep = zmq_socket(ctx, ZMQ_REP);
    if (zmq_bind(z->rep, "inproc://zeromq.zap.01") != 0) {
        free(z);
        return sd_fail(err, SD_ERR_IO, "CURVE: cannot start the authentication handler");
    }
    pthread_t th;
    pthread_create(&th, NULL, zap_thread, z);
    pthread_detach(th);
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, 40);
    zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "sdxl", 4);
    return SD_OK;
}

sd_status sd_curve_client_setup(void *sock, const char *server_key_file, const char *secret_file,
                                const char *public_file, sd_error *err)
{
    const char *files[3] = {server_key_file, secret_file, public_file};
    const int opts[3] = {ZMQ_CURVE_SERVERKEY, ZMQ_CURVE_SECRETKEY, ZMQ_CURVE_PUBLICKEY};
    for (int i = 0; i < 3; i++) {
        char key[41];
        if (!files[i])
            return sd_fail(err, SD_ERR_INVALID, "CURVE needs the server's public key, a secret key and a public key");
        SD_TRY(read_key(files[i], key, err));
        zmq_setsockopt(sock, opts[i], key, 40);
    }
    return SD_OK;
}
