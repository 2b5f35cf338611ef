/* curve.c - see curve.h. Without CURVE the coordinator binds to loopback
 * only (broker.c). */
#include "proto/curve.h"

#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/fsutil.h"

#define MAX_KEYS 256
#define MAX_IDS 8

typedef struct {
    void *ctx, *rep;
    char keys[MAX_KEYS][41];
    /* the worker ids each key may register (fnmatch patterns); none: a
     * client's key, which registers no worker */
    char ids[MAX_KEYS][MAX_IDS][64];
    int nids[MAX_KEYS];
    int n;
} zap_state;

/* the process's one CURVE server (the coordinator's socket) */
static zap_state *server_state;

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

int sd_curve_may_register(const char *user_id, const char *worker_id)
{
    zap_state *z = server_state;
    if (!z)
        return 1; /* no CURVE: loopback only, nothing to tell peers apart by */
    for (int i = 0; i < z->n; i++)
        if (user_id && !strcmp(z->keys[i], user_id)) {
            for (int k = 0; k < z->nids[i]; k++)
                if (!fnmatch(z->ids[i][k], worker_id, 0))
                    return 1;
            return 0;
        }
    return 0;
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

/* FILE.secret beside FILE.public (as curve_keys.py and zmq_curve_keypair
 * users write them): the public one must be the secret's, else the secret
 * file is not what it says (a public key given as the secret) */
static sd_status check_sibling_public(const char *secret_file, const char *secret, const char *derived, sd_error *err)
{
    size_t l = strlen(secret_file);
    if (l < 7 || strcmp(secret_file + l - 7, ".secret"))
        return SD_OK;
    char pub_file[4096];
    snprintf(pub_file, sizeof pub_file, "%.*s.public", (int)(l - 7), secret_file);
    char pub[41];
    if (!sd_path_exists(pub_file) || read_key(pub_file, pub, NULL) != SD_OK)
        return SD_OK;
    if (!strcmp(pub, secret))
        return sd_fail(err, SD_ERR_INVALID, "%s holds the public key of %s: give the secret key", secret_file,
                       pub_file);
    if (strcmp(pub, derived))
        return sd_fail(err, SD_ERR_INVALID, "%s is not the secret key of %s", secret_file, pub_file);
    return SD_OK;
}

sd_status sd_curve_server_setup(void *sock, void *ctx, const char *secret_file, const char *allow_file, sd_error *err)
{
    char secret[41], public[41];
    SD_TRY(read_key(secret_file, secret, err));
    if (zmq_curve_public(public, secret) != 0)
        return sd_fail(err, SD_ERR_FORMAT, "--curve-secret %s: not a Z85 CURVE secret key", secret_file);
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
        /* KEY [WORKER-ID-PATTERN ...] per line: the ids that key may
         * register as a worker (fnmatch patterns); a key alone is a client's */
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line && z->n < MAX_KEYS; line = strtok_r(NULL, "\n", &save)) {
            while (*line == ' ')
                line++;
            if (strlen(line) < 40 || line[0] == '#')
                continue;
            memcpy(z->keys[z->n], line, 40);
            z->keys[z->n][40] = '\0';
            char *save2 = NULL;
            for (char *id = strtok_r(line + 40, " \t\r", &save2); id && z->nids[z->n] < MAX_IDS;
                 id = strtok_r(NULL, " \t\r", &save2))
                snprintf(z->ids[z->n][z->nids[z->n]++], 64, "%s", id);
            z->n++;
        }
        free(text);
    }
    /* a public key given as the secret: it is one of the admitted keys, or
     * the file beside it named .public holds it */
    for (int i = 0; i < z->n; i++)
        if (!strcmp(z->keys[i], secret)) {
            free(z);
            return sd_fail(err, SD_ERR_INVALID, "--curve-secret %s holds a public key (it is in --allow %s)",
                           secret_file, allow_file);
        }
    sd_status cst = check_sibling_public(secret_file, secret, public, err);
    if (cst != SD_OK) {
        free(z);
        return cst;
    }
    fprintf(stderr, "coordinator: CURVE on; its public key (SDXL_CURVE_SERVER_KEY, --curve-server-key) is %s\n",
            public);
    /* bound before the server socket exists, so no handshake misses it */
    z->rep = zmq_socket(ctx, ZMQ_REP);
    if (zmq_bind(z->rep, "inproc://zeromq.zap.01") != 0) {
        free(z);
        return sd_fail(err, SD_ERR_IO, "CURVE: cannot start the authentication handler");
    }
    server_state = z;
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
    if (!server_key_file)
        return sd_fail(err, SD_ERR_INVALID, "CURVE needs the server's public key, a secret key and a public key");
    char server_key[41];
    SD_TRY(read_key(server_key_file, server_key, err));
    return sd_curve_client_setup_key(sock, server_key, secret_file, public_file, err);
}

sd_status sd_curve_client_setup_key(void *sock, const char *server_key, const char *secret_file,
                                    const char *public_file, sd_error *err)
{
    const char *files[2] = {secret_file, public_file};
    char keys[2][41];
    if (!server_key || strlen(server_key) != 40)
        return sd_fail(err, SD_ERR_INVALID, "CURVE: the server's public key must be 40 Z85 characters");
    for (int i = 0; i < 2; i++) {
        if (!files[i])
            return sd_fail(err, SD_ERR_INVALID, "CURVE needs the server's public key, a secret key and a public key");
        SD_TRY(read_key(files[i], keys[i], err));
    }
    /* the secret must be the public key's: a public key given as the secret
     * (or two halves of different pairs) is refused here, not at the
     * handshake, where it would only show as silence */
    char derived[41];
    if (zmq_curve_public(derived, keys[0]) != 0 || strcmp(derived, keys[1]))
        return sd_fail(err, SD_ERR_INVALID, "CURVE: %s is not the secret key of %s%s", secret_file, public_file,
                       !strcmp(keys[0], keys[1]) ? " (the same key twice: a public key given as the secret?)" : "");
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, keys[0], 40);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, keys[1], 40);
    return SD_OK;
}

sd_status sd_curve_data_server_setup(void *sock, const char *secret_file, sd_error *err)
{
    char secret[41];
    SD_TRY(read_key(secret_file, secret, err));
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, 40);
    return SD_OK;
}
