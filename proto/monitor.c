/* monitor.c - see monitor.h. */
#include "proto/monitor.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

void *sd_monitor_open(void *ctx, void *sock, int events)
{
    char name[64];
    snprintf(name, sizeof name, "inproc://sdxl-monitor-%p", sock);
    if (zmq_socket_monitor(sock, name, events) != 0)
        return NULL;
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(mon, name) != 0) {
        zmq_close(mon);
        return NULL;
    }
    return mon;
}

int sd_monitor_next(void *mon, unsigned *event, unsigned *value)
{
    if (!mon)
        return 0;
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&ev);
        return 0;
    }
    uint16_t e = 0;
    uint32_t v = 0;
    if (zmq_msg_size(&ev) >= 6) { /* frame 1: event (16 bits), value (32 bits) */
        memcpy(&e, zmq_msg_data(&ev), 2);
        memcpy(&v, (const char *)zmq_msg_data(&ev) + 2, 4);
    }
    int more = zmq_msg_more(&ev);
    zmq_msg_close(&ev);
    while (more) { /* frame 2: the endpoint */
        zmq_msg_init(&ev);
        zmq_msg_recv(&ev, mon, 0);
        more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
    }
    *event = e;
    *value = v;
    return 1;
}
